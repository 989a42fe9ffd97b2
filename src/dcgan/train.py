"""The training loop.

Reads top to bottom: set up (device, data, networks, optimizers, resume), then
per step update D on a real and a fake batch and G against the updated D,
then log, sample and checkpoint on their schedules, then stop.

Statistics stay on the device and are read every ``log_every_steps``: no host
synchronisation per step.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from .config import ARCHITECTURE_FIELDS, TrainConfig
from .data import Batches, DataSpec, load, to_model_range
from .ema import EMA, recalibrated
from .errors import UserError
from .fileio import atomic_path, check_new_folder, write_text_atomic, written
from .losses import discriminator_loss, generator_loss, r1_penalty
from .models import Discriminator, Generator
from .runtime import (
    all_agree, autocast, barrier, choose_device, convert_sync_batchnorm, init_distributed, print0, resolve_precision,
    rng_state, seed_everything, set_rng_state,
)

STAT_NAMES = ("loss_D", "loss_G", "D_x", "D_G_z_before", "D_G_z_after")


class TrainingDiverged(UserError):
    """A loss or a weight became NaN or infinite."""


class Logits(nn.Module):
    """``forward`` = ``D.logits``, so that DDP and torch.compile wrap the path training uses."""

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator.logits(x)


def train_step(
    G: nn.Module, D_logits: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
    real: torch.Tensor, z: torch.Tensor, *, real_label: float = 1.0, amp=None,
    scaler_G: torch.amp.GradScaler | None = None, scaler_D: torch.amp.GradScaler | None = None,
    r1_weight: float = 0.0,
) -> torch.Tensor:
    """One DCGAN step; returns the detached statistics [loss_D, loss_G, D(x), D(G(z)) before, after].

    ``r1_weight`` > 0 adds ``r1_weight x`` the R1 penalty to D's loss in this step (lazy
    regularisation: the trainer passes gamma / 2 x the interval on every interval-th step).
    """
    amp = amp if amp is not None else nullcontext()  # reusable: entered once per phase
    scaler_G = scaler_G or torch.amp.GradScaler(enabled=False)
    scaler_D = scaler_D or torch.amp.GradScaler(enabled=False)

    # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
    opt_D.zero_grad(set_to_none=True)
    if r1_weight:
        real = real.detach().requires_grad_(True)
    with amp:
        fake = G(z)
        logits_real = D_logits(real)
        logits_fake = D_logits(fake.detach())  # detached: the D step sends no gradient into G
        loss_D = discriminator_loss(logits_real, logits_fake, real_label)
    penalty = r1_weight * r1_penalty(logits_real, real) if r1_weight else 0.0
    scaler_D.scale(loss_D + penalty).backward()
    scaler_D.step(opt_D)
    scaler_D.update()

    # (2) Update G network: maximize log(D(G(z)))
    opt_G.zero_grad(set_to_none=True)
    with amp:
        logits_fake_after = D_logits(fake)
        loss_G = generator_loss(logits_fake_after)
    scaler_G.scale(loss_G).backward()
    scaler_G.step(opt_G)
    scaler_G.update()

    with torch.no_grad():
        return torch.stack([
            loss_D.detach().float(), loss_G.detach().float(),
            torch.sigmoid(logits_real.detach().float()).mean(),
            torch.sigmoid(logits_fake.detach().float()).mean(),
            torch.sigmoid(logits_fake_after.detach().float()).mean(),
        ])


def make_optimizers(G: nn.Module, D: nn.Module, cfg: TrainConfig, device: torch.device):
    """Adam for both players; fused kernels on CUDA, multi-tensor (foreach) elsewhere."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    betas = (cfg.beta1, cfg.beta2)
    return (
        torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas, **fast),
        torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas, **fast),
    )


