"""The DCGAN training step and the one set-up of everything it runs on.

``train_step`` is the algorithm (update D on a real and a fake batch, then G against the updated D),
with D seeing every image through the DiffAugment policy when one is set (``augment.py``).
``build_training`` builds the networks, their EMA, the optimizers, the gradient scalers, the
compiled-or-eager step and the noise streams from a resolved config; the trainer and the speed
benchmark both call it, so the benchmark times the path training runs.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .augment import diff_augment, parse_policy
from .config import TrainConfig
from .ema import EMA
from .errors import UserError
from .losses import discriminator_loss, generator_loss, r1_penalty
from .models import Discriminator, Generator
from .runtime import Dist, autocast, convert_sync_batchnorm, print0, resolve_precision


class Logits(nn.Module):
    """``forward`` = ``D.logits``, so that DDP and torch.compile wrap the path training uses."""

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.discriminator.logits(x, y)


def train_step(
    G: nn.Module,
    D_logits: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    *,
    real_label: float = 1.0,
    amp=None,
    scaler_G: torch.amp.GradScaler | None = None,
    scaler_D: torch.amp.GradScaler | None = None,
    r1_weight: float = 0.0,
    augment: tuple[str, ...] = (),
    y_real: torch.Tensor | None = None,
    y_fake: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DCGAN step; returns the detached statistics [loss_D, loss_G, D(x), D(G(z)) before, after].

    ``r1_weight`` > 0 adds ``r1_weight x`` the R1 penalty to D's loss in this step (lazy
    regularisation: the trainer passes gamma / 2 x the interval on every interval-th step).
    ``augment`` is a DiffAugment policy (``augment.parse_policy``): D sees every image, real or
    fake, through it, with fresh random parameters at each look; empty, D sees the images as they are.
    A class-conditional step takes the real images' labels ``y_real`` and the labels ``y_fake`` that G
    draws; D then judges each image as a member of its class.
    """
    amp = amp if amp is not None else nullcontext()  # reusable: entered once per phase
    scaler_G = scaler_G or torch.amp.GradScaler(enabled=False)
    scaler_D = scaler_D or torch.amp.GradScaler(enabled=False)

    def aug(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, augment)

    def judge(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:  # unconditional D: one argument
        return D_logits(x) if y is None else D_logits(x, y)

    # (1) Update D network: maximize log(D(aug(x))) + log(1 - D(aug(G(z))))
    opt_D.zero_grad(set_to_none=True)
    real = aug(real)
    if r1_weight:
        # R1 is taken at the augmented reals, the images D is trained on: it flattens D itself
        # around the data it sees, not D composed with the augmentation
        real = real.detach().requires_grad_(True)
    with amp:
        fake = G(z) if y_fake is None else G(z, y_fake)
        logits_real = judge(real, y_real)
        logits_fake = judge(aug(fake.detach()), y_fake)  # detached: the D step sends no gradient into G
        loss_D = discriminator_loss(logits_real, logits_fake, real_label)
    penalty = r1_weight * r1_penalty(logits_real, real) if r1_weight else 0.0
    scaler_D.scale(loss_D + penalty).backward()
    scaler_D.step(opt_D)
    scaler_D.update()

    # (2) Update G network: maximize log(D(aug(G(z)))), G learning through the augmentation
    opt_G.zero_grad(set_to_none=True)
    with amp:
        logits_fake_after = judge(aug(fake), y_fake)
        loss_G = generator_loss(logits_fake_after)
    scaler_G.scale(loss_G).backward()
    scaler_G.step(opt_G)
    scaler_G.update()

    with torch.no_grad():
        return torch.stack(
            [
                loss_D.detach().float(),
                loss_G.detach().float(),
                torch.sigmoid(logits_real.detach().float()).mean(),
                torch.sigmoid(logits_fake.detach().float()).mean(),
                torch.sigmoid(logits_fake_after.detach().float()).mean(),
            ]
        )


def noise_seed(seed: int, step: int = 0) -> int:
    """The training noise stream's seed: apart from the fixed-noise and data seeds of the same run;
    ``step`` reseeds it where a checkpoint's stream cannot be restored (another device type)."""
    return seed * 7919 + 1 + step


def build_models(cfg: TrainConfig) -> tuple[Generator, Discriminator]:
    cfg = cfg.resolved()
    G = Generator.from_config(cfg)
    D = Discriminator(channels=cfg.channels, image_size=cfg.image_size, width=cfg.d_width, num_classes=cfg.num_classes)
    return G, D


def make_optimizers(G: nn.Module, D: nn.Module, cfg: TrainConfig, device: torch.device, *, fast: bool = True):
    """Adam for both players; fused kernels on CUDA, multi-tensor (foreach) elsewhere (``fast``)."""
    kernels = ({"fused": True} if device.type == "cuda" else {"foreach": True}) if fast else {"foreach": False}
    betas = (cfg.beta1, cfg.beta2)
    return (
        torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas, **kernels),
        torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas, **kernels),
    )


