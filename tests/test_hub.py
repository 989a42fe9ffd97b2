"""The Hugging Face Hub folder and card, offline: what dcgan export --hub-folder writes and dcgan push would upload.

The upload and the download themselves need the network and an account and are not tested here: the two
tests that reach them replace huggingface_hub's HfApi and hf_hub_download with local fakes, and check only
what dcgan hands them and does with what they return.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dcgan import Generator, hub
from dcgan.cli import main

yaml = pytest.importorskip("yaml", reason="the card's YAML metadata is parsed with PyYAML (in dcgan[test])")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_train) -> Path:
    run_dir = tmp_path_factory.mktemp("hub") / "run"
    assert main(["train", *tiny_train, "--run-dir", str(run_dir)]) == 0
    return run_dir


def _front_matter(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    meta, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(meta), body


def test_hub_folder_holds_exactly_what_is_pushed_and_its_card(run, tmp_path, capsys):
    folder = tmp_path / "hub"
    assert main(["export", str(run), "--hub-folder", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "grid.png", "model.safetensors"]
    meta, body = _front_matter((folder / "README.md").read_text())
    assert meta["library_name"] == "dcgan" and meta["license"] == "mit"
    assert meta["datasets"] == ["ylecun/mnist"] and meta["pipeline_tag"] == "unconditional-image-generation"
    assert {"dcgan", "gan", "unconditional-image-generation"} <= set(meta["tags"]) and "metrics" not in meta
    assert "![64 samples, noise seed 0](grid.png)" in body
    assert "| steps | 4 (64 images seen) |" in body and "| widths | G 8, D 8; z of 100 |" in body
    assert "Not measured for this card" in body
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "dcgan-generator" and config["training"]["step"] == 4
    assert not {"data_root", "run_dir", "init_from"} & set(config["training"]["config"])  # no local paths
    from PIL import Image

    assert Image.open(folder / "grid.png").size == (8 * 28 + 9 * 2, 8 * 28 + 9 * 2)  # torchvision's 8x8, padding 2


def test_card_carries_the_measured_figures(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "-n", "64", "--k", "3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    (tmp_path / "eval.json").write_text(json.dumps(figures))
    folder = tmp_path / "hub"
    assert (
        main(
            [
                "export",
                str(run),
                "--hub-folder",
                str(folder),
                "--eval-json",
                str(tmp_path / "eval.json"),
                "--license",
                "cc-by-sa-3.0",
            ]
        )
        == 0
    )
    meta, body = _front_matter((folder / "README.md").read_text())
    assert meta["license"] == "cc-by-sa-3.0" and meta["metrics"] == ["fid"]
    assert f"| FID | {figures['fid']:.3f}: 64 samples (seed 0) against mnist-5k train, 5,000 images, digits" in body
    assert f"| precision, recall | {figures['precision']:.3f}, {figures['recall']:.3f} |" in body
    config = json.loads((folder / "config.json").read_text())
    assert config["evaluation"]["fid"] == figures["fid"] and "checkpoint" not in config["evaluation"]


def test_round_trip_from_the_folder_is_the_runs_ema_generator_bit_for_bit(run, tmp_path):
    folder = hub.write_folder(run, tmp_path / "hub")
    G = Generator.from_pretrained(folder)
    reference = Generator.from_checkpoint(run, torch.device("cpu"), ema=True)
    a, b = G.state_dict(), reference.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    z = torch.randn(8, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(G(z), reference(z))
    assert not G.training


@pytest.mark.parametrize("repo_id", ["not a repo", "user", "a/b/c", "user/-x", "user/x--y", "user/x..y", "/abs"])
def test_a_bad_repo_id_is_refused_in_one_line_before_any_work(run, capsys, repo_id):
    assert main(["push", str(run), repo_id]) == 2
    err = capsys.readouterr().err
    assert "is not a Hugging Face Hub repository id" in err and err.count("\n") == 1


def test_export_needs_one_of_out_and_hub_folder(run, tmp_path, capsys):
    assert main(["export", str(run)]) == 2
    assert main(["export", str(run), "-o", str(tmp_path / "g.safetensors"), "--hub-folder", str(tmp_path / "h")]) == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["export", str(run), "--hub-folder", str(tmp_path / "full")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def test_eval_json_of_another_step_is_refused(run, tmp_path, capsys):
    (tmp_path / "eval.json").write_text(json.dumps({"fid": 1.0, "extractor": "digits", "step": 3}))
    assert (
        main(["export", str(run), "--hub-folder", str(tmp_path / "h"), "--eval-json", str(tmp_path / "eval.json")]) == 2
    )
    assert "scored step 3, but the run is at step 4" in capsys.readouterr().err


def test_from_pretrained_repo_id_asks_hf_hub_download_for_the_weights(run, tmp_path, monkeypatch):
    """A fake hf_hub_download (a copy of a local folder): checks the call and the load, not the download."""
    huggingface_hub = pytest.importorskip("huggingface_hub", reason="dcgan[hub] is not installed")
    folder = hub.write_folder(run, tmp_path / "hub")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs.get("library_name")))
        cached = tmp_path / "cache" / repo_id.replace("/", "--")
        cached.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / filename, cached / filename)
        return str(cached / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    G = Generator.from_pretrained("someone/dcgan-mnist")
    assert calls == [("someone/dcgan-mnist", "model.safetensors", "dcgan")]
    assert torch.equal(G.main[0].weight, Generator.from_pretrained(folder).main[0].weight)


def test_a_failed_download_is_one_line(monkeypatch, capsys, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub", reason="dcgan[hub] is not installed")

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    assert main(["sample", "--pretrained", "someone/missing", "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "someone/missing is not a local path, and downloading model.safetensors" in err and err.count("\n") == 1


def test_push_hands_the_hub_folder_to_upload_folder(run, monkeypatch, capsys):
    """A fake HfApi: checks what dcgan would upload, not the upload."""
    huggingface_hub = pytest.importorskip("huggingface_hub", reason="dcgan[hub] is not installed")
    uploaded = {}

    class FakeApi:
        def create_repo(self, repo_id, private=False, exist_ok=False):
            uploaded["created"] = (repo_id, private, exist_ok)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, commit_message):
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main(["push", str(run), "someone/dcgan-tiny", "--private"]) == 0
    assert uploaded["created"] == ("someone/dcgan-tiny", True, True)
    assert uploaded["files"] == ["README.md", "config.json", "grid.png", "model.safetensors"]
    assert 'Generator.from_pretrained("someone/dcgan-tiny")' in uploaded["card"]
    assert "pushed" in capsys.readouterr().out