def build_models(cfg: TrainConfig) -> tuple[Generator, Discriminator]:
    G = Generator(
        latent_dim=cfg.latent_dim, channels=cfg.channels, image_size=cfg.image_size, width=cfg.g_width
    )
    D = Discriminator(channels=cfg.channels, image_size=cfg.image_size, width=cfg.d_width)
    return G, D


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(schedule: str, progress: float, step: int, warmup_steps: int) -> float:
    """The learning-rate multiplier at ``progress`` in [0, 1] of the run (steps or wall time)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return warm * (1.0 - progress)
    if schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
    return warm


def validate(cfg: TrainConfig) -> None:
    """Fail on bad values and combinations before any work starts."""
    from .models import SUPPORTED_CHANNELS, SUPPORTED_IMAGE_SIZES

    if cfg.image_size not in SUPPORTED_IMAGE_SIZES:
        raise UserError(
            f"unsupported image size {cfg.image_size}; supported: "
            f"{', '.join(map(str, SUPPORTED_IMAGE_SIZES))}"
        )
    if cfg.channels not in SUPPORTED_CHANNELS:
        raise UserError(f"unsupported channel count {cfg.channels}; use 1 (grayscale) or 3 (RGB)")
    positive = ("batch_size", "latent_dim", "g_width", "d_width", "log_every_steps",
                "sample_every_steps", "checkpoint_every_steps", "num_samples")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    for name in ("lr_g", "lr_d"):
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise UserError(f"--{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UserError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if not 0.5 < cfg.real_label <= 1.0:
        raise UserError(f"--real-label must be in (0.5, 1], got {cfg.real_label}")
    if cfg.steps is None and cfg.epochs is None and cfg.minutes is None:
        raise UserError("give the run length with --epochs, --steps or --minutes")
    if cfg.minutes is not None and not (cfg.minutes > 0 and math.isfinite(cfg.minutes)):
        raise UserError(f"--minutes must be a positive number, got {cfg.minutes}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if not (cfg.r1_gamma >= 0 and math.isfinite(cfg.r1_gamma)):
        raise UserError(f"--r1-gamma must be 0 or more, got {cfg.r1_gamma}")
    if cfg.r1_every_steps < 1:
        raise UserError(f"--r1-every-steps must be at least 1, got {cfg.r1_every_steps}")
    if (cfg.steps is not None and cfg.steps < 1) or (cfg.epochs is not None and cfg.epochs < 1):
        raise UserError("--epochs and --steps must be at least 1")
    if cfg.max_images is not None and cfg.max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {cfg.max_images}")
    if cfg.eval_num_images < 2:
        raise UserError(f"--eval-num-images must be at least 2 for FID, got {cfg.eval_num_images}")
    if cfg.compile_mode not in COMPILE_MODES:
        raise UserError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {cfg.compile_mode!r}")
    for name in ("keep_every_steps", "eval_every_steps", "num_workers", "lr_warmup_steps"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 or more")


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.data}-{cfg.image_size}px-{datetime.now():%Y%m%d-%H%M%S}"


def check_compatible(saved: dict, cfg: TrainConfig, explicit: set[str], source: Path) -> None:
    """A resumed run must agree with its checkpoint on everything that shapes the networks."""
    for name in ARCHITECTURE_FIELDS:
        if name in explicit and saved.get(name) != getattr(cfg, name):
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{source} was trained with {name}={saved.get(name)!r}, but {flag} "
                f"{getattr(cfg, name)!r} was given; drop the option or start a new run"
            )


def refuse_older_checkpoint(resume_path: Path, step: int) -> None:
    """Resuming an older checkpoint in place would overwrite its run's newer state: refuse."""
    latest = resume_path.parent / ckpt.LATEST
    if resume_path.name == ckpt.LATEST or not latest.is_file():
        return
    try:
        newest = ckpt.load(latest)["step"]
    except UserError:  # an unreadable latest.pt is no newer state to protect
        return
    if newest > step:
        raise UserError(
            f"{resume_path} is at step {step} but {latest} is at step {newest}; resuming in place would "
            f"overwrite the newer state: add --run-dir NEW to continue step {step} in a new run directory"
        )


