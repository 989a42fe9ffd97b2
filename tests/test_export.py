"""``dcgan export``: TorchScript, ONNX and safetensors round trips against the eager EMA generator."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from dcgan import Generator
from dcgan.cli import main
from dcgan.latent import seed_noise

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_train):
    run = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", *tiny_train, "--run-dir", str(run), "--steps", "6"]) == 0
    return run


@pytest.fixture(scope="module")
def eager(run_dir):
    """The EMA generator as dcgan sample uses it, and its output on 5 seeds."""
    G = Generator.from_checkpoint(run_dir, CPU)
    z = seed_noise(list(range(5)), G.latent_dim)
    with torch.no_grad():
        return G, z, G(z)


def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_round_trip(run_dir, eager, tmp_path):
    G, z, expected = eager
    out = tmp_path / "g.pt"
    assert main(["export", str(run_dir), "--format", "torchscript", "-o", str(out)]) == 0
    module = torch.jit.load(str(out))
    with torch.no_grad():
        assert torch.allclose(module(z), expected, atol=1e-5, rtol=0)
        assert module(z[:2]).shape == (2, 1, 28, 28), "the batch size stays free"
    extra = {"dcgan": ""}
    torch.jit.load(str(out), _extra_files=extra)
    config = json.loads(extra["dcgan"])
    assert (config["latent_dim"], config["image_size"], config["channels"], config["width"]) == (100, 28, 1, 8)
    loaded = Generator.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(loaded(z), expected, atol=1e-5, rtol=0) and not loaded.training


def test_onnx_round_trip(run_dir, eager, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    G, z, expected = eager
    out = tmp_path / "g.onnx"
    assert main(["export", str(run_dir), "-o", str(out)]) == 0  # format from the suffix
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (images,) = session.run(["images"], {"z": z.numpy()})
    assert images.shape == (5, 1, 28, 28)
    assert np.abs(images - expected.numpy()).max() <= 1e-5
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["dcgan"])["latent_dim"] == 100


def test_safetensors_round_trip_into_a_fresh_generator(run_dir, eager, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    G, z, expected = eager
    out = tmp_path / "g.safetensors"
    assert main(["export", str(run_dir), "--format", "safetensors", "-o", str(out)]) == 0
    fresh = Generator(latent_dim=100, channels=1, image_size=28, width=8)
    fresh.load_state_dict(safetensors.load_file(str(out)))
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(z), expected, atol=1e-5, rtol=0)
    loaded = Generator.from_pretrained(out)
    with torch.no_grad():
        assert torch.equal(loaded(z), fresh(z))
    # the exported batch-norm statistics are the re-estimated ones, not the raw EMA's copies of G's
    assert torch.equal(loaded.main[1].running_mean, G.main[1].running_mean)


def test_from_pretrained_also_reads_checkpoints_and_run_dirs(run_dir, eager):
    G, z, expected = eager
    for source in (run_dir, run_dir / "checkpoints" / "latest.pt"):
        with torch.no_grad():
            assert torch.equal(Generator.from_pretrained(source)(z), expected)


def test_export_errors_are_one_line_and_write_nothing(run_dir, tmp_path, capsys, monkeypatch):
    assert "cannot tell the export format" in one_line_error(
        capsys, ["export", str(run_dir), "-o", str(tmp_path / "g.bin")]
    )
    (tmp_path / "dir.onnx").mkdir()
    assert "is an existing folder" in one_line_error(capsys, ["export", str(run_dir), "-o", str(tmp_path / "dir.onnx")])
    assert "checkpoint not found" in one_line_error(
        capsys, ["export", str(tmp_path / "missing"), "-o", str(tmp_path / "g.onnx")]
    )
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    err = one_line_error(capsys, ["export", str(run_dir), "-o", str(tmp_path / "g.safetensors")])
    assert "pip install 'dcgan[export]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx"]


def test_from_pretrained_rejects_what_it_cannot_load(tmp_path):
    from dcgan.errors import UserError

    with pytest.raises(UserError, match="onnxruntime"):
        Generator.from_pretrained(tmp_path / "g.onnx")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a readable safetensors"):
        Generator.from_pretrained(tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="not found"):
        Generator.from_pretrained(tmp_path / "none.safetensors")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_a_conditional_generator_exports_with_its_label_input(tmp_path, tiny_train):
    run = tmp_path / "cond"
    assert main(["train", "--conditional", *tiny_train, "--max-images", "128", "--run-dir", str(run)]) == 0
    G = Generator.from_checkpoint(run, CPU)
    z, y = seed_noise(list(range(4)), G.latent_dim), torch.tensor([7, 0, 3, 7])
    with torch.no_grad():
        expected = G(z, y)
    script = tmp_path / "g.pt"
    assert main(["export", str(run), "-o", str(script)]) == 0
    loaded = Generator.from_pretrained(script)
    assert loaded.num_classes == 10 and loaded.class_names == tuple("0123456789")
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(script))(z, y), expected, atol=1e-5, rtol=0)
        assert torch.allclose(loaded(z, y), expected, atol=1e-5, rtol=0)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    onnx_path = tmp_path / "g.onnx"
    assert main(["export", str(run), "-o", str(onnx_path)]) == 0
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (images,) = session.run(["images"], {"z": z.numpy(), "y": y.numpy()})
    assert np.abs(images - expected.numpy()).max() <= 1e-5
