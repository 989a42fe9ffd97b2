"""Where and how the networks run: device, precision, distributed processes, RNG state.

Nothing here runs at import. Distributed helpers fall back to one process when
torch.distributed is not initialised (rank 0 of 1), so the same code serves
``dcgan train`` and ``torchrun ... -m dcgan train``.
"""

from __future__ import annotations

import os
import random
import sys
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def _accelerator() -> torch.device | None:
    """The accelerator torch reports: ``torch.accelerator`` where torch has it (2.6+), else the older checks."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "current_accelerator"):
        device = accelerator.current_accelerator() if accelerator.is_available() else None
        return torch.device(device.type) if device is not None else None
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return torch.device("xpu")
    return None


def _available(device_type: str) -> bool:
    if device_type == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    module = getattr(torch, device_type, None)
    return module is not None and module.is_available()


def choose_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA, then the accelerator torch reports (Apple MPS, Intel XPU), then the CPU; an
    explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        accelerator = _accelerator()
        if accelerator is not None and accelerator.type in DEVICE_TYPES:
            return accelerator
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N, mps or xpu") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        elif device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in DEVICE_TYPES:
        raise UserError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N, mps or xpu")
    if device.type in ("mps", "xpu") and not _available(device.type):
        raise UserError(f"--device {name}: {device.type.upper()} is not available on this machine")
    return device


def supports_bf16(device: torch.device) -> bool:
    """Whether autocast can compute in bf16 on ``device`` (the CPU always can, if slowly without native bf16)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "xpu" and hasattr(torch.xpu, "is_bf16_supported"):
        return torch.xpu.is_bf16_supported()
    try:  # MPS has bf16 from macOS 14; ask the device itself
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return (torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)).dtype == torch.bfloat16
    except (RuntimeError, TypeError, AssertionError):
        return False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX); elsewhere oneDNN emulates it, slowly."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA and on CPUs with native bf16, fp32 elsewhere.

    On the CPU, bf16 autocast with fp32 weights trained 1.4x the images per second of fp32 (one
    thread, 28x28 default recipe) and scored the same FID for the same 200,000 images (5.07
    against 5.23; docs/quality.md); on CPUs without native bf16 it would be slower.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs a CUDA device (this run uses {device}); bf16 runs on CPUs too")
    if precision == "bf16" and not supports_bf16(device):
        print0(f"notice: {device} has no bf16 autocast here; training in fp32", file=sys.stderr)
        return "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The mixed-precision context for the forward passes (a no-op in fp32)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> Dist:
    """Join the torchrun process group when launched by torchrun; else one process.

    NCCL when every rank has a GPU, Gloo on CPU.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world_size == 1:
        return Dist()
    if not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, local_rank=local_rank, world_size=world_size)


def get_dist() -> Dist:
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())


def print0(*args, **kwargs) -> None:
    if get_dist().is_main:
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if get_dist().world_size > 1:
        dist.barrier()


def finish_distributed() -> None:
    """Wait for every rank, then leave the process group (a rank that exits early can cut
    another off mid-collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_agree(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (stop signals, divergence)."""
    if get_dist().world_size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the global batch of all ranks, for CPU process groups (Gloo).

    Written here because ``torch.nn.SyncBatchNorm`` refuses non-GPU modules; on
    CUDA ``convert_sync_batchnorm`` uses torch's. Statistics are one
    differentiable all-reduce of [sum, sum of squares, count] per layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or get_dist().world_size == 1:
            return super().forward(x)
        dtype, x = x.dtype, x.float()  # statistics in fp32 under autocast: bf16 sums of squares lose digits
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        totals = _AllReduceSum.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        channels = x.shape[1]
        n = totals[-1]
        mean = totals[:channels] / n
        var = totals[channels : 2 * channels] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (x * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]).to(dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the global batch: torch's SyncBatchNorm on CUDA, GlobalBatchNorm2d elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            convert_sync_batchnorm(child, device)
    return module


# --------------------------------------------------------------------------- RNG state


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
