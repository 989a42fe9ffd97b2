"""The training loop.

Reads top to bottom: set up (device, data, and ``step.build_training`` for the networks,
optimizers and the step; then the resumed state), then per step update D on a real and a
fake batch and G against the updated D, log, and call the hooks (``hooks.py``: samples,
evaluation, checkpoints, TensorBoard), then stop. The config comes resolved from
``options.resolve`` and is never changed here.

Statistics stay on the device and are read every ``log_every_steps``: no host
synchronisation per step.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from .config import TrainConfig
from .data import Batches, DataSpec, load, to_model_range
from .ema import recalibrated
from .errors import UserError
from .fileio import atomic_path, written
from .hooks import Checkpoints, Evaluation, SampleGrids, TensorBoard, TrainingDiverged, check_finite_row, save_checkpoint
from .options import Resolved, resolve, write_config
from .runlog import STAT_NAMES, CollapseDetector, MetricsLog
from .runtime import all_agree, choose_device, init_distributed, print0, rng_state, seed_everything, set_rng_state
from .signals import StopFlag, on_signals
from .step import build_training

__all__ = ["Trainer", "TrainingDiverged", "lr_factor", "train"]


def lr_factor(schedule: str, progress: float, step: int, warmup_steps: int) -> float:
    """The learning-rate multiplier at ``progress`` in [0, 1] of the run (steps or wall time)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return warm * (1.0 - progress)
    if schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
    return warm


