"""The speed benchmark's wiring, and the proof that the fast path computes what the classic loop computes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dcgan.benchmarks import speed as bench
from dcgan.benchmarks import timing, variants
from dcgan.benchmarks.classic import (
    ClassicDiscriminator,
    classic_dataset,
    classic_loader,
    classic_optimizers,
    classic_step,
)
from dcgan.cli import main
from dcgan.config import TrainConfig
from dcgan.data import Batches, InMemoryImages, epoch_order, to_model_range
from dcgan.models import Discriminator
from dcgan.step import Logits, build_models, make_optimizers, train_step

CPU_VARIANTS = {
    "fast path",
    "DataLoader over PNGs",
    "plain Adam",
    "channels_last off",
    ".item() every step",
    "no EMA",
    "fp32 (no autocast)",
}


def _positive_numbers(result: dict) -> None:
    for key in ("train_img_per_s", "sample_img_per_s", "flops_per_train_image", "flops_per_sample_image"):
        assert result[key] > 0, key
    assert all(t > 0 for t in result["train_times_s"] + result["sample_times_s"])


def test_quick_bench_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--device", "cpu", "--json", str(path)]) == 0
    results = json.loads(path.read_text())
    assert {"device", "torch", "config", "peak", "rows", "ablation", "elapsed_s"} <= results.keys()
    assert results["peak"]["fp32_gflops"] > 0
    assert results["peak"]["fp32_gflops"] == max(results["peak"][k]["fp32_gflops"] for k in ("start", "end"))
    (row,) = results["rows"]
    assert (row["size"], row["channels"], row["batch_size"]) == (28, 1, 16)
    _positive_numbers(row["project"])
    _positive_numbers(row["classic"])
    for key in ("train_ratio", "sample_ratio", "gflop_per_train_image", "project_pct_of_peak", "classic_pct_of_peak"):
        assert row[key] > 0, key
    assert row["train_ratio"] == pytest.approx(row["project"]["train_img_per_s"] / row["classic"]["train_img_per_s"])
    assert row["train_ratio_per_round"] == [pytest.approx(row["train_ratio"])]  # one round
    # the same networks do the same convolutions, whichever loop drives them
    assert row["project"]["flops_per_train_image"] == row["classic"]["flops_per_train_image"]
    assert {a["variant"] for a in results["ablation"]} == CPU_VARIANTS
    for a in results["ablation"]:
        _positive_numbers(a["result"])
        assert a["vs_fast_path"] > 0 and a["pct_of_peak"] > 0
    printed = capsys.readouterr().out
    assert "ratio" in printed and "ablation" in printed and str(path) in printed
    # the CPU is named, and the peak is the best of the kernels tried, convolutions among them
    assert results["cpu"]["model"] and f"cpu: {results['cpu']['model']}" in printed
    start = results["peak"]["start"]
    assert start["fp32_gflops"] == max(start["fp32_all"].values())
    assert any(name.startswith("conv") for name in start["fp32_all"])
    # the per-layer limit: every convolution of the row's networks, and the step measured against it
    roof = row["roofline"]
    assert len(roof["layers"]) == 6 and {x["network"] for x in roof["layers"]} == {"G", "D"}  # 3 + 3 at 28x28
    assert roof["limit_s"] > 0 and roof["step_s"] == pytest.approx(16 / row["project"]["train_img_per_s"])
    assert roof["step_over_limit"] == pytest.approx(roof["step_s"] / roof["limit_s"])
    assert "per-layer limit" in printed and "G.main.0" in printed


def test_a_rate_above_the_peak_is_reported_as_an_error(monkeypatch, capsys):
    """A peak below what the model reaches is a failure of the peak measurement, never a result."""
    monkeypatch.setattr(
        timing, "measure_peak", lambda *a, **k: {"gflops": 1e-6, "kernel": "stub", "all": {"stub": 1e-6}}
    )
    results = bench.run(bench.BenchConfig.quick(device="cpu", ablation=False))
    printed = capsys.readouterr().out
    assert results["peak_errors"] and results["rows"][0]["project_pct_of_peak"] > 100
    assert "% peak" in printed and " error " in printed
    assert "rate(s) above 100% of the measured peak" in printed


def test_bench_rejects_bad_options(capsys):
    assert main(["bench", "--sizes", "27"]) == 2
    assert main(["bench", "--batch-sizes", "1"]) == 2
    assert main(["bench", "--batch-sizes", "6x4"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err


def _image_folder(root, images: torch.Tensor):
    """uint8 [N, C, S, S] -> root/0/00000.png ...; file order = tensor order."""
    (root / "0").mkdir(parents=True)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(root / "0" / f"{i:05d}.png")
    return root


@pytest.mark.slow
def test_variant_runs_in_a_subprocess(tmp_path):
    data_dir = bench._prepare_data(32, 3, 16, tmp_path)
    spec = dict(
        path="classic",
        device="cpu",
        size=32,
        channels=3,
        batch_size=8,
        width=4,
        latent_dim=8,
        seed=0,
        warmup_steps=1,
        steps=1,
        repeats=1,
        min_repeat_s=0.0,
        options={},
        data_dir=str(data_dir),
    )
    result = variants.run_isolated(spec)
    _positive_numbers(result)
    assert result["num_threads"] >= 1


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="other_cpu_load reads Linux's /proc/stat")
def test_other_cpu_load_sees_a_busy_neighbour(tmp_path):
    """A process spinning one core beside the variant shows up as (at least most of) one other core."""
    data_dir = bench._prepare_data(32, 3, 16, tmp_path)
    spec = dict(
        path="classic",
        device="cpu",
        size=32,
        channels=3,
        batch_size=8,
        width=4,
        latent_dim=8,
        seed=0,
        warmup_steps=1,
        steps=1,
        repeats=1,
        min_repeat_s=0.0,
        options={},
        data_dir=str(data_dir),
    )
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # not waited for: not "own" time
    try:
        result = variants.run_isolated(spec)
    finally:
        spinner.kill()
        spinner.wait()
    assert result["other_cpu_load"] >= 0.5


def test_classic_discriminator_is_sigmoid_of_the_logits():
    D = Discriminator(channels=3, image_size=32, width=4)
    classic = ClassicDiscriminator(D)
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(classic(x), torch.sigmoid(D.logits(x)).view(-1))
    assert {id(p) for p in classic.parameters()} == {id(p) for p in D.parameters()}


@pytest.mark.parametrize(
    "image_size, channels, memory_format",
    [(28, 1, torch.contiguous_format), (32, 3, torch.contiguous_format), (32, 3, torch.channels_last)],
)
def test_fast_path_matches_plain_path(tmp_path, image_size, channels, memory_format):
    """Trainer-style fast path vs the classic loop: same seed, same batches, same losses and weights.

    Fast: in-memory uint8 batches scaled on the device, one D backward, foreach Adam,
    BCE on logits. Plain: PNG files through PIL, ToTensor and Normalize in a
    DataLoader, two D backward passes, single-tensor Adam, Sigmoid + BCELoss.
    """
    num_images, batch_size, num_steps = 24, 8, 3
    shape = (num_images, channels, image_size, image_size)
    images = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    cfg = TrainConfig(
        image_size=image_size, channels=channels, g_width=8, d_width=8, latent_dim=16, batch_size=batch_size
    )
    torch.manual_seed(0)
    G, D = build_models(cfg)
    G_plain, D_plain = copy.deepcopy(G), ClassicDiscriminator(copy.deepcopy(D))
    G.to(memory_format=memory_format)
    D.to(memory_format=memory_format)

    opt_G, opt_D = make_optimizers(G, D, cfg, torch.device("cpu"))
    assert opt_G.defaults["foreach"] and opt_D.defaults["foreach"]
    fast_batches = Batches(InMemoryImages(images), batch_size, seed=0, device=torch.device("cpu"))

    opt_G_plain, opt_D_plain = classic_optimizers(G_plain, D_plain, lr=cfg.lr_d, beta1=cfg.beta1)
    assert opt_G_plain.defaults["foreach"] is False
    order = epoch_order(num_images, 0, 0)  # the order Batches uses for epoch 0
    dataset = classic_dataset(str(_image_folder(tmp_path, images)), channels=channels, image_size=image_size)
    plain_batches = classic_loader(dataset, batch_size, num_workers=0, sampler=order.tolist())
    criterion = torch.nn.BCELoss()

    noise = torch.Generator().manual_seed(2)
    for step, real_u8, (real_plain, _) in zip(range(num_steps), fast_batches.epoch(0), plain_batches):
        real = to_model_range(real_u8).contiguous(memory_format=memory_format)
        torch.testing.assert_close(real, real_plain, rtol=0, atol=1e-6)  # same pixels, same scaling
        z = torch.randn(batch_size, cfg.latent_dim, generator=noise)
        stats = train_step(G, Logits(D), opt_G, opt_D, real, z)
        plain = classic_step(G_plain, D_plain, opt_G_plain, opt_D_plain, real_plain, z[:, :, None, None], criterion)
        expected = torch.tensor([plain.loss_D, plain.loss_G, plain.D_x, plain.D_G_z_before, plain.D_G_z_after])
        torch.testing.assert_close(stats, expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"step {step}: {m}")
        # after a step both hold the G update's gradients, for G and (unused) for D
        for fast_net, plain_net in ((G, G_plain), (D, D_plain)):
            for a, b in zip(fast_net.parameters(), plain_net.parameters()):
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4 * b.grad.abs().max().item())
    assert step == num_steps - 1

    # Adam divides each gradient by its own running magnitude, so a parameter whose gradient
    # is near zero moves by up to a learning rate on a rounding difference: the bulk must
    # agree to rounding, every element to a small fraction of one step (lr = 2e-4)
    differences = []
    for fast_net, plain_net in ((G, G_plain), (D, D_plain)):
        fast_state, plain_state = fast_net.state_dict(), plain_net.state_dict()
        assert len(fast_state) == len(plain_state)
        for (name, a), b in zip(fast_state.items(), plain_state.values()):
            if not a.is_floating_point():
                assert torch.equal(a, b), name  # batch-norm step counters
                continue
            torch.testing.assert_close(a, b, rtol=0, atol=0.05 * cfg.lr_d, msg=lambda m: f"{name}: {m}")
            differences.append((a - b).abs().flatten())
    differences = torch.cat(differences)
    assert (differences > 1e-7).float().mean() < 1e-3
    # the updates themselves are not a rounding error away from the start
    assert not torch.equal(G.state_dict()["main.0.weight"], build_models(cfg)[0].state_dict()["main.0.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_quick_bench_on_cuda(tmp_path):
    results = bench.run(bench.BenchConfig.quick(device="cuda", json_path=str(tmp_path / "b.json")), out=lambda *a: None)
    assert results["device"].startswith("cuda")
    assert results["peak"]["bf16_gflops"] is None or results["peak"]["bf16_gflops"] > 0
    _positive_numbers(results["rows"][0]["project"])
    _positive_numbers(results["rows"][0]["classic"])
    variants = {a["variant"] for a in results["ablation"]}
    assert {"channels_last off", "cudnn.benchmark off", "fp32 (no autocast)"} <= variants
