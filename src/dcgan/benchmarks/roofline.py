"""A per-layer roofline for ``dcgan bench``: every convolution of G and D timed alone.

A training step runs each convolution of the networks forward and backward: G's for the fake batch
(forward, and backward in the G step), D's three times (real, fake, and the G step's fake) plus
backward. Timing each layer alone, in the precision and memory format training uses, at the shapes
it sees in training, gives the time those convolutions need on this machine; their sum is a limit
for this architecture that is tighter than one large kernel's peak. What the step spends beyond it
is batch norm, activations, the optimizer, EMA, R1, casts, data and Python.
"""

from __future__ import annotations

import statistics
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .timing import count_flops, time_repeats

CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
# forward and backward passes of each network's convolutions per training step: D runs on the real
# batch, the fake batch (its D step) and the fake batch again (the G step); G runs once forward and
# once backward (through D in the G step). Backward passes that produce only input gradients (D in the
# G step) are counted as full ones: a slight over-estimate of the limit, never an under-estimate.
PASSES = {"G": 1, "D": 3}


@dataclass(frozen=True)
class LayerTime:
    network: str
    name: str
    kind: str  # Conv2d or ConvTranspose2d
    input_shape: tuple[int, ...]
    seconds: float  # one forward and one backward pass, median
    gflop: float  # forward and backward arithmetic of that pass
    passes: int  # how many times a training step runs it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LayerTime:
        """The inverse of ``to_dict`` after a JSON round trip (a subprocess's result)."""
        return cls(**{**values, "input_shape": tuple(values["input_shape"])})


def _input_shapes(model: nn.Module, example: tuple) -> dict[str, tuple[int, ...]]:
    """The input shape of every convolution of ``model``, from one forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, args, output) -> None:  # returns None: the output passes through unchanged
            shapes.setdefault(name, tuple(args[0].shape))

        return hook

    hooks = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, CONVOLUTIONS)
    ]
    try:
        with torch.no_grad():
            model(*example)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def layer_times(
    G: nn.Module,
    D: nn.Module,
    batch_size: int,
    device: torch.device,
    *,
    bf16: bool,
    channels_last: bool = True,
    repeats: int = 5,
    min_repeat_s: float = 0.05,
) -> list[LayerTime]:
    """Each convolution of G and D alone, forward and backward, as a training step runs it."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    z = torch.randn(batch_size, G.latent_dim, device=device)
    labels = torch.zeros(batch_size, dtype=torch.long, device=device) if getattr(G, "num_classes", 0) else None
    g_example = (z,) if labels is None else (z, labels)
    image = torch.randn(batch_size, D.channels, D.image_size, D.image_size, device=device)
    d_example = (image,) if labels is None else (image, labels)
    rows = []
    for network, model, example in (("G", G, g_example), ("D", D, d_example)):
        shapes = _input_shapes(model, example)
        for name, module in model.named_modules():
            if name not in shapes:
                continue
            layer = _copy_of(module).to(device=device, memory_format=memory_format).train()
            x = torch.randn(shapes[name], device=device)
            if x.dim() == 4:
                x = x.contiguous(memory_format=memory_format)
            x.requires_grad_(True)

            def step(layer=layer, x=x):
                with autocast():
                    out = layer(x)
                out.float().sum().backward()

            gflop = count_flops(step) / 1e9
            n, times = time_repeats(step, device, warmup_steps=2, steps=1, repeats=repeats, min_repeat_s=min_repeat_s)
            rows.append(
                LayerTime(
                    network=network,
                    name=name,
                    kind=type(module).__name__,
                    input_shape=shapes[name],
                    seconds=statistics.median(times) / n,
                    gflop=gflop,
                    passes=PASSES[network],
                )
            )
    return rows


def _copy_of(module: nn.Module) -> nn.Module:
    """A fresh layer of the same shape: timing must not touch the networks' own weights or gradients."""
    import copy

    layer = copy.deepcopy(module)
    for p in layer.parameters():
        p.grad = None
    return layer


def limit_seconds(rows: list[LayerTime]) -> float:
    """The convolutions' share of one training step: the per-layer limit."""
    return sum(r.seconds * r.passes for r in rows)


def summary(rows: list[LayerTime], step_seconds: float) -> dict:
    """The step against the per-layer limit, and the share spent outside the convolutions."""
    limit = limit_seconds(rows)
    return {
        "limit_s": limit,
        "step_s": step_seconds,
        "step_over_limit": step_seconds / limit if limit else float("nan"),
        "outside_convolutions": max(0.0, 1 - limit / step_seconds) if step_seconds else float("nan"),
        "conv_gflop_per_step": sum(r.gflop * r.passes for r in rows),
        "layers": [r.to_dict() for r in rows],
    }


def format_rows(rows: list[LayerTime]) -> str:
    """The per-layer table for people: each convolution's time, rate and share of the limit."""
    limit = limit_seconds(rows)
    lines = [f"{'layer':<16} {'kind':<16} {'input':<18} {'ms':>8} {'GFLOP/s':>9} {'x/step':>6} {'share':>6}"]
    for r in rows:
        shape = "x".join(map(str, r.input_shape[1:]))
        rate = r.gflop / r.seconds if r.seconds else float("nan")
        share = r.seconds * r.passes / limit if limit else float("nan")
        lines.append(
            f"{r.network + '.' + r.name:<16} {r.kind:<16} {shape:<18} {r.seconds * 1e3:>8.2f} {rate:>9.1f} "
            f"{r.passes:>6} {share:>6.1%}"
        )
    return "\n".join(lines)