class Trainer:
    """Holds the training state; ``run()`` trains until the configured length or a stop signal."""

    def __init__(
        self, run: Resolved | TrainConfig, *, resume: str | None = None, explicit: set[str] | None = None
    ) -> None:
        if not isinstance(run, Resolved):  # a shortcut for Python callers: the same rules as the CLI
            run = resolve(run, resume=resume, given=explicit)
        self.cfg = cfg = run.cfg  # final: nothing below changes it
        self.run_dir, self.continued_from = run.run_dir, run.continued_from
        self.resumed = run.checkpoint is not None
        self.dist = init_distributed(cfg.device)
        self.device = choose_device(cfg.device, self.dist.local_rank)
        self.hooks: list = [SampleGrids()]
        if cfg.eval_every_steps:  # before the data: a missing feature network fails first
            self.hooks.append(Evaluation(cfg))
        self.hooks.append(Checkpoints())
        self.best_fid = math.inf
        seed_everything(cfg.seed + self.dist.rank)
        spec = DataSpec(
            name=cfg.data, root=cfg.data_root, channels=cfg.channels, image_size=cfg.image_size,
            in_memory=cfg.in_memory, max_images=cfg.max_images, download=cfg.download,
        )
        data = load(spec, progress=not cfg.quiet and self.dist.is_main)
        self.batches = Batches(
            data, cfg.batch_size, seed=cfg.seed, device=self.device, rank=self.dist.rank,
            world_size=self.dist.world_size, num_workers=cfg.num_workers,
        )
        # None: no step limit, the --minutes budget alone ends the run
        self.total_steps = 1 if cfg.dry_run else (
            cfg.steps if cfg.steps is not None
            else cfg.epochs * self.batches.steps_per_epoch if cfg.epochs is not None else None
        )
        self.budget_s = None if cfg.minutes is None or cfg.dry_run else cfg.minutes * 60
        self.train_seconds = 0.0  # wall time spent in training steps, over every resumed part of the run

        parts = build_training(cfg, self.device, dist=self.dist)
        self.G, self.D, self.ema = parts.G, parts.D, parts.ema  # the raw modules: what checkpoints store
        self.opt_G, self.opt_D, self.scaler_G, self.scaler_D = parts.opt_G, parts.opt_D, parts.scaler_G, parts.scaler_D
        self.train_step, self.precision, self.memory_format = parts.step, parts.precision, parts.memory_format
        self.noise_rng, self.fixed_noise = parts.noise_rng, parts.fixed_noise

        # state that a checkpoint restores
        self.step = self.epoch = self.step_in_epoch = 0
        self.stats_sum = torch.zeros(len(STAT_NAMES), device=self.device)
        self.stats_count = 0
        if run.checkpoint is not None:
            self._restore(run.checkpoint)
            if self.budget_s is not None and self.train_seconds >= self.budget_s:
                raise UserError(
                    f"{self.run_dir} has used its {cfg.minutes:g}-minute budget "
                    f"({self.train_seconds / 60:.1f} min); give a larger --minutes to train on"
                )
            if self.total_steps is not None and self.step >= self.total_steps:
                raise UserError(
                    f"{self.run_dir} is already at step {self.step}, the run's length is {self.total_steps} steps; "
                    f"give --steps above {self.step} (or more --epochs) to train on"
                )
        self.stop = StopFlag()
        self.log = None  # metrics.jsonl on rank 0, opened by run()

    @property
    def d_steps(self) -> int:
        """D's optimizer steps taken by this process (the compile fall-back's check)."""
        return self.train_step.d_steps

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped early: a signal's name, or another rank's request; None while training."""
        return self.stop.reason

    def emit(self, event: str, *args) -> None:
        """Call ``event`` on every hook that has it, in order."""
        for hook in self.hooks:
            method = getattr(hook, event, None)
            if method is not None:
                method(self, *args)

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        cfg = self.cfg
        self._prepare_run_dir()
        if self.dist.is_main:
            self.log = MetricsLog(self.run_dir / "metrics.jsonl")
            if cfg.tensorboard:
                self.hooks.append(TensorBoard(self.run_dir))
        from tqdm import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=cfg.quiet or not self.dist.is_main)
        images_per_step = cfg.batch_size * self.dist.world_size
        last_time, last_step = time.perf_counter(), self.step
        segment_start, seconds_before = last_time, self.train_seconds
        collapse = CollapseDetector()
        finished = False
        self.train_step.train()

        with on_signals(self.stop):
            while not finished and self.stop_reason is None:
                for real_u8 in self.batches.epoch(self.epoch, self.step_in_epoch):
                    # (1) one step: update D on a real and a fake batch, then G
                    real = to_model_range(real_u8).contiguous(memory_format=self.memory_format)
                    z = torch.randn(
                        images_per_step, cfg.latent_dim, device=self.device, generator=self.noise_rng
                    )[self.dist.rank :: self.dist.world_size]
                    self._schedule_lr()
                    stats = self._step(real, z)
                    self.ema.update(self.G, self.step)
                    self.stats_sum += stats
                    self.stats_count += 1
                    self.step += 1
                    self.step_in_epoch += 1
                    bar.update(1)
                    self.train_seconds = seconds_before + time.perf_counter() - segment_start
                    done = finished = self._finished()

                    # (2) log: the only host synchronisation. Rows fall on multiples of log_every_steps,
                    # so a stopped and resumed run writes exactly the rows of a straight one
                    if self.step % cfg.log_every_steps == 0 or (done and self.stats_count):
                        now = time.perf_counter()
                        row = self._read_stats(partial=self.step % cfg.log_every_steps != 0)
                        row["img_per_s"] = round(images_per_step * (self.step - last_step) / (now - last_time), 1)
                        last_time, last_step = now, self.step
                        self._log(row, bar)
                        if collapse.add(row):
                            bar.write(
                                f"warning: training looks collapsed at step {self.step}: D(x) "
                                f"{row['D_x']:.3f}, D(G(z)) {row['D_G_z_before']:.4f}, loss_G "
                                f"{row['loss_G']:.1f}; D wins every batch, G gets no useful gradient "
                                "and the samples are likely one repeated image"
                            )
                    # (3) samples, evaluation, checkpoints on their schedules
                    self.emit("after_step", done)
                    # (4) stop: ranks agree on stopping at log steps, so a signal costs no sync per step
                    if self.dist.world_size == 1 or self.step % cfg.log_every_steps == 0:
                        if all_agree(self.stop_reason is not None, self.device) and self.stop_reason is None:
                            self.stop.reason = "another rank was asked to stop"
                    if done or self.stop_reason is not None:
                        break
                else:
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    finished = self._finished()

        bar.close()
        if self.stop_reason is not None:
            save_checkpoint(self)  # the partial log interval is in it and continues on resume
        if self.dist.is_main:
            final = self._final_pictures()
            if self.stop_reason is None:
                print0(f"done: {self.step} steps; samples {final}; run directory {self.run_dir}")
        if self.stop_reason is not None:
            print0(
                f"stopped at step {self.step} ({self.stop_reason}); checkpoint saved; samples in "
                f"{self.run_dir / 'samples'}. Resume with:\n  dcgan train --resume {self.run_dir}"
            )
        self.emit("close")
        return self.run_dir

    def _step(self, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        lazy_r1 = cfg.r1_gamma and self.step % cfg.r1_every_steps == 0
        return self.train_step(real, z, r1_weight=cfg.r1_gamma / 2 * cfg.r1_every_steps if lazy_r1 else 0.0)

    def _finished(self) -> bool:
        """The step limit is reached, or the time budget is spent (all ranks agree, at log steps)."""
        if self.total_steps is not None and self.step >= self.total_steps:
            return True
        if self.budget_s is None:
            return False
        if self.dist.world_size == 1:
            return self.train_seconds >= self.budget_s
        return self.step % self.cfg.log_every_steps == 0 and all_agree(
            self.train_seconds >= self.budget_s, self.device)

    def _schedule_lr(self) -> None:
        """Both learning rates follow the schedule over the run's steps or its time budget, whichever is known."""
        cfg = self.cfg
        if cfg.lr_schedule == "constant" and not cfg.lr_warmup_steps:
            return
        progress = max(self.step / self.total_steps if self.total_steps else 0.0,
                       self.train_seconds / self.budget_s if self.budget_s else 0.0)
        factor = lr_factor(cfg.lr_schedule, progress, self.step, cfg.lr_warmup_steps)
        for opt, base in ((self.opt_G, cfg.lr_g), (self.opt_D, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def _final_pictures(self) -> Path:
        """samples/final.png and losses.png, also when a signal ended the run between sample steps."""
        from .runlog import plot_losses

        grid = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        if not grid.is_file():
            grid = self.save_samples(f"step_{self.step:07d}")
        final = self.run_dir / "samples" / "final.png"
        with written("the final sample grid", final), atomic_path(final) as tmp:
            shutil.copyfile(grid, tmp)
        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "losses.png")
        return final

    def _read_stats(self, partial: bool = False) -> dict:
        """Mean statistics since the last row; a partial row (the end of a run between log steps)
        keeps its sums, which the checkpoint carries on into a resumed run."""
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(self.stats_sum)
            self.stats_sum /= self.dist.world_size
        values = (self.stats_sum / max(self.stats_count, 1)).tolist()
        if not partial:
            self.stats_sum.zero_()
            self.stats_count = 0
        row = {"step": self.step, "epoch": self.epoch, **dict(zip(STAT_NAMES, values))}
        if partial:
            row["partial"] = True
        check_finite_row(row, self)
        return row

    def _log(self, row: dict, bar) -> None:
        if self.log is None:
            return
        self.log.write(row)
        bar.set_postfix_str(
            f"ep {row['epoch']} D {row['loss_D']:.3f} G {row['loss_G']:.3f} D(x) {row['D_x']:.2f} "
            f"D(G(z)) {row['D_G_z_before']:.2f} {row['img_per_s']:.0f} img/s", refresh=False,
        )
        if self.cfg.quiet:
            print0(json.dumps(row))
        self.emit("on_row", row)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {
            "config": self.cfg.to_dict(),
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler_G": self.scaler_G.state_dict(), "scaler_D": self.scaler_D.state_dict(),
            "step": self.step, "epoch": self.epoch,
            "images_in_epoch": self.step_in_epoch * self.cfg.batch_size * self.dist.world_size,
            "stats_sum": self.stats_sum.cpu(), "stats_count": self.stats_count,
            "fixed_noise": self.fixed_noise, "rng": rng_state(),
            "noise_rng": self.noise_rng.get_state(), "world_size": self.dist.world_size,
            "best_fid": self.best_fid, "train_seconds": self.train_seconds,
        }

    def _restore(self, state: dict) -> None:
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.ema.load_state_dict(state["G_ema"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, KeyError, ValueError) as e:
            # load_state_dict's first line only names the module; the second names the tensor
            detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
            raise UserError(f"checkpoint does not fit this configuration: {detail[:300]}") from None
        if state.get("scaler_G"):
            self.scaler_G.load_state_dict(state["scaler_G"])
            self.scaler_D.load_state_dict(state["scaler_D"])
        self.step, self.epoch = state["step"], state["epoch"]
        # the position is kept in images so that another number of processes resumes it too
        self.step_in_epoch = state["images_in_epoch"] // (self.cfg.batch_size * self.dist.world_size)
        self.fixed_noise = state["fixed_noise"]
        self.stats_sum = state["stats_sum"].to(self.device)
        self.stats_count = state["stats_count"]
        self.best_fid = state.get("best_fid", math.inf)
        self.train_seconds = state.get("train_seconds", 0.0)
        set_rng_state(state["rng"])
        try:
            self.noise_rng.set_state(state["noise_rng"])
        except RuntimeError:  # written on another device type (CPU and CUDA generators differ)
            self.noise_rng.manual_seed(self.cfg.seed * 7919 + 1 + self.step)
            print0(f"notice: checkpoint's noise stream is for another device; reseeded for {self.device}")

    # ------------------------------------------------------------------ artifacts

    def _prepare_run_dir(self) -> None:
        if not self.dist.is_main:
            return
        try:
            (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
            metrics = self.run_dir / "metrics.jsonl"
            if self.continued_from is not None and (self.continued_from / "metrics.jsonl").is_file():
                shutil.copyfile(self.continued_from / "metrics.jsonl", metrics)  # the steps it continues
            if self.resumed:
                from .runlog import truncate_rows

                truncate_rows(metrics, self.step)  # rows the resumed steps write again
                for stale in (self.run_dir / "checkpoints").glob(".*.tmp"):  # left by a kill mid-write
                    stale.unlink(missing_ok=True)
            write_config(self.run_dir, self.cfg, {
                "device": str(self.device), "precision": self.precision,
                "world_size": self.dist.world_size, "total_steps": self.total_steps,
                "steps_per_epoch": self.batches.steps_per_epoch, "num_images": len(self.batches.data),
                "torch": torch.__version__,
            })
        except OSError as e:
            raise UserError(f"cannot write to run directory {self.run_dir}: {e.strerror or e}") from None

    def save_samples(self, name: str) -> Path:
        from torchvision.utils import save_image

        G = recalibrated(self.ema.model, seed=self.cfg.seed)
        with torch.no_grad():
            images = G(self.fixed_noise.to(self.device)).float().cpu()
        path = self.run_dir / "samples" / f"{name}.png"
        with written("a sample grid", path, "the checkpoints written so far are intact"), atomic_path(path) as tmp:
            save_image(images, tmp, format="png", nrow=int(math.sqrt(len(images))) or 1, normalize=True,
                       value_range=(-1, 1))
        self.emit("on_images", images)
        return path


def train(cfg: TrainConfig, *, resume: str | None = None, explicit: set[str] | None = None) -> Path:
    """Train and return the run directory."""
    return Trainer(cfg, resume=resume, explicit=explicit).run()
