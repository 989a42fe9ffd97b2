"""--init-from: a new run that starts from another run's G, D and EMA weights, and nothing else of it.

One tiny source run (latent_dim 16, widths 8: none of them the defaults, so a fine-tuning run that
gives no architecture option can only work by taking the source's) sits beside every test; a
fine-tuning run trains on other data (FakeData) with another seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.config import ARCHITECTURE_FIELDS, TrainConfig
from dcgan.errors import UserError
from dcgan.options import INIT_FIELDS, resolve
from dcgan.train import Trainer

# no architecture options: a fine-tuning run takes them from its source
RUN = [
    "--batch-size",
    "16",
    "--max-images",
    "64",
    "--steps",
    "4",
    "--log-every-steps",
    "2",
    "--sample-every-steps",
    "2",
    "--checkpoint-every-steps",
    "2",
    "--num-samples",
    "16",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--quiet",
]
SOURCE_ARCH = ["--latent-dim", "16", "--g-width", "8", "--d-width", "8"]
FINE_TUNE = ["--data", "fake", "--seed", "1"]
NETWORKS = ("G", "D", "G_ema")


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Run A: 4 steps on the built-in digits."""
    run = tmp_path_factory.mktemp("source") / "A"
    assert main(["train", *RUN, *SOURCE_ARCH, "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def fine_tuned(source, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Run B: 4 steps from A on FakeData with seed 1; and A's files as they were before B."""
    before = _snapshot(source)
    run = tmp_path_factory.mktemp("fine-tuned") / "B"
    assert main(["train", "--init-from", str(source), *FINE_TUNE, *RUN, "--run-dir", str(run)]) == 0
    return run, before


def _config(source: Path, tmp_path: Path, **options) -> TrainConfig:
    return TrainConfig(
        init_from=str(source),
        data="fake",
        seed=1,
        batch_size=16,
        max_images=64,
        epochs=None,
        steps=4,
        device="cpu",
        num_workers=0,
        quiet=True,
        run_dir=str(tmp_path / "new"),
        **options,
    )


# --------------------------------------------------------------------------- what is carried over


def test_a_new_trainer_holds_the_sources_weights_exactly_and_everything_else_fresh(source, tmp_path):
    A = ckpt.load(source)
    trainer = Trainer(resolve(_config(source, tmp_path)))
    assert _same(trainer.G.state_dict(), A["G"])
    assert _same(trainer.D.state_dict(), A["D"])
    assert _same(trainer.ema.state_dict(), A["G_ema"])
    assert not _same(A["G"], A["G_ema"])  # so the EMA copy really came from the source's EMA
    # the architecture came from the source; the data and the seed from the new options
    cfg = trainer.cfg
    assert (cfg.latent_dim, cfg.g_width, cfg.d_width, cfg.image_size, cfg.channels) == (16, 8, 8, 28, 1)
    assert (cfg.data, cfg.seed) == ("fake", 1)
    assert cfg.init_from == str((source / "checkpoints" / "latest.pt").absolute())
    # optimizers, position, statistics and clock start fresh
    assert trainer.opt_G.state_dict()["state"] == {} and trainer.opt_D.state_dict()["state"] == {}
    assert (trainer.step, trainer.epoch, trainer.step_in_epoch, trainer.stats_count) == (0, 0, 0, 0)
    assert trainer.train_seconds == 0.0 and trainer.best_fid == math.inf
    assert not trainer.resumed
    # the fixed noise and the random streams are those of a run with the new seed, not the source's
    fresh = Trainer(resolve(dataclasses.replace(trainer.cfg, init_from=None, run_dir=str(tmp_path / "fresh"))))
    assert torch.equal(trainer.fixed_noise, fresh.fixed_noise)
    assert not torch.equal(trainer.fixed_noise, A["fixed_noise"])
    assert torch.equal(trainer.noise_rng.get_state(), fresh.noise_rng.get_state())
    assert not _same(fresh.G.state_dict(), A["G"])  # random initial weights are not the source's


def test_a_fine_tuning_run_writes_its_own_run_and_leaves_the_source_untouched(source, fine_tuned):
    run, before = fine_tuned
    assert _snapshot(source) == before  # every file of A byte-identical
    A, B = ckpt.load(source), ckpt.load(run)
    assert B["step"] == 4  # counted from 0, not from A's 4
    assert all(s["step"] == 4 for s in B["opt_G"]["state"].values())  # Adam took B's 4 steps, no more
    assert all(not _same(A[net], B[net]) for net in NETWORKS)  # and they trained
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"] == str((source / "checkpoints" / "latest.pt").absolute())
    assert (config["data"], config["seed"], config["latent_dim"], config["d_width"]) == ("fake", 1, 16, 8)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]


def test_a_checkpoint_file_works_as_well_as_a_run_directory(source, tmp_path):
    kept = source / "checkpoints" / "latest.pt"
    resolved = resolve(_config(kept, tmp_path))
    assert resolved.cfg.init_from == str(kept.absolute())
    assert _same(resolved.init_weights.G, ckpt.load(kept)["G"])


def test_resuming_a_fine_tuned_run_continues_from_its_own_checkpoint_never_the_source(
    source,
    fine_tuned,
    tmp_path,
    capsys,
):
    copy, split = tmp_path / "A-copy", tmp_path / "split"
    shutil.copytree(source, copy)
    assert main(["train", "--init-from", str(copy), *FINE_TUNE, *RUN, "--steps", "2", "--run-dir", str(split)]) == 0
    shutil.rmtree(copy)  # a resume that went back to the source would now fail
    resumed = resolve(TrainConfig(steps=4, epochs=None), resume=str(split))
    assert resumed.init_weights is None
    assert resumed.cfg.init_from == str((copy / "checkpoints" / "latest.pt").absolute())  # still on record
    trainer = Trainer(resumed)
    assert trainer.step == 2 and _same(trainer.G.state_dict(), ckpt.load(split)["G"])
    trainer.run()
    # 2 steps, stop, resume, 2 more: bit-identical to the straight 4-step fine-tuning run
    straight, split_state = ckpt.load(fine_tuned[0]), ckpt.load(split)
    assert split_state["step"] == 4
    for net in NETWORKS:
        assert _same(split_state[net], straight[net]), net


# --------------------------------------------------------------------------- what is refused

# a value of each architecture field that the source was not trained with
CONFLICTS = {"image_size": 32, "channels": 3, "latent_dim": 100, "g_width": 16, "d_width": 16, "conditional": True}


def test_every_architecture_field_but_the_data_is_checked():
    # the class names come from the new data; their count is checked (test_a_conditional_source_...)
    assert set(INIT_FIELDS) == set(ARCHITECTURE_FIELDS) - {"data", "class_names"}
    assert set(CONFLICTS) == set(INIT_FIELDS), "add a conflicting value for the new architecture field"


@pytest.mark.parametrize("name", INIT_FIELDS)
def test_a_different_architecture_is_refused_in_one_line_naming_the_field(name, source, tmp_path, capsys):
    source_value = TrainConfig.from_dict(ckpt.load(source)["config"]).resolved()
    flag, value = "--" + name.replace("_", "-"), CONFLICTS[name]
    new = tmp_path / "new"
    option = [flag] if value is True else [flag, str(value)]  # a switch takes no value
    code = main(["train", "--init-from", str(source), *option, *RUN, "--run-dir", str(new)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert f"was trained with {name}={getattr(source_value, name)!r}, but {flag} {value!r} was given" in lines[0]
    assert not new.exists()


def test_the_same_architecture_given_explicitly_is_accepted(source, tmp_path):
    cfg = resolve(_config(source, tmp_path, latent_dim=16, g_width=8, d_width=8)).cfg
    assert (cfg.latent_dim, cfg.g_width, cfg.d_width) == (16, 8, 8)


def test_init_from_with_resume_is_refused(source, capsys):
    before = _snapshot(source)
    assert main(["train", "--resume", str(source), "--init-from", str(source)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--init-from starts a new run" in lines[0] and "give one of them" in lines[0]
    with pytest.raises(UserError, match="give one of them"):
        resolve(TrainConfig(init_from=str(source)), resume=str(source))
    assert _snapshot(source) == before


def _text_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("not a checkpoint\n")
    return tmp / "notes.txt"


def _foreign_file(tmp: Path) -> Path:
    torch.save({"state_dict": {}}, tmp / "foreign.pt")
    return tmp / "foreign.pt"


def _without_ema(tmp: Path) -> Path:
    """A file in the dcgan checkpoint format that lacks the EMA weights."""
    ckpt.save({"config": TrainConfig().to_dict(), "G": {}, "D": {}}, tmp / "no-ema.pt")
    return tmp / "no-ema.pt"


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda tmp: tmp / "nothing", "--init-from: checkpoint not found"),
        (lambda tmp: tmp, "--init-from: no checkpoint in"),  # a folder that is no run directory
        (_text_file, "is not a readable checkpoint"),
        (_foreign_file, "is not a dcgan checkpoint"),
        (_without_ema, "is not a dcgan training checkpoint (no G_ema)"),
    ],
    ids=["missing", "folder-without-checkpoint", "text-file", "foreign-file", "no-ema"],
)
def test_a_path_that_is_no_training_checkpoint_is_refused_before_any_work(make, expect, tmp_path, capsys):
    path = make(tmp_path)
    new = tmp_path / "new"
    assert main(["train", "--init-from", str(path), *RUN, "--run-dir", str(new)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], lines
    assert not new.exists()


def test_a_conditional_source_fine_tunes_onto_as_many_classes_named_by_the_new_data(
    tmp_path,
    tiny_train,
    capsys,
    mnist5k,
):
    from PIL import Image

    digits = mnist5k
    source = tmp_path / "cond"
    assert main(["train", "--conditional", *tiny_train, "--run-dir", str(source)]) == 0
    for classes in (10, 3):
        root = tmp_path / f"folder{classes}"
        for k in range(classes):
            (root / f"c{k}").mkdir(parents=True)
            for i in (digits.labels == k).nonzero().view(-1)[:4].tolist():
                Image.fromarray(digits.images[i, 0].numpy()).save(root / f"c{k}" / f"{i}.png")
    run = tmp_path / "tuned"
    assert (
        main(
            [
                "train",
                "--init-from",
                str(source),
                "--data",
                "folder",
                "--data-root",
                str(tmp_path / "folder10"),
                *tiny_train,
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["conditional"] is True and config["class_names"] == [f"c{k}" for k in range(10)]
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--init-from",
                str(source),
                "--data",
                "folder",
                "--data-root",
                str(tmp_path / "folder3"),
                *tiny_train,
                "--run-dir",
                str(tmp_path / "three"),
            ]
        )
        == 2
    )
    assert "draws 10 classes, but folder has 3" in capsys.readouterr().err
