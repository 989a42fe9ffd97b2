"""The tables ``dcgan bench`` prints: rates, ratios, FLOPs and the share of the measured peak."""

from __future__ import annotations

import statistics


def disturbance(result: dict) -> str:
    other = result.get("other_cpu_load")
    return "" if other is None else f", other processes {other:.2f} cores"


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def merge_rounds(rounds: list[dict]) -> dict:
    """One variant over several rounds: the median rates, the first round's counts, every round kept."""
    merged = dict(rounds[0])
    for key in ("train_img_per_s", "sample_img_per_s", "other_cpu_load"):
        if key in merged:
            merged[key] = statistics.median(r[key] for r in rounds)
    merged["rounds"] = rounds
    return merged


def pct_text(rate: float) -> str:
    return "error" if rate > 100 else f"{rate:.0f}%"  # above 100%: see the error line under the tables


def other_load(*results: dict) -> str:
    loads = [r["other_cpu_load"] for r in results if r.get("other_cpu_load") is not None]
    return f"{max(loads):.2f}" if loads else "-"


def print_tables(results: dict, out) -> None:
    """The rows, then the ablation; ``other`` is the cores other processes kept busy meanwhile."""
    peak = results["peak"]
    peak_text = (
        f"{peak['fp32_gflops']:.1f} GFLOP/s fp32 (start {peak['start']['fp32_gflops']:.1f}, "
        f"end {peak['end']['fp32_gflops']:.1f})"
    )
    if peak.get("bf16_gflops"):
        peak_text += f", {peak['bf16_gflops']:.1f} GFLOP/s bf16"
    out("")
    out(f"device {results['device']} ({results['cpu']['model']}); peak {peak_text} from {peak['start']['fp32_kernel']}")
    head = (
        f"{'image':<9} {'batch':>5} {'GFLOP/img':>9} | {'train img/s':>11} {'classic':>9} {'ratio':>6} "
        f"{'% peak':>6} {'classic':>7} | {'sample img/s':>12} {'classic':>9} {'ratio':>6} | {'other':>5}"
    )
    out(head)
    out("-" * len(head))
    for row in results["rows"]:
        a, b = row["project"], row["classic"]
        image = f"{row['size']}x{row['size']}x{row['channels']}"
        out(
            f"{image:<9} {row['batch_size']:>5} {row['gflop_per_train_image']:>9.3f} | "
            f"{fmt(a['train_img_per_s']):>11} {fmt(b['train_img_per_s']):>9} {row['train_ratio']:>5.2f}x "
            f"{pct_text(row['project_pct_of_peak']):>6} {pct_text(row['classic_pct_of_peak']):>7} | "
            f"{fmt(a['sample_img_per_s']):>12} {fmt(b['sample_img_per_s']):>9} {row['sample_ratio']:>5.2f}x | "
            f"{other_load(a, b):>5}"
        )
    roofs = [row for row in results["rows"] if row.get("roofline")]
    if roofs:
        _print_roofline(roofs, out)
    if results["config"]["rounds"] > 1:
        out("train ratio per round (the two variants run next to each other):")
        for row in results["rows"]:
            ratios = ", ".join(f"{r:.2f}" for r in row["train_ratio_per_round"])
            out(f"  {row['size']}x{row['size']}x{row['channels']} batch {row['batch_size']}: {ratios}")
    if results["ablation"]:
        out("")
        out("ablation: the project path with one fast-path measure changed")
        head = (
            f"{'image':<9} {'batch':>5} {'variant':<26} {'train img/s':>11} {'vs fast':>8} {'% peak':>6} | {'other':>5}"
        )
        out(head)
        out("-" * len(head))
        for row in results["ablation"]:
            image = f"{row['size']}x{row['size']}x{row['channels']}"
            out(
                f"{image:<9} {row['batch_size']:>5} {row['variant']:<26} {fmt(row['result']['train_img_per_s']):>11} "
                f"{row['vs_fast_path']:>7.2f}x {pct_text(row['pct_of_peak']):>6} | {other_load(row['result']):>5}"
            )
    if results["peak_errors"]:
        out(
            f"error: {len(results['peak_errors'])} rate(s) above 100% of the measured peak (up to "
            f"{max(results['peak_errors']):.0f}%): the peak kernels missed this CPU's fastest path, so the "
            f"'% peak' columns are not results on this machine; the img/s and ratios stand"
        )
    out(f"({results['elapsed_s']:.0f} s)")


def _print_roofline(rows: list[dict], out) -> None:
    """The step against its per-layer limit (each convolution timed alone, roofline.py), then each layer."""
    from .roofline import LayerTime, format_rows

    out("")
    out("per-layer limit: every convolution of G and D timed alone, forward and backward, as the step runs it")
    head = (
        f"{'image':<9} {'batch':>5} | {'step ms':>8} {'limit ms':>8} {'step/limit':>10} "
        f"{'outside convs':>13} {'conv GFLOP':>10}"
    )
    out(head)
    out("-" * len(head))
    for row in rows:
        r = row["roofline"]
        image = f"{row['size']}x{row['size']}x{row['channels']}"
        out(
            f"{image:<9} {row['batch_size']:>5} | {r['step_s'] * 1e3:>8.1f} {r['limit_s'] * 1e3:>8.1f} "
            f"{r['step_over_limit']:>9.2f}x {r['outside_convolutions']:>13.0%} {r['conv_gflop_per_step']:>10.2f}"
        )
    for row in rows:
        out("")
        out(f"{row['size']}x{row['size']}x{row['channels']} batch {row['batch_size']}:")
        layers = [LayerTime.from_dict(x) for x in row["roofline"]["layers"]]
        out(format_rows(layers))
