"""The run log: metrics.jsonl rows, partial rows on resume, the collapse rule, and the loss plot.

A row holds the mean statistics (``STAT_NAMES``) of the steps since the previous row. The trainer,
the classic baselines and ``dcgan quality`` all read and write rows through this module.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

from .fileio import atomic_path, write_text_atomic
from .outputs import reported

STAT_NAMES = ("loss_D", "loss_G", "D_x", "D_G_z_before", "D_G_z_after")


class MetricsLog:
    """Appends one JSON object per line and flushes it, so a crash loses no logged row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with reported("a metrics row", self.path, "the checkpoints written so far are intact"):
            open(self.path, "a").close()  # there from the start, also for a run stopped before its first row

    def write(self, row: dict) -> None:
        with reported("a metrics row", self.path, "the checkpoints written so far are intact"):
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return rows


def truncate_rows(path: Path, step: int) -> None:
    """Keep the rows a run resumed at ``step`` has already written, atomically.

    Drops the rows flagged partial (the end of a run between log steps: their sums
    continue in the resumed run) and rows past ``step`` (logged after the checkpoint
    by a run killed before its next one: the resumed run writes them again).
    """
    rows = read_metrics(path)
    kept = [r for r in rows if not r.get("partial") and r.get("step", 0) <= step]
    if len(kept) != len(rows):
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def looks_collapsed(row: dict) -> bool:
    """D perfectly separates real from fake: the failure mode of the classic recipe."""
    return row["D_x"] > 0.99 and row["D_G_z_before"] < 0.01 and row["loss_G"] > 5.0


class CollapseDetector:
    """Watches logged rows; collapsed while the last ``stretch_rows`` rows all show D winning every
    batch (``looks_collapsed``). The trainer warns on it; ``dcgan quality`` records it."""

    def __init__(self, *, stretch_rows: int = 3) -> None:
        self.recent: deque[dict] = deque(maxlen=stretch_rows)
        self.first_step: int | None = None  # where a collapsed stretch was first complete

    def add(self, row: dict) -> bool:
        """Take one row; True when this row completes a collapsed stretch (after rows that were not)."""
        was_collapsed = self.collapsed
        self.recent.append(row)
        if self.collapsed and not was_collapsed:
            if self.first_step is None:
                self.first_step = row.get("step")
            return True
        return False

    @property
    def collapsed(self) -> bool:
        return len(self.recent) == self.recent.maxlen and all(looks_collapsed(r) for r in self.recent)

    @property
    def last(self) -> dict | None:
        return self.recent[-1] if self.recent else None


def plot_losses(metrics_path: Path, out_path: Path) -> Path | None:
    """Loss curves (top) and the discriminator's outputs (bottom) against the step."""
    rows = [r for r in read_metrics(metrics_path) if "loss_D" in r]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(steps, [r["loss_D"] for r in rows], label="loss D")
    top.plot(steps, [r["loss_G"] for r in rows], label="loss G")
    top.set_ylabel("BCE loss")
    bottom.plot(steps, [r["D_x"] for r in rows], label="D(x)")
    bottom.plot(steps, [r["D_G_z_before"] for r in rows], label="D(G(z)) before D step")
    bottom.plot(steps, [r["D_G_z_after"] for r in rows], label="D(G(z)) after D step")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("step")
    bottom.set_ylabel("D output")
    if rows:
        top.legend()
        bottom.legend()
    else:  # stopped before its first logged row: the plot says so rather than being missing
        top.set_title("no metrics rows logged yet")
    fig.tight_layout()
    try:
        with reported("the loss plot", out_path), atomic_path(out_path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return out_path