class Step:
    """The training step on the (DDP-wrapped, compiled) networks, with the eager fall-back.

    torch.compile compiles lazily, so a missing compiler or backend shows up in the first step,
    before any optimizer step: the step then falls back to eager and is taken again.
    """

    def __init__(
        self,
        G: nn.Module,
        D_logits: nn.Module,
        opt_G,
        opt_D,
        *,
        real_label: float,
        amp,
        scaler_G,
        scaler_D,
        compile_mode: str | None,
        augment: tuple[str, ...] = (),
    ) -> None:
        self.opt_G, self.opt_D = opt_G, opt_D
        self.args = dict(real_label=real_label, amp=amp, scaler_G=scaler_G, scaler_D=scaler_D, augment=augment)
        self.eager = (G, D_logits)
        self.networks = self.eager
        if compile_mode is not None:
            try:
                self.networks = tuple(torch.compile(m, mode=compile_mode) for m in self.eager)
            except Exception as e:  # compile support varies by platform; training works without it
                print0(f"notice: torch.compile unavailable ({type(e).__name__}: {e}); running eagerly")
        self.d_steps = 0  # counted in Python (no device sync): did D step before a failure?

        def count_d_step(*_):
            self.d_steps += 1

        opt_D.register_step_post_hook(count_d_step)

    @property
    def compiled(self) -> bool:
        return self.networks != self.eager

    def train(self) -> None:
        for m in self.networks:
            m.train()

    def __call__(self, real: torch.Tensor, z: torch.Tensor, *, r1_weight: float = 0.0, **labels) -> torch.Tensor:
        d_steps = self.d_steps
        if self.compiled and r1_weight:
            # R1 differentiates D's input gradient again (double backward), which aot_autograd cannot
            # compile: the lazy R1 steps (1 in r1_every_steps) run the same modules eagerly
            return train_step(*self.eager, self.opt_G, self.opt_D, real, z, r1_weight=r1_weight, **labels, **self.args)
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()  # CUDA graphs (reduce-overhead) may reuse last step's outputs
        try:
            return train_step(
                *self.networks, self.opt_G, self.opt_D, real, z, r1_weight=r1_weight, **labels, **self.args
            )
        except Exception as e:
            if not self.compiled:
                raise
            if self.d_steps != d_steps:  # D already stepped: taking the step again would not be the same step
                raise UserError(f"torch.compile failed mid-step ({type(e).__name__}); rerun without --compile") from e
            print0(
                f"notice: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); running eagerly"
            )
            self.networks = self.eager
            return train_step(
                *self.networks, self.opt_G, self.opt_D, real, z, r1_weight=r1_weight, **labels, **self.args
            )


@dataclass
class Training:
    """Everything a training step needs; ``G`` and ``D`` are the raw modules that checkpoints store."""

    G: Generator
    D: Discriminator
    ema: EMA
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler_G: torch.amp.GradScaler
    scaler_D: torch.amp.GradScaler
    step: Step
    precision: str
    memory_format: torch.memory_format
    noise_rng: torch.Generator  # the training noise: one stream shared by every rank
    fixed_noise: torch.Tensor  # the sample grids' z, on the CPU


def build_training(
    cfg: TrainConfig, device: torch.device, *, dist: Dist | None = None, fast_adam: bool = True
) -> Training:
    """Networks, EMA, optimizers, scalers, the step and the noise streams for ``cfg`` on ``device``.

    The order of construction fixes the random initial weights: it is part of what makes a run
    reproducible from its seed.
    """
    world_size = dist.world_size if dist is not None else 1
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    G, D = build_models(cfg)
    # the EMA copy keeps plain batch norm: rank 0 alone runs it (samples, recalibration)
    ema = EMA(G, cfg.ema_decay)
    if cfg.sync_bn and world_size > 1:
        G = convert_sync_batchnorm(G, device)
        D = convert_sync_batchnorm(D, device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G.to(device, memory_format=memory_format)
    D.to(device, memory_format=memory_format)
    ema.model.to(device, memory_format=memory_format)
    opt_G, opt_D = make_optimizers(G, D, cfg, device, fast=fast_adam)
    fp16 = precision == "fp16"
    scaler_G = torch.amp.GradScaler(device.type, enabled=fp16)
    scaler_D = torch.amp.GradScaler(device.type, enabled=fp16)
    G_train, D_logits = G, Logits(D)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G_train, D_logits = DDP(G_train, device_ids=ids), DDP(D_logits, device_ids=ids)
    step = Step(
        G_train,
        D_logits,
        opt_G,
        opt_D,
        real_label=cfg.real_label,
        amp=autocast(device, precision),
        scaler_G=scaler_G,
        scaler_D=scaler_D,
        compile_mode=cfg.compile_mode if cfg.compile else None,
        augment=parse_policy(cfg.augment),
    )
    # one noise stream for all ranks, each taking its slice of the global batch: a run
    # on N processes draws the same z as one process with N times the batch
    noise_rng = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed))
    fixed_noise = torch.randn(cfg.num_samples, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    return Training(G, D, ema, opt_G, opt_D, scaler_G, scaler_D, step, precision, memory_format, noise_rng, fixed_noise)
