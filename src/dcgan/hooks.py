"""What happens around the training loop, as hooks the trainer calls: sample grids, evaluation,
checkpoints and TensorBoard.

The loop in ``train.py`` only trains and logs; after every step it calls ``after_step`` on each hook
in order (samples, then evaluation, then checkpoints, so a checkpoint holds the state after both),
and it passes every metrics row to ``on_row``. A hook is any object with some of these methods:
``after_step(trainer, done)``, ``on_row(trainer, row)``, ``on_images(trainer, images)``, ``close(trainer)``.
What a checkpoint holds (``checkpoint_state``, ``restore_state``, and ``load_networks`` for the weights
alone) lives here beside the hook that writes it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .ema import recalibrated
from .errors import UserError
from .outputs import write_failure
from .runlog import STAT_NAMES
from .runtime import all_agree, barrier, print0, rng_state, set_rng_state
from .step import noise_seed


class TrainingDiverged(UserError):
    """A loss or a weight became NaN or infinite."""


class SampleGrids:
    """A grid of the fixed noise every ``sample_every_steps`` and at the last step (rank 0)."""

    def after_step(self, trainer, done: bool) -> None:
        if trainer.dist.is_main and (trainer.step % trainer.cfg.sample_every_steps == 0 or done):
            trainer.save_samples(f"step_{trainer.step:07d}")


class Evaluation:
    """FID and friends of the EMA generator every ``eval_every_steps``; keeps checkpoints/best.pt.

    Built before the data is loaded, so a missing feature network fails before any real work.
    """

    def __init__(self, cfg) -> None:
        from .metrics.report import EvalOptions, prepare

        self.opts = EvalOptions(num_images=cfg.eval_num_images, extractor=cfg.eval_extractor, progress=False)
        self.extractor, self.real, self.key = prepare(cfg, self.opts)

    def after_step(self, trainer, done: bool) -> None:
        if trainer.step % trainer.cfg.eval_every_steps != 0:
            return
        from .metrics.evaluate import evaluate

        G = recalibrated(trainer.ema.model, seed=trainer.cfg.seed)
        result = evaluate(
            G,
            self.real,
            self.extractor,
            num_images=self.opts.num_images,
            seed=self.opts.seed,
            batch_size=self.opts.batch_size,
            cache_key=self.key,
            progress=False,
        )
        if result is None:  # not rank 0
            return
        # the feature network and sample count travel with the figures: FIDs of two extractors never compare
        row = {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "fid": result.fid,
            "kid": result.kid_mean,
            "is": result.is_mean,
            "min_class_share": result.min_class_share,
            "extractor": result.extractor,
            "num_images": result.num_images,
        }
        trainer.log.write(row)
        trainer.emit("on_row", row)
        if result.fid < trainer.best_fid:
            trainer.best_fid = result.fid
            write_checkpoint(trainer, trainer.run_dir / "checkpoints" / "best.pt")


class Checkpoints:
    """checkpoints/latest.pt every ``checkpoint_every_steps`` and at the last step; step_N.pt every
    ``keep_every_steps`` (latest.pt is written then too);
    minute_M.pt at the first step past every ``keep_every_minutes`` of training time (rank 0 alone: the
    ranks' clocks differ, so these take no collective), which is how ``dcgan quality`` measures time to quality."""

    def __init__(self) -> None:
        self.minutes_kept: int | None = None  # periods of keep_every_minutes already kept

    def after_step(self, trainer, done: bool) -> None:
        keep = trainer.cfg.keep_every_steps
        # a step to keep is a checkpoint step too: --keep-every-steps needs no multiple of --checkpoint-every-steps
        if trainer.step % trainer.cfg.checkpoint_every_steps == 0 or done or (keep and trainer.step % keep == 0):
            save_checkpoint(trainer)
        period_s = trainer.cfg.keep_every_minutes * 60
        if not period_s or not trainer.dist.is_main:
            return
        if self.minutes_kept is None:  # a resumed run does not write again what its first part kept
            self.minutes_kept = int(trainer.segment[1] // period_s)
        periods = int(trainer.train_seconds // period_s)
        if periods > self.minutes_kept:
            self.minutes_kept = periods
            minutes = periods * trainer.cfg.keep_every_minutes
            write_checkpoint(trainer, trainer.run_dir / "checkpoints" / f"minute_{minutes:g}.pt")


def save_checkpoint(trainer) -> None:
    """Check the weights, gather the partial statistics, write latest.pt (rank 0), wait for every rank."""
    _check_finite_weights(trainer)
    if trainer.dist.world_size > 1:
        # every rank then holds the mean partial sums, which is what resume restores on each;
        # the mean over ranks at the next log step is unchanged by this
        import torch.distributed as dist

        dist.all_reduce(trainer.stats_sum)  # Gloo has no AVG
        trainer.stats_sum /= trainer.dist.world_size
    if trainer.dist.is_main:
        folder = trainer.run_dir / "checkpoints"
        write_checkpoint(trainer, folder / ckpt.LATEST)
        if trainer.cfg.keep_every_steps and trainer.step % trainer.cfg.keep_every_steps == 0:
            write_checkpoint(trainer, folder / f"step_{trainer.step:07d}.pt")
    barrier()


def checkpoint_state(trainer) -> dict:
    """The trainer's state in the checkpoint schema (``checkpoint.training_state``)."""
    return ckpt.training_state(
        config=trainer.cfg.to_dict(),
        G=trainer.G.state_dict(),
        D=trainer.D.state_dict(),
        G_ema=trainer.ema.state_dict(),
        opt_G=trainer.opt_G.state_dict(),
        opt_D=trainer.opt_D.state_dict(),
        scaler_G=trainer.scaler_G.state_dict(),
        scaler_D=trainer.scaler_D.state_dict(),
        step=trainer.step,
        epoch=trainer.epoch,
        images_in_epoch=trainer.step_in_epoch * trainer.cfg.batch_size * trainer.dist.world_size,
        stats_sum=trainer.stats_sum.cpu(),
        stats_count=trainer.stats_count,
        fixed_noise=trainer.fixed_noise,
        rng=rng_state(),
        noise_rng=trainer.noise_rng.get_state(),
        world_size=trainer.dist.world_size,
        best_fid=trainer.best_fid,
        train_seconds=trainer.train_seconds,
    )


@contextmanager
def _must_fit():
    """A state dict that does not fit the built trainer is one line naming the tensor, not a traceback."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError) as e:
        # load_state_dict's first line only names the module; the second names the tensor
        detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
        raise UserError(f"checkpoint does not fit this configuration: {detail[:300]}") from None


def load_networks(trainer, weights: ckpt.Networks) -> None:
    """G, D and the EMA copy (``checkpoint.networks``): part of a resume, and all that --init-from takes."""
    with _must_fit():
        trainer.G.load_state_dict(weights.G)
        trainer.D.load_state_dict(weights.D)
        trainer.ema.load_state_dict(weights.G_ema)


def restore_state(trainer, state: dict) -> None:
    """Put a checkpoint's state back into a freshly built trainer."""
    weights = ckpt.networks(state)
    if weights is None:
        raise UserError("checkpoint does not fit this configuration: it lacks G, D or the EMA weights")
    load_networks(trainer, weights)
    optimizers = ckpt.optimizer_states(state)
    with _must_fit():
        trainer.opt_G.load_state_dict(optimizers.opt_G)
        trainer.opt_D.load_state_dict(optimizers.opt_D)
        where = ckpt.progress(state)
    if optimizers.scaler_G:
        trainer.scaler_G.load_state_dict(optimizers.scaler_G)
        trainer.scaler_D.load_state_dict(optimizers.scaler_D)
    trainer.step, trainer.epoch = where.step, where.epoch
    # the position is kept in images so that another number of processes resumes it too
    trainer.step_in_epoch = where.images_in_epoch // (trainer.cfg.batch_size * trainer.dist.world_size)
    trainer.fixed_noise = where.fixed_noise
    trainer.stats_sum = where.stats_sum.to(trainer.device)
    trainer.stats_count = where.stats_count
    trainer.best_fid = where.best_fid
    trainer.train_seconds = where.train_seconds
    set_rng_state(where.rng)
    try:
        trainer.noise_rng.set_state(where.noise_rng)
    except RuntimeError:  # written on another device type (CPU and CUDA generators differ)
        trainer.noise_rng.manual_seed(noise_seed(trainer.cfg.seed, trainer.step))
        print0(f"notice: checkpoint's noise stream is for another device; reseeded for {trainer.device}")


def write_checkpoint(trainer, path: Path) -> None:
    try:
        ckpt.save(trainer.state_dict(), path)
    except Exception as e:  # torch.save reports a full disk as a RuntimeError
        reason = write_failure(e, path.parent)
        if reason is None:
            raise
        raise UserError(
            f"could not write a checkpoint to {path.parent} ({reason}); the previous checkpoint is intact"
        ) from None


def _check_finite_weights(trainer) -> None:
    for name, net in (("generator", trainer.G), ("discriminator", trainer.D)):
        finite = torch.stack([p.isfinite().all() for p in net.parameters()]).all()
        if all_agree(not bool(finite), trainer.device):
            raise TrainingDiverged(
                f"the {name}'s weights became NaN or infinite by step {trainer.step}; "
                f"not saving them; the last good checkpoint is in {trainer.run_dir / 'checkpoints'}"
            )


class TensorBoard:
    """RUN_DIR/tensorboard: the logged statistics, FID and the sample grids (``--tensorboard``, rank 0)."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def on_row(self, trainer, row: dict) -> None:
        keys = ("fid",) if "fid" in row else STAT_NAMES + ("img_per_s",)
        for key in keys:
            self.writer.add_scalar(key, row[key], trainer.step)

    def on_images(self, trainer, images: torch.Tensor) -> None:
        from torchvision.utils import make_grid

        self.writer.add_image("samples", make_grid(images, normalize=True, value_range=(-1, 1)), trainer.step)

    def close(self, trainer) -> None:
        self.writer.close()


def check_finite_row(row: dict, trainer) -> None:
    """A NaN or infinite loss ends the run with the last good checkpoint named."""
    for network, key in (("discriminator", "loss_D"), ("generator", "loss_G")):
        if not math.isfinite(row[key]):
            raise TrainingDiverged(
                f"{key} became {row[key]} by step {trainer.step} (the {network} diverged); "
                f"stopping; the last good checkpoint is in {trainer.run_dir / 'checkpoints'}"
            )