def report_config_edits(run_dir: Path, saved: dict, explicit: set[str]) -> None:
    """config.json is a record, not an input: say so when it was edited since the checkpoint."""
    path = run_dir / "config.json"
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(recorded, dict):
        return
    edited = sorted(
        name for name, value in saved.items()
        if name in recorded and recorded[name] != value and name not in explicit and name != "run_dir"
    )
    if edited:
        changes = ", ".join(f"{name} {saved[name]!r} -> {recorded[name]!r}" for name in edited)
        print0(
            f"notice: {path} was edited ({changes}); resuming uses the checkpoint's values: give "
            f"options on the command line to change them", file=sys.stderr,
        )


class Trainer:
    """Holds the training state; ``run()`` trains until the configured length or a stop signal."""

    def __init__(
        self, cfg: TrainConfig, *, resume: str | None = None, explicit: set[str] = frozenset()
    ) -> None:
        self.dist = init_distributed(cfg.device)
        self.device = choose_device(cfg.device, self.dist.local_rank)
        resumed = None
        self.resumed = resume is not None
        self.continued_from: Path | None = None  # the source run when resuming into a new run directory
        if resume is not None:
            resume_path = ckpt.resolve(resume)
            resumed = ckpt.load(resume_path, map_location="cpu")
            saved_cfg = resumed["config"]
            check_compatible(saved_cfg, cfg, explicit, resume_path)
            source_run = resume_path.parent.parent
            report_config_edits(source_run, saved_cfg, explicit)
            # the checkpoint's config, overridden by what was given explicitly (length, logging, ...)
            values = {**saved_cfg, **{k: getattr(cfg, k) for k in explicit}}
            if cfg.run_dir is None:
                refuse_older_checkpoint(resume_path, resumed["step"])
                values["run_dir"] = str(source_run)
            elif Path(cfg.run_dir).resolve() != source_run.resolve():
                self.continued_from = source_run
            cfg = TrainConfig.from_dict(values)
        cfg = cfg.resolved()
        validate(cfg)
        self.cfg = cfg
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        cfg.run_dir = str(self.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"--run-dir {self.run_dir} is a file; give a folder path")
        if (resumed is None or self.continued_from is not None) and self.run_dir.exists() and any(
            self.run_dir.iterdir()
        ):
            raise UserError(
                f"run directory {self.run_dir} already exists; resume it with --resume "
                f"{self.run_dir} or choose another --run-dir"
            )
        if not self.run_dir.exists():
            check_new_folder(self.run_dir, "run directory")  # its parent must be a writable folder

        self.evaluation = self._prepare_evaluation() if cfg.eval_every_steps else None
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

        # networks: the raw modules are what checkpoints store; the *_train ones run the steps
        self.G, self.D = build_models(cfg)
        # the EMA copy keeps plain batch norm: rank 0 alone runs it (samples, recalibration)
        self.ema = EMA(self.G, cfg.ema_decay)
        if cfg.sync_bn and self.dist.world_size > 1:
            self.G = convert_sync_batchnorm(self.G, self.device)
            self.D = convert_sync_batchnorm(self.D, self.device)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        self.G.to(self.device, memory_format=memory_format)
        self.D.to(self.device, memory_format=memory_format)
        self.ema.model.to(self.device, memory_format=memory_format)
        self.opt_G, self.opt_D = make_optimizers(self.G, self.D, cfg, self.device)
        self.d_steps = 0  # counted in Python (no device sync) for the torch.compile fall-back

        def count_d_step(*_):
            self.d_steps += 1

        self.opt_D.register_step_post_hook(count_d_step)
        fp16 = self.precision == "fp16"
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.G_train, self.D_logits = self._wrap(self.G, Logits(self.D))

        # state that a checkpoint restores
        self.step = self.epoch = self.step_in_epoch = 0
        self.stats_sum = torch.zeros(len(STAT_NAMES), device=self.device)
        self.stats_count = 0
        # one noise stream for all ranks, each taking its slice of the global batch: a run
        # on N processes draws the same z as one process with N times the batch
        self.noise_rng = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + 1)
        fixed = torch.Generator().manual_seed(cfg.seed)
        self.fixed_noise = torch.randn(cfg.num_samples, cfg.latent_dim, generator=fixed)
        if resumed is not None:
            self._restore(resumed)
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
        self.stop_reason: str | None = None

    def _prepare_evaluation(self):
        from .metrics.report import EvalOptions, prepare

        opts = EvalOptions(
            num_images=self.cfg.eval_num_images, extractor=self.cfg.eval_extractor,
            progress=False,
        )
        return opts, *prepare(self.cfg, opts)

    def _evaluate(self, log) -> None:
        """FID and friends of the EMA generator; rank 0 logs them and keeps the best checkpoint."""
        from .metrics.evaluate import evaluate

        opts, extractor, real, key = self.evaluation
        G = recalibrated(self.ema.model, seed=self.cfg.seed)
        result = evaluate(G, real, extractor, num_images=opts.num_images, seed=opts.seed,
                          batch_size=opts.batch_size, cache_key=key, progress=False)
        if result is None:  # not rank 0
            return
        row = {"step": self.step, "epoch": self.epoch, "fid": result.fid, "kid": result.kid_mean,
               "is": result.is_mean, "min_class_share": result.min_class_share}
        log.write(row)
        if self.writer is not None:
            self.writer.add_scalar("fid", result.fid, self.step)
        if result.fid < self.best_fid:
            self.best_fid = result.fid
            self._write(self.run_dir / "checkpoints" / "best.pt")

    def _wrap(self, G: nn.Module, D_logits: nn.Module):
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            G, D_logits = DDP(G, device_ids=ids), DDP(D_logits, device_ids=ids)
        self.eager = (G, D_logits)
        if self.cfg.compile:
            try:
                G, D_logits = (torch.compile(m, mode=self.cfg.compile_mode) for m in (G, D_logits))
            except Exception as e:  # compile support varies by platform; training works without it
                print0(f"notice: torch.compile unavailable ({type(e).__name__}: {e}); running eagerly")
        return G, D_logits

    def _step(self, real: torch.Tensor, z: torch.Tensor, amp) -> torch.Tensor:
        cfg = self.cfg
        lazy_r1 = cfg.r1_gamma and self.step % cfg.r1_every_steps == 0
        args = dict(real_label=cfg.real_label, amp=amp, scaler_G=self.scaler_G, scaler_D=self.scaler_D,
                    r1_weight=cfg.r1_gamma / 2 * cfg.r1_every_steps if lazy_r1 else 0.0)
        d_steps = self.d_steps
        if self.cfg.compile and (self.G_train, self.D_logits) != self.eager:
            torch.compiler.cudagraph_mark_step_begin()  # CUDA graphs (reduce-overhead) may reuse last step's outputs
        try:
            return train_step(self.G_train, self.D_logits, self.opt_G, self.opt_D, real, z, **args)
        except Exception as e:
            # torch.compile compiles lazily, so a missing compiler or backend shows up in the first
            # step, before any optimizer step: fall back to eager and take the step again
            if not self.cfg.compile or (self.G_train, self.D_logits) == self.eager:
                raise
            if self.d_steps != d_steps:  # D already stepped: taking the step again would not be the same step
                raise UserError(f"torch.compile failed mid-step ({type(e).__name__}); rerun without --compile") from e
            print0(f"notice: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                   "running eagerly")
            self.G_train, self.D_logits = self.eager
            return train_step(self.G_train, self.D_logits, self.opt_G, self.opt_D, real, z, **args)

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

    def _save_checkpoint(self) -> None:
        self._check_finite_weights()
        if self.dist.world_size > 1:
            # every rank then holds the mean partial sums, which is what resume restores on each;
            # the mean over ranks at the next log step is unchanged by this
            import torch.distributed as dist

            dist.all_reduce(self.stats_sum)  # Gloo has no AVG
            self.stats_sum /= self.dist.world_size
        if self.dist.is_main:
            folder = self.run_dir / "checkpoints"
            self._write(folder / ckpt.LATEST)
            if self.cfg.keep_every_steps and self.step % self.cfg.keep_every_steps == 0:
                self._write(folder / f"step_{self.step:07d}.pt")
        barrier()

    def _write(self, path: Path) -> None:
        try:
            ckpt.save(self.state_dict(), path)
        except OSError as e:
            raise UserError(
                f"could not write a checkpoint to {path.parent} ({e.strerror or e}); "
                "the previous checkpoint is intact"
            ) from None

    def _check_finite_weights(self) -> None:
        for name, net in (("generator", self.G), ("discriminator", self.D)):
            finite = torch.stack([p.isfinite().all() for p in net.parameters()]).all()
            if all_agree(not bool(finite), self.device):
                raise TrainingDiverged(
                    f"the {name}'s weights became NaN or infinite by step {self.step}; "
                    f"not saving them; the last good checkpoint is in {self.run_dir / 'checkpoints'}"
                )

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
                from .plots import truncate_rows

                truncate_rows(metrics, self.step)  # rows the resumed steps write again
                for stale in (self.run_dir / "checkpoints").glob(".*.tmp*"):  # left by a kill mid-write
                    stale.unlink(missing_ok=True)
            resolved = {**self.cfg.to_dict(), "resolved": {
                "device": str(self.device), "precision": self.precision,
                "world_size": self.dist.world_size, "total_steps": self.total_steps,
                "steps_per_epoch": self.batches.steps_per_epoch, "num_images": len(self.batches.data),
                "torch": torch.__version__,
            }}
            write_text_atomic(self.run_dir / "config.json", json.dumps(resolved, indent=2) + "\n")
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
        if self.writer is not None:
            from torchvision.utils import make_grid

            self.writer.add_image("samples", make_grid(images, normalize=True, value_range=(-1, 1)), self.step)
        return path

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        cfg = self.cfg
        self._prepare_run_dir()
        self.writer = self._tensorboard() if self.dist.is_main else None
        from tqdm import tqdm

        from .plots import MetricsLog

        log = MetricsLog(self.run_dir / "metrics.jsonl") if self.dist.is_main else None
        bar = tqdm(
            total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
            disable=cfg.quiet or not self.dist.is_main,
        )
        amp = autocast(self.device, self.precision)
        images_per_step = cfg.batch_size * self.dist.world_size
        last_time, last_step = time.perf_counter(), self.step
        segment_start, seconds_before = last_time, self.train_seconds
        collapse_logs = 0
        finished = False
        self.G_train.train()
        self.D_logits.train()

        with _stop_on_signals(self):
            while not finished and self.stop_reason is None:
                for real_u8 in self.batches.epoch(self.epoch, self.step_in_epoch):
                    real = to_model_range(real_u8).contiguous(memory_format=self.memory_format)
                    z = torch.randn(
                        images_per_step, cfg.latent_dim, device=self.device, generator=self.noise_rng
                    )[self.dist.rank :: self.dist.world_size]
                    self._schedule_lr()
                    stats = self._step(real, z, amp)
                    self.ema.update(self.G, self.step)
                    self.stats_sum += stats
                    self.stats_count += 1
                    self.step += 1
                    self.step_in_epoch += 1
                    bar.update(1)
                    self.train_seconds = seconds_before + time.perf_counter() - segment_start
                    done = finished = self._finished()

                    # log: the only host synchronisation. Rows fall on multiples of log_every_steps,
                    # so a stopped and resumed run writes exactly the rows of a straight one
                    if self.step % cfg.log_every_steps == 0 or (done and self.stats_count):
                        now = time.perf_counter()
                        row = self._read_stats(partial=self.step % cfg.log_every_steps != 0)
                        row["img_per_s"] = round(images_per_step * (self.step - last_step) / (now - last_time), 1)
                        last_time, last_step = now, self.step
                        self._log(row, log, bar)
                        collapse_logs = collapse_logs + 1 if _looks_collapsed(row) else 0
                        if collapse_logs == 3:
                            bar.write(
                                f"warning: training looks collapsed at step {self.step}: D(x) "
                                f"{row['D_x']:.3f}, D(G(z)) {row['D_G_z_before']:.4f}, loss_G "
                                f"{row['loss_G']:.1f}; D wins every batch, G gets no useful gradient "
                                "and the samples are likely one repeated image"
                            )
                    if self.dist.is_main and (self.step % cfg.sample_every_steps == 0 or done):
                        self.save_samples(f"step_{self.step:07d}")
                    if self.evaluation is not None and self.step % cfg.eval_every_steps == 0:
                        self._evaluate(log)
                    if self.step % cfg.checkpoint_every_steps == 0 or done:
                        self._save_checkpoint()
                    # ranks agree on stopping at log steps, so a signal costs no sync per step
                    if self.dist.world_size == 1 or self.step % cfg.log_every_steps == 0:
                        if all_agree(self.stop_reason is not None, self.device) and self.stop_reason is None:
                            self.stop_reason = "another rank was asked to stop"
                    if done or self.stop_reason is not None:
                        break
                else:
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    finished = self._finished()

        bar.close()
        if self.stop_reason is not None:
            self._save_checkpoint()  # the partial log interval is in it and continues on resume
        if self.dist.is_main:
            final = self._final_pictures()
            if self.stop_reason is None:
                print0(f"done: {self.step} steps; samples {final}; run directory {self.run_dir}")
        if self.stop_reason is not None:
            print0(
                f"stopped at step {self.step} ({self.stop_reason}); checkpoint saved; samples in "
                f"{self.run_dir / 'samples'}. Resume with:\n  dcgan train --resume {self.run_dir}"
            )
        if self.writer is not None:
            self.writer.close()
        return self.run_dir

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
        from .plots import plot_losses

        grid = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        if not grid.is_file():
            grid = self.save_samples(f"step_{self.step:07d}")
        final = self.run_dir / "samples" / "final.png"
        with written("the final sample grid", final), atomic_path(final) as tmp:
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
        for network, key in (("discriminator", "loss_D"), ("generator", "loss_G")):
            if not math.isfinite(row[key]):
                raise TrainingDiverged(
                    f"{key} became {row[key]} by step {self.step} (the {network} diverged); "
                    f"stopping; the last good checkpoint is in {self.run_dir / 'checkpoints'}"
                )
        return row

    def _log(self, row: dict, log, bar) -> None:
        if log is None:
            return
        log.write(row)
        bar.set_postfix_str(
            f"ep {row['epoch']} D {row['loss_D']:.3f} G {row['loss_G']:.3f} D(x) {row['D_x']:.2f} "
            f"D(G(z)) {row['D_G_z_before']:.2f} {row['img_per_s']:.0f} img/s", refresh=False,
        )
        if self.cfg.quiet:
            print0(json.dumps(row))
        if self.writer is not None:
            for key in STAT_NAMES + ("img_per_s",):
                self.writer.add_scalar(key, row[key], self.step)

    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.run_dir / "tensorboard"))


def _looks_collapsed(row: dict) -> bool:
    """D perfectly separates real from fake: the failure mode of the classic recipe."""
    return row["D_x"] > 0.99 and row["D_G_z_before"] < 0.01 and row["loss_G"] > 5.0


@contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM: finish the step, checkpoint, exit cleanly; a second SIGINT aborts at once."""

    def handler(signum, frame):
        if trainer.stop_reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_reason = signal.Signals(signum).name

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def train(cfg: TrainConfig, *, resume: str | None = None, explicit: set[str] = frozenset()) -> Path:
    """Train and return the run directory."""
    return Trainer(cfg, resume=resume, explicit=explicit).run()
