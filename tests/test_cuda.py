"""The CUDA paths: mixed precision, channels_last, fused Adam, compile, and CPU use of GPU checkpoints.

Skipped where there is no CUDA device (CI has none); run them on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.config import TrainConfig
from dcgan.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tiny(run_dir, **overrides) -> TrainConfig:
    values = dict(
        g_width=8,
        d_width=8,
        batch_size=16,
        max_images=128,
        steps=4,
        device="cuda",
        quiet=True,
        log_every_steps=2,
        sample_every_steps=1000,
        checkpoint_every_steps=2,
        run_dir=str(run_dir),
    )
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_in_each_precision(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    trainer = Trainer(_tiny(tmp_path / "run", precision=precision))
    assert trainer.device.type == "cuda" and trainer.precision == precision
    assert trainer.batches.data.images.device.type == "cuda"  # the dataset lives on the GPU
    before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.run()
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())
    assert trainer.G.main[0].weight.is_contiguous(memory_format=torch.channels_last)
    # fused Adam on CUDA
    assert trainer.opt_G.defaults.get("fused") is True
    # the scaler is on for fp16 only
    assert trainer.scaler_G.is_enabled() == (precision == "fp16")


def test_auto_precision_is_bf16_where_supported(tmp_path):
    trainer = Trainer(_tiny(tmp_path / "run", precision="auto"))
    assert trainer.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


@pytest.mark.parametrize("mode,conditional", [("default", False), ("reduce-overhead", False), ("default", True)])
def test_compiled_training_stores_uncompiled_modules(tmp_path, mode, conditional):
    trainer = Trainer(_tiny(tmp_path / "run", compile=True, compile_mode=mode, conditional=conditional))
    trainer.run()
    assert trainer.step == 4 and all(torch.isfinite(p).all() for p in trainer.G.parameters())
    state = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in state["G"])


def test_gpu_checkpoint_samples_and_resumes_on_cpu(tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny(run)).run()
    assert main(["sample", str(run), "-n", "8", "-o", str(tmp_path / "grid.png"), "--device", "cpu"]) == 0
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3 * 30 + 2, 3 * 30 + 2)  # 8 samples in a 3x3 grid of 28-pixel images
    resumed = Trainer(TrainConfig(steps=6, device="cpu"), resume=str(run), explicit={"steps", "device"})
    assert resumed.step == 4 and next(resumed.G.parameters()).device.type == "cpu"
    resumed.run()
    state = ckpt.load(run)
    assert state["step"] == 6 and all(torch.isfinite(v).all() for v in state["G"].values())


def test_fast_path_matches_fp32_reference_on_cuda(tmp_path):
    """bf16 autocast changes the numbers, not the algorithm: losses stay close to fp32 for a few steps."""
    fp32 = Trainer(_tiny(tmp_path / "a", precision="fp32", steps=2))
    fp32.run()
    rows32 = (tmp_path / "a" / "metrics.jsonl").read_text()
    if not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    bf16 = Trainer(_tiny(tmp_path / "b", precision="bf16", steps=2))
    bf16.run()
    import json

    a, b = (
        json.loads(rows32.splitlines()[-1]),
        json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1]),
    )
    assert abs(a["loss_D"] - b["loss_D"]) < 0.05 and abs(a["loss_G"] - b["loss_G"]) < 0.05
