"""``dcgan bench``: training and sampling speed of the project's fast path against the classic loop.

For every image size and batch size it times (a) the project's trainer path
(``train.train_step`` on in-memory uint8 ``data.Batches``, the trainer's
optimizers, EMA and deferred statistics) and (b) the classic pytorch/examples
loop (``classic.py``), and prints (a)/(b). An ablation switches the fast-path
measures off one at a time to show what each buys.

Every variant runs in a fresh subprocess (``python -m dcgan.benchmarks.speed SPEC``) so
that thread pools, allocator caches and DataLoader workers of one variant do
not colour the next; ``--in-process`` (implied by ``--quick``) runs them in
this process instead, for tests. Each variant warms up, then times several
repetitions of a few steps (CUDA-synchronised at both ends) and reports the
median. The data are the built-in 5,000 MNIST digits, converted to the
variant's size and channels once; the classic path reads them as PNG files so
that it decodes and transforms every sample with PIL, as the classic does.

FLOPs are counted with ``torch.utils.flop_counter`` (convolutions and matrix
products: the model's arithmetic) and compared with a matrix-product peak
measured in the same run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import write_text_atomic
from ..outputs import check_output, reported
from .report import disturbance, fmt, merge_rounds, print_tables
from .roofline import LayerTime
from .roofline import summary as roofline_summary
from .timing import cpu_info
from .variants import run_isolated, run_variant

ABLATIONS = {
    "fast path": {},
    "DataLoader over PNGs": {"data": "loader"},
    "plain Adam": {"adam": "plain"},
    "channels_last flipped": {"channels_last": "flip"},
    ".item() every step": {"sync_every_step": True},
    "no EMA": {"ema": False},
    "fp32 (no autocast)": {"precision": "fp32"},  # the fast path is bf16 where --precision auto picks it
}
CUDA_ABLATIONS = {
    "cudnn.benchmark off": {"cudnn_benchmark": False},
    "+torch.compile": {"compile": "default"},
    "+torch.compile CUDA graphs": {"compile": "reduce-overhead"},
}


def channels_for(image_size: int) -> int:
    """28x28 is the grayscale contract (MNIST); the other sizes are RGB, as in the classic."""
    return 1 if image_size == 28 else 3


@dataclass
class BenchConfig:
    sizes: tuple[int, ...] = (28, 64)
    batch_sizes: tuple[int, ...] = (64, 128, 512)
    device: str = "auto"
    warmup_steps: int = 1  # after the step that counts the FLOPs, which warms up too
    steps: int = 1  # timed steps per repetition, at least; more while a repetition is under min_repeat_s
    min_repeat_s: float = 2.0  # short steps are repeated until a repetition lasts this long
    repeats: int = 5  # the median repetition is reported
    rounds: int = 1  # run the whole list this many times, alternating direction; the median round is reported
    threads: int | None = None  # intra-op threads per variant; None: torch's default (the cores)
    ablation: bool = True
    roofline: bool = True  # time every convolution alone: the per-layer limit of the step
    compile: bool = True  # the CUDA ablation includes the torch.compile variants (minutes of compiling)
    ablation_rows: tuple[tuple[int, int], ...] = ((64, 64), (28, 128))  # (image size, batch size)
    width: int = 64  # g_width = d_width; 64 is the classic (and TrainConfig's default)
    latent_dim: int = 100
    max_images: int | None = None  # None: all 5,000 built-in digits
    peak_size: int | None = None  # matrix side for the peak; None: 2048 on CPU, 8192 on CUDA
    in_process: bool = False
    json_path: str | None = None
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        """Tiny networks, one batch size, one step per repetition: checks the wiring in seconds."""
        values = dict(
            sizes=(28,),
            batch_sizes=(16,),
            warmup_steps=0,
            steps=1,
            min_repeat_s=0.0,
            repeats=2,
            ablation_rows=((28, 16),),
            width=8,
            max_images=64,
            peak_size=256,
            in_process=True,
            compile=False,
        )
        return cls(**{**values, **overrides})


def validate(cfg: BenchConfig) -> None:
    from ..models import SUPPORTED_IMAGE_SIZES

    for size in cfg.sizes:
        if size not in SUPPORTED_IMAGE_SIZES:
            raise UserError(
                f"--sizes: unsupported image size {size}; supported: {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}"
            )
    num_images = cfg.max_images or 5000
    for batch_size in cfg.batch_sizes:
        if not 2 <= batch_size <= num_images:
            raise UserError(f"--batch-sizes: {batch_size} must be between 2 and {num_images} (the images)")
    if not cfg.sizes or not cfg.batch_sizes:
        raise UserError("--sizes and --batch-sizes need at least one value each")
    if cfg.steps < 1 or cfg.repeats < 1 or cfg.rounds < 1 or cfg.warmup_steps < 0 or cfg.min_repeat_s < 0:
        raise UserError(
            "--steps, --repeats and --rounds must be at least 1, --warmup-steps and --min-repeat-s at least 0"
        )
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError(f"--threads must be at least 1, got {cfg.threads}")
    if cfg.width < 1:
        raise UserError(f"--width must be at least 1, got {cfg.width}")
    if cfg.peak_size is not None and cfg.peak_size < 16:
        raise UserError(f"--peak-size must be at least 16, got {cfg.peak_size}")
    if cfg.json_path is not None:
        if not Path(cfg.json_path).resolve().parent.is_dir():
            raise UserError(f"--json: folder {Path(cfg.json_path).parent} does not exist")
        check_output(cfg.json_path, "--json")


# --------------------------------------------------------------------------- the run


def _prepare_data(size: int, channels: int, max_images: int | None, folder: Path) -> Path:
    """The built-in digits at this size: a uint8 tensor for the project, PNG files for the classic."""
    from PIL import Image

    from ..data import DataSpec, load

    out = folder / f"{size}px_{channels}ch"
    images = load(DataSpec(channels=channels, image_size=size, max_images=max_images), progress=False).images
    (out / "images" / "0").mkdir(parents=True)  # ImageFolder wants one sub-folder per class
    torch.save(images, out / "images_u8.pt")
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image.squeeze(-1) if channels == 1 else image).save(out / "images" / "0" / f"{i:05d}.png")
    return out


def _roofline_row(result: dict, step_seconds: float) -> dict:
    return roofline_summary([LayerTime.from_dict(r) for r in result["layers"]], step_seconds)


def run(cfg: BenchConfig, *, out=print) -> dict:
    """Run every variant, print progress and the tables, write the JSON; return the results."""
    from ..runtime import choose_device

    validate(cfg)
    device = choose_device(cfg.device)
    peak_size = cfg.peak_size or (8192 if device.type == "cuda" else 2048)
    runner = run_variant if cfg.in_process else run_isolated
    ablations = {**ABLATIONS, **(CUDA_ABLATIONS if device.type == "cuda" else {})}
    if not cfg.compile:
        ablations = {k: v for k, v in ablations.items() if "compile" not in v}
    # name the flip by what it does (the trainer's default is TrainConfig.channels_last)
    from ..config import TrainConfig

    flipped = "channels_last off" if TrainConfig().channels_last else "channels_last on"
    ablations = {(flipped if k == "channels_last flipped" else k): v for k, v in ablations.items()}
    base = dict(
        device=str(device),
        width=cfg.width,
        latent_dim=cfg.latent_dim,
        seed=cfg.seed,
        warmup_steps=cfg.warmup_steps,
        steps=cfg.steps,
        repeats=cfg.repeats,
        min_repeat_s=cfg.min_repeat_s,
        threads=cfg.threads,
    )

    jobs = []  # (size, batch, path, options, label)
    for size in cfg.sizes:
        for batch in cfg.batch_sizes:
            jobs += [(size, batch, "project", {}, "project"), (size, batch, "classic", {}, "classic")]
            if cfg.roofline:
                jobs.append((size, batch, "roofline", {}, "roofline"))
    ablation_rows = [(s, b) for s, b in cfg.ablation_rows if s in cfg.sizes] if cfg.ablation else []
    for size, batch in ablation_rows:
        # the unchanged fast path is measured again here, next to its variants, as their reference:
        # on a shared machine the load drifts between the start and the end of a run
        for label, options in ablations.items():
            jobs.append((size, batch, "project", options, label))

    results: dict = {
        "device": str(device),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "config": asdict(cfg),
        "peak": {},
        "rows": [],
        "ablation": [],
        "cpu": cpu_info(),
    }
    done: dict = {}
    started = time.perf_counter()
    threads = cfg.threads or torch.get_num_threads()
    out(
        f"dcgan bench on {device} (torch {torch.__version__}, {threads} threads); {len(jobs)} variants "
        f"x {cfg.rounds} round(s), {'in this process' if cfg.in_process else 'one subprocess each'}"
    )
    cpu = results["cpu"]
    out(
        f"cpu: {cpu['model']}; {', '.join(cpu['extensions']) or 'no AVX2/AVX-512'}; "
        f"torch kernels {cpu['torch_capability']}"
    )
    peak_spec = {**base, "path": "peak", "peak_size": peak_size}
    results["peak"]["start"] = runner(peak_spec)
    start_peak = results["peak"]["start"]
    out(
        f"peak (best of {len(start_peak['fp32_all'])} kernels, fp32): {start_peak['fp32_gflops']:.1f} GFLOP/s "
        f"from {start_peak['fp32_kernel']}"
    )
    with tempfile.TemporaryDirectory(prefix="dcgan-bench-") as tmp:
        data_dirs = {size: _prepare_data(size, channels_for(size), cfg.max_images, Path(tmp)) for size in cfg.sizes}
        count = 0
        for round_index in range(cfg.rounds):
            # every other round runs backwards, so that a drifting load favours no variant
            for size, batch, path, options, label in jobs if round_index % 2 == 0 else jobs[::-1]:
                count += 1
                channels = channels_for(size)
                spec = {
                    **base,
                    "path": path,
                    "size": size,
                    "channels": channels,
                    "batch_size": batch,
                    "options": options,
                    "data_dir": str(data_dirs[size]),
                }
                t0 = time.perf_counter()
                result = runner(spec)
                done.setdefault((size, batch, label), []).append(result)
                if path == "roofline":
                    out(
                        f"[{count}/{len(jobs) * cfg.rounds}] {size}x{size}x{channels} batch {batch:>4} "
                        f"{'per-layer limit':<22} {result['limit_s'] * 1e3:.1f} ms per step over "
                        f"{len(result['layers'])} convolutions ({time.perf_counter() - t0:.0f} s)"
                    )
                    continue
                out(
                    f"[{count}/{len(jobs) * cfg.rounds}] {size}x{size}x{channels} batch {batch:>4} {label:<22} "
                    f"train {fmt(result['train_img_per_s'])} img/s, sample {fmt(result['sample_img_per_s'])} "
                    f"img/s ({time.perf_counter() - t0:.0f} s{disturbance(result)})"
                )
    results["peak"]["end"] = runner(peak_spec)
    roofs = {key: min(rounds, key=lambda r: r["limit_s"]) for key, rounds in done.items() if key[2] == "roofline"}
    done = {key: merge_rounds(rounds) for key, rounds in done.items() if key[2] != "roofline"}

    # the better of the two peaks: the machine's capability, so that a busy moment does not flatter % of peak
    peak = results["peak"]["fp32_gflops"] = max(results["peak"][k]["fp32_gflops"] for k in ("start", "end"))
    peak_bf16 = max(results["peak"][k].get("bf16_gflops", 0.0) for k in ("start", "end"))
    results["peak"]["bf16_gflops"] = peak_bf16 or None
    project_peak = peak_bf16 or peak  # the trainer runs in bf16 where it can (CUDA)

    def pct(flops_per_image: float, img_per_s: float, peak_gflops: float) -> float:
        return 100 * flops_per_image * img_per_s / (peak_gflops * 1e9)

    def check(rate: float) -> float:
        if rate > 100:  # the peak missed a faster kernel than it tried: an error of the method, not a result
            results["peak_errors"].append(rate)
        return rate

    results["peak_errors"] = []

    for size in cfg.sizes:
        for batch in cfg.batch_sizes:
            a, b = done[(size, batch, "project")], done[(size, batch, "classic")]
            results["rows"].append(
                {
                    "size": size,
                    "channels": channels_for(size),
                    "batch_size": batch,
                    "project": a,
                    "classic": b,
                    "train_ratio": a["train_img_per_s"] / b["train_img_per_s"],
                    # each round runs the two next to each other: on a drifting machine these are the steadier ratios
                    "train_ratio_per_round": [
                        x["train_img_per_s"] / y["train_img_per_s"] for x, y in zip(a["rounds"], b["rounds"])
                    ],
                    "sample_ratio": a["sample_img_per_s"] / b["sample_img_per_s"],
                    "gflop_per_train_image": a["flops_per_train_image"] / 1e9,
                    "project_pct_of_peak": check(pct(a["flops_per_train_image"], a["train_img_per_s"], project_peak)),
                    "classic_pct_of_peak": check(pct(b["flops_per_train_image"], b["train_img_per_s"], peak)),
                    # the step against the sum of its convolutions timed alone (roofline.py)
                    "roofline": _roofline_row(roofs[(size, batch, "roofline")], batch / a["train_img_per_s"])
                    if (size, batch, "roofline") in roofs
                    else None,
                }
            )
    for size, batch in ablation_rows:
        reference = done[(size, batch, "fast path")]
        for label, options in ablations.items():
            result = done[(size, batch, label)]
            # the fast path's count: the same arithmetic, and the counter cannot see into compiled graphs
            rate = check(
                pct(
                    reference["flops_per_train_image"],
                    result["train_img_per_s"],
                    peak if options.get("precision") == "fp32" else project_peak,
                )
            )
            results["ablation"].append(
                {
                    "size": size,
                    "channels": channels_for(size),
                    "batch_size": batch,
                    "variant": label,
                    "options": options,
                    "result": result,
                    "pct_of_peak": rate,
                    "vs_fast_path": result["train_img_per_s"] / reference["train_img_per_s"],
                }
            )
    results["elapsed_s"] = time.perf_counter() - started
    print_tables(results, out)
    if cfg.json_path:
        path = Path(cfg.json_path)
        with reported("the results", path):
            write_text_atomic(path, json.dumps(results, indent=2) + "\n")
        out(f"wrote {path}")
    return results
