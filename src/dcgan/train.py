"""The training loop.

Reads top to bottom: set up (device, data, and ``step.build_training`` for the networks,
optimizers and the step; then the resumed state, or the weights a fine-tuning run starts
from), then per step update D on a real and a fake batch and G against the updated D, log,
and call the hooks (``hooks.py``: samples, evaluation, checkpoints, TensorBoard), then stop.
The config comes resolved from ``options.resolve`` and is never changed here.

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

from .augment import mirror
from .config import TrainConfig
from .data import Batches, DataSpec, load, to_model_range
from .ema import recalibrated
from .errors import UserError
from .fileio import atomic_path
from .hooks import (
    Checkpoints,
    Evaluation,
    SampleGrids,
    TensorBoard,
    TrainingDiverged,
    check_finite_row,
    checkpoint_state,
    load_networks,
    restore_state,
    save_checkpoint,
)
from .options import Resolved, resolve, write_config
from .outputs import reported
from .runlock import RunLock
from .runlog import STAT_NAMES, CollapseDetector, MetricsLog
from .runtime import all_agree, choose_device, init_distributed, print0, seed_everything
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
        self.lock = RunLock(self.run_dir)  # one writer per run directory, held until the run ends
        if self.resumed and self.continued_from is None and self.dist.is_main:
            self.lock.acquire()  # before the data: a second --resume of a live run is refused at once
        # a set-up that fails (no data, a spent budget) must not keep the lock: in-process callers
        # (tests, notebooks) would find their own run locked
        try:
            self.device = choose_device(cfg.device, self.dist.local_rank)
            self.hooks: list = [SampleGrids()]
            if cfg.eval_every_steps:  # before the data: a missing feature network fails first
                self.hooks.append(Evaluation(cfg))
            self.hooks.append(Checkpoints())
            self.best_fid = math.inf
            seed_everything(cfg.seed + self.dist.rank)
            spec = DataSpec(
                name=cfg.data,
                root=cfg.data_root,
                channels=cfg.channels,
                image_size=cfg.image_size,
                in_memory=cfg.in_memory,
                max_images=cfg.max_images,
                download=cfg.download,
                labels=cfg.conditional,
            )
            data = load(spec, progress=not cfg.quiet and self.dist.is_main)
            self.batches = Batches(
                data,
                cfg.batch_size,
                seed=cfg.seed,
                device=self.device,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                num_workers=cfg.num_workers,
                labels=cfg.conditional,
            )
            # None: no step limit, the --minutes budget alone ends the run
            self.total_steps = (
                1
                if cfg.dry_run
                else (
                    cfg.steps
                    if cfg.steps is not None
                    else cfg.epochs * self.batches.steps_per_epoch
                    if cfg.epochs is not None
                    else None
                )
            )
            self.budget_s = None if cfg.minutes is None or cfg.dry_run else cfg.minutes * 60
            self.train_seconds = 0.0  # wall time spent in training steps, over every resumed part of the run

            parts = build_training(cfg, self.device, dist=self.dist)
            self.G, self.D, self.ema = parts.G, parts.D, parts.ema  # the raw modules: what checkpoints store
            self.opt_G, self.opt_D, self.scaler_G, self.scaler_D = (
                parts.opt_G,
                parts.opt_D,
                parts.scaler_G,
                parts.scaler_D,
            )
            self.train_step, self.precision, self.memory_format = parts.step, parts.precision, parts.memory_format
            self.noise_rng, self.fixed_noise = parts.noise_rng, parts.fixed_noise

            # state that a checkpoint restores
            self.step = self.epoch = self.step_in_epoch = 0
            self.stats_sum = torch.zeros(len(STAT_NAMES), device=self.device)
            self.stats_count = 0
            if run.checkpoint is not None:
                restore_state(self, run.checkpoint)
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
            elif run.init_weights is not None:
                # --init-from: the source's weights, nothing else; optimizers, step, RNG and statistics start fresh.
                # A resumed fine-tuning run takes the branch above: its own checkpoint, never the source again.
                load_networks(self, run.init_weights)
            self.stop = StopFlag()
            self.log = None  # metrics.jsonl on rank 0, opened by run()
        except BaseException:
            self.lock.release()
            raise

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
        """Train until the run's length, its time budget or a stop signal; return the run directory."""
        try:
            self._begin()  # run directory and its lock, config.json, the metrics log, TensorBoard, the progress bar
            with on_signals(self.stop):
                done = False
                while not done and self.stop_reason is None:
                    for batch in self.batches.epoch(self.epoch, self.step_in_epoch):
                        self._train_on(batch)  # (1) update D on a real and a fake batch, then G
                        done = self._finished()
                        self._log_on_schedule(done)  # (2) a metrics row: the only host synchronisation
                        self.emit("after_step", done)  # (3) samples, evaluation, checkpoints on their schedules
                        if self._stop_now(done):  # (4) the length, the budget, or a signal on any rank
                            break
                    else:
                        self.epoch, self.step_in_epoch = self.epoch + 1, 0
                        done = self._finished()
            return self._end()
        finally:
            self.lock.release()

    def _begin(self) -> None:
        from tqdm import tqdm

        self._prepare_run_dir()
        if self.dist.is_main:
            self.log = MetricsLog(self.run_dir / "metrics.jsonl")
            if self.cfg.tensorboard:
                self.hooks.append(TensorBoard(self.run_dir))
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=self.cfg.quiet or not self.dist.is_main,
        )
        self.images_per_step = self.cfg.batch_size * self.dist.world_size
        self.last_log = (time.perf_counter(), self.step)  # for img/s between rows
        self.segment = (self.last_log[0], self.train_seconds)  # this process's start, and the time before it
        self.collapse = CollapseDetector()
        self.train_step.train()

    def _train_on(self, batch) -> None:
        real_u8, y_real = batch if self.cfg.conditional else (batch, None)
        real = to_model_range(real_u8)
        if self.cfg.mirror:  # on the device, from the global RNG that checkpoints carry
            real = mirror(real)
        real = real.contiguous(memory_format=self.memory_format)
        shard = slice(self.dist.rank, None, self.dist.world_size)
        z = torch.randn(self.images_per_step, self.cfg.latent_dim, device=self.device, generator=self.noise_rng)[shard]
        labels = {}
        if self.cfg.conditional:  # G draws every class equally often, from the same stream as z
            y_fake = torch.randint(
                self.cfg.num_classes, (self.images_per_step,), device=self.device, generator=self.noise_rng
            )[shard]
            labels = {"y_real": y_real, "y_fake": y_fake}
        self._schedule_lr()
        stats = self._step(real, z, **labels)
        self.ema.update(self.G, self.step)
        self.stats_sum += stats
        self.stats_count += 1
        self.step += 1
        self.step_in_epoch += 1
        self.bar.update(1)
        self.train_seconds = self.segment[1] + time.perf_counter() - self.segment[0]

    def _log_on_schedule(self, done: bool) -> None:
        """Rows fall on multiples of log_every_steps, so a stopped and resumed run writes exactly the
        rows of a straight one; the end of a run between them writes a partial row."""
        every = self.cfg.log_every_steps
        if not (self.step % every == 0 or (done and self.stats_count)):
            return
        now = time.perf_counter()
        row = self._read_stats(partial=self.step % every != 0)
        row["img_per_s"] = round(self.images_per_step * (self.step - self.last_log[1]) / (now - self.last_log[0]), 1)
        self.last_log = (now, self.step)
        self._log(row, self.bar)
        if self.collapse.add(row):
            self.bar.write(
                f"warning: training looks collapsed at step {self.step}: D(x) "
                f"{row['D_x']:.3f}, D(G(z)) {row['D_G_z_before']:.4f}, loss_G "
                f"{row['loss_G']:.1f}; D wins every batch, G gets no useful gradient "
                "and the samples are likely one repeated image"
            )

    def _stop_now(self, done: bool) -> bool:
        # ranks agree on stopping at log steps, so a signal costs no sync per step
        if self.dist.world_size == 1 or self.step % self.cfg.log_every_steps == 0:
            if all_agree(self.stop_reason is not None, self.device) and self.stop_reason is None:
                self.stop.reason = "another rank was asked to stop"
        return done or self.stop_reason is not None

    def _end(self) -> Path:
        self.bar.close()
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

    def _step(self, real: torch.Tensor, z: torch.Tensor, **labels) -> torch.Tensor:
        cfg = self.cfg
        lazy_r1 = cfg.r1_gamma and self.step % cfg.r1_every_steps == 0
        return self.train_step(real, z, r1_weight=cfg.r1_gamma / 2 * cfg.r1_every_steps if lazy_r1 else 0.0, **labels)

    def _finished(self) -> bool:
        """The step limit is reached, or the time budget is spent (all ranks agree, at log steps)."""
        if self.total_steps is not None and self.step >= self.total_steps:
            return True
        if self.budget_s is None:
            return False
        if self.dist.world_size == 1:
            return self.train_seconds >= self.budget_s
        return self.step % self.cfg.log_every_steps == 0 and all_agree(self.train_seconds >= self.budget_s, self.device)

    def _schedule_lr(self) -> None:
        """Both learning rates follow the schedule over the run's steps or its time budget, whichever is known."""
        cfg = self.cfg
        if cfg.lr_schedule == "constant" and not cfg.lr_warmup_steps:
            return
        progress = max(
            self.step / self.total_steps if self.total_steps else 0.0,
            self.train_seconds / self.budget_s if self.budget_s else 0.0,
        )
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
        with reported("the final sample grid", final), atomic_path(final) as tmp:
            shutil.copyfile(grid, tmp)
        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "losses.png")
        from .explore import write_progress_gif

        write_progress_gif(self.run_dir)
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
            f"D(G(z)) {row['D_G_z_before']:.2f} {row['img_per_s']:.0f} img/s",
            refresh=False,
        )
        if self.cfg.quiet:
            print0(json.dumps(row))
        self.emit("on_row", row)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything a resumed run needs (hooks.checkpoint_state)."""
        return checkpoint_state(self)

    # ------------------------------------------------------------------ artifacts

    def _prepare_run_dir(self) -> None:
        if not self.dist.is_main:
            return
        new = not self.resumed or self.continued_from is not None
        made = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            if new:
                # another trainer may have made the same new run directory since options.resolve looked
                if any(p.name != self.lock.path.name for p in self.run_dir.iterdir()):
                    raise UserError(
                        f"run directory {self.run_dir} already exists; resume it with --resume "
                        f"{self.run_dir} or choose another --run-dir"
                    )
            (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
            metrics = self.run_dir / "metrics.jsonl"
            if self.continued_from is not None and (self.continued_from / "metrics.jsonl").is_file():
                shutil.copyfile(self.continued_from / "metrics.jsonl", metrics)  # the steps it continues
            if self.resumed:
                from .runlog import truncate_rows

                truncate_rows(metrics, self.step)  # rows the resumed steps write again
                for stale in (self.run_dir / "checkpoints").glob(".*.tmp*"):  # left by a kill mid-write
                    stale.unlink(missing_ok=True)
            write_config(
                self.run_dir,
                self.cfg,
                {
                    "device": str(self.device),
                    "precision": self.precision,
                    "world_size": self.dist.world_size,
                    "total_steps": self.total_steps,
                    "steps_per_epoch": self.batches.steps_per_epoch,
                    "num_images": len(self.batches.data),
                    "torch": torch.__version__,
                },
            )
        except OSError as e:
            if new and made:  # nothing of it is worth keeping, and a rerun would find it in its way
                self.lock.release()
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise UserError(f"cannot write to run directory {self.run_dir}: {e.strerror or e}") from None

    def save_samples(self, name: str) -> Path:
        from torchvision.utils import save_image

        from .sample import class_grid

        G = recalibrated(self.ema.model, seed=self.cfg.seed)
        z = self.fixed_noise.to(self.device)
        nrow = int(math.sqrt(len(z))) or 1
        with torch.no_grad():
            if self.cfg.conditional:  # one row per class
                labels, nrow = class_grid(len(z), self.cfg.num_classes)
                images = G(z[: len(labels)], labels.to(self.device)).float().cpu()
            else:
                images = G(z).float().cpu()
        path = self.run_dir / "samples" / f"{name}.png"
        hint = "the checkpoints written so far are intact"
        with reported("a sample grid", path, hint), atomic_path(path) as tmp:
            save_image(images, tmp, format="png", nrow=nrow, normalize=True, value_range=(-1, 1))
        self.emit("on_images", images)
        return path


def train(cfg: TrainConfig, *, resume: str | None = None, explicit: set[str] | None = None) -> Path:
    """Train and return the run directory."""
    return Trainer(cfg, resume=resume, explicit=explicit).run()
