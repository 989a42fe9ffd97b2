"""The generators shipped in the package: each loads offline and scores as its card says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TEST_DATA
from PIL import Image

from dcgan import Generator, pretrained
from dcgan.cli import main
from dcgan.export import generator_config
from dcgan.pretrained.make import score

NAMES = pretrained.names()


def test_mnist_ships():
    assert "mnist" in NAMES


# a colour generator's check scores against its data on disk (tens of seconds); the digits' takes seconds
CHECKS = [
    name if pretrained.card(name)["check"].get("data_root") is None else pytest.param(name, marks=pytest.mark.slow)
    for name in NAMES
]


@pytest.mark.parametrize("name", CHECKS)
def test_each_shipped_generator_loads_and_scores_as_its_card_says(name):
    card = pretrained.card(name)
    G = Generator.from_pretrained(name)
    assert not G.training and generator_config(G) == card["generator"]
    assert card["data"]["name"] and card["steps"] > 0 and card["train_seconds"] > 0 and card["commands"]
    assert card["fid"]["extractor"] and card["fid"]["num_images"] >= 2
    check = card["check"]  # a digit generator's is against the built-in digits: any install repeats it in seconds
    data, split = check.get("data", "mnist-5k"), check.get("split", "train")
    root = None
    if check.get("data_root"):
        root = TEST_DATA / check["data_root"]
        if not root.is_dir():
            pytest.skip(f"{name}'s card check needs its data at {root} (set DCGAN_TEST_DATA)")
    result, _ = score(
        G,
        data=data,
        data_root=str(root) if root else None,
        num_images=check["num_images"],
        seed=check["seed"],
        split=split,
    )
    assert result.extractor == check["extractor"] and result.num_real_images == check["num_real_images"]
    # the same images through the same network: only float summation order may differ between CPUs
    assert result.fid == pytest.approx(check["value"], rel=1e-3, abs=1e-3)
    assert result.kid_mean == pytest.approx(check["kid"], rel=1e-2, abs=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_dcgan_sample_pretrained_draws_the_cards_grid(name, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", "--pretrained", name, "-n", "64", "--seed", "0", "-o", str(out)]) == 0
    drawn = np.asarray(Image.open(out).convert("L"), dtype=np.int16)
    shipped = np.asarray(Image.open(pretrained.grid_path(name)).convert("L"), dtype=np.int16)
    assert drawn.shape == shipped.shape
    # bit-identical on the machine that made it; elsewhere a last-bit difference may move a pixel by a level
    assert np.abs(drawn - shipped).max() <= 2 and (drawn != shipped).mean() < 0.01


def test_dcgan_pretrained_lists_what_ships(capsys):
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        card = pretrained.card(name)
        assert f"{name} " in out and f"FID {card['fid']['value']:.2f}" in out and f"{card['steps']:,} steps" in out


def test_an_unknown_name_or_two_sources_are_one_line(tmp_path, capsys):
    assert main(["sample", "--pretrained", "nope", "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert f"nope is not a file or folder, a generator that ships with dcgan ({', '.join(NAMES)})" in err
    assert err.count("\n") == 1
    assert main(["sample", "-o", str(tmp_path / "g.png")]) == 2
    assert main(["sample", "somewhere", "--pretrained", "mnist", "-o", str(tmp_path / "g.png")]) == 2
    assert "one of them" in capsys.readouterr().err
    with pytest.raises(Exception, match="no pretrained generator 'nope' ships with dcgan"):
        pretrained.weights_path("nope")


def test_dcgan_eval_pretrained_defaults_to_the_cards_data(capsys, monkeypatch):
    calls = {}

    def fake_score(G, **kwargs):
        calls.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("dcgan.pretrained.make.score", fake_score)
    with pytest.raises(SystemExit):
        main(["eval", "--pretrained", "mnist", "-n", "100"])
    assert calls["data"] == pretrained.card("mnist")["data"]["name"] and calls["num_images"] == 100


def test_demo_pretrained_serves_the_shipped_generator(monkeypatch):
    pytest.importorskip("gradio", reason="dcgan demo needs dcgan[demo]")
    from dcgan import demo

    seen = {}

    def fake_build(G, **kwargs):
        seen["G"], seen["info"] = G, kwargs["info"]
        return object()

    monkeypatch.setattr(demo, "build_demo", fake_build)
    monkeypatch.setattr(demo, "_launch", lambda *args: None)
    monkeypatch.setattr(demo, "check_address", lambda host, port: None)
    assert main(["demo", "--pretrained", "mnist", "--port", "7861"]) == 0
    shipped = Generator.from_pretrained("mnist")
    assert all(torch.equal(a, b) for a, b in zip(seen["G"].state_dict().values(), shipped.state_dict().values()))
    assert seen["info"].startswith("`pretrained mnist`: 28×28")


def test_cards_are_valid_json_with_their_files():
    for name in NAMES:
        card = json.loads((pretrained.FOLDER / f"{name}.json").read_text())
        assert (pretrained.FOLDER / card["weights"]).is_file() and (pretrained.FOLDER / card["grid"]).is_file()
