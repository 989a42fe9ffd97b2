"""Every user mistake: one line on stderr, a non-zero exit, no traceback, nothing lost.

Each case runs the CLI in-process beside a trained run directory and checks four things:
the exit code, that stderr is exactly one line, that no traceback appears, and that every
file of the pre-existing run is byte-identical afterwards. docs/bad-input.md lists the same
cases; ``DCGAN_BAD_INPUT_TABLE=docs/bad-input.md python -m pytest tests/test_bad_input.py``
rewrites it from the messages the cases print.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from dcgan.cli import main

DOCS_TABLE = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # {run}: the trained run, {tmp}: an empty folder, {file}: a plain file
    expect: str  # a fragment of the one-line message
    setup: Callable[[Path, pytest.MonkeyPatch], None] | None = None
    code: int = 2


def _mkdir(*parts: str):
    def setup(tmp: Path, monkeypatch) -> None:
        tmp.joinpath(*parts).mkdir(parents=True)
    return setup


def _write(name: str, content: bytes):
    def setup(tmp: Path, monkeypatch) -> None:
        (tmp / name).write_bytes(content)
    return setup


def _foreign_checkpoint(tmp: Path, monkeypatch) -> None:
    torch.save({"state_dict": {}}, tmp / "foreign.pt")


def _edited_checkpoint(tmp: Path, monkeypatch) -> None:
    """A checkpoint whose weights no longer fit its own config (hand-edited, or another program's)."""
    state = torch.load(tmp / "run" / "checkpoints" / "latest.pt", weights_only=True)
    state["config"]["g_width"] = 16
    torch.save(state, tmp / "edited.pt")


def _bomb_folder(tmp: Path, monkeypatch) -> None:
    """A folder whose only image trips Pillow's decompression-bomb guard."""
    from PIL import Image

    (tmp / "bombs").mkdir()
    Image.new("L", (64, 64)).save(tmp / "bombs" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 > 2 x 100: an error, not a warning


def _disk_full(match: Callable[[str], bool]):
    """Writes to paths that ``match`` fail as on a full disk."""
    def setup(tmp: Path, monkeypatch) -> None:
        real_open = open

        def full_open(file, mode="r", *args, **kwargs):
            if any(m in mode for m in "wax") and match(str(file)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr("builtins.open", full_open)
    return setup


def _lmdb_error(tmp: Path, monkeypatch) -> None:
    import torchvision

    error = type("Error", (Exception,), {"__module__": "lmdb"})  # what the lmdb package raises

    def lsun(*args, **kwargs):
        raise error(f"{tmp}/bedroom_train_lmdb: No such file or directory")

    monkeypatch.setattr(torchvision.datasets, "LSUN", lsun)


TINY = ("--g-width 8 --d-width 8 --batch-size 16 --max-images 64 --steps 4 --log-every-steps 2 "
        "--sample-every-steps 2 --checkpoint-every-steps 2 --num-samples 16 --device cpu --num-workers 0 --quiet")
NEW = f"--run-dir {{tmp}}/new {TINY}"

CASES = [
    # options
    Case("no-command", "", "the following arguments are required: command"),
    Case("unknown-option", f"train --bogus {NEW}", "unrecognized arguments: --bogus"),
    Case("option-not-a-number", f"train {NEW} --batch-size many", "argument --batch-size: invalid int value"),
    Case("unsupported-image-size", f"train {NEW} --image-size 30", "unsupported image size 30"),
    Case("unsupported-channels", f"train {NEW} --channels 2", "unsupported channel count 2"),
    Case("batch-size-zero", f"train {NEW} --batch-size 0", "--batch-size must be at least 1"),
    Case("negative-learning-rate", f"train {NEW} --lr-g -1", "--lr-g must be a positive number"),
    Case("ema-decay-out-of-range", f"train {NEW} --ema-decay 1.5", "--ema-decay must be in [0, 1)"),
    Case("unknown-compile-mode", f"train {NEW} --compile-mode fastest", "--compile-mode must be one of"),
    Case("unknown-device", f"train {NEW} --device tpu", "unknown device 'tpu'"),
    Case("unknown-precision", f"train {NEW} --precision fp8", "unknown precision 'fp8'"),
    Case("unknown-recipe", f"train {NEW} --recipe best", "unknown recipe 'best'"),
    Case("recipe-on-resume", "train --resume {run} --recipe paper", "--recipe starts a new run"),
    Case("unknown-lr-schedule", f"train {NEW} --lr-schedule step", "--lr-schedule must be one of"),
    Case("unknown-augment-policy", f"train {NEW} --augment color,bogus", "unknown policy 'bogus'"),
    Case("minutes-not-positive", f"train {NEW} --minutes 0", "--minutes must be a positive number"),
    Case("resume-budget-spent", "train --resume {tmp}/timed", "has used its 0.01-minute budget",
         lambda tmp, mp: main(["train", *TINY.replace("--steps 4", "--minutes 0.01").split(),
                               "--run-dir", str(tmp / "timed")])),
    # data
    Case("unknown-dataset", f"train {NEW} --data imagenet", "unknown dataset 'imagenet'"),
    Case("data-root-typo-no-download", f"train {NEW} --data mnist --data-root {{tmp}}/typo",
         "data root not found"),
    Case("data-root-without-files", f"train {NEW} --data mnist --data-root {{tmp}}/empty",
         "no usable copy under", _mkdir("empty")),
    Case("data-root-is-a-file", f"train {NEW} --data mnist --data-root {{file}}", "is a file"),
    Case("folder-without-data-root", f"train {NEW} --data folder", "--data folder needs --data-root"),
    Case("empty-image-folder", f"train {NEW} --data folder --data-root {{tmp}}/empty", "no images in",
         _mkdir("empty")),
    Case("only-unreadable-images", f"train {NEW} --data folder --data-root {{tmp}}/broken",
         "could be read", lambda tmp, mp: (_mkdir("broken")(tmp, mp), _write("broken/a.png", b"nope")(tmp, mp))),
    Case("decompression-bomb-only", f"train {NEW} --data folder --data-root {{tmp}}/bombs",
         "could be read", _bomb_folder),
    Case("lsun-files-missing", f"train {NEW} --data lsun --data-root {{tmp}}", "lsun: cannot open the lmdb data",
         _lmdb_error),
    Case("data-root-for-builtin-digits", f"train {NEW} --data-root {{tmp}}", "does not apply to the built-in"),
    Case("batch-larger-than-dataset", f"train {NEW} --max-images 8", "larger than the dataset"),
    # run directories and resuming
    Case("run-dir-exists", f"train {TINY} --run-dir {{run}}", "already exists; resume it with --resume"),
    Case("run-dir-is-a-file", f"train {TINY} --run-dir {{file}}", "is a file; give a folder path"),
    Case("run-dir-inside-a-file", f"train {TINY} --run-dir {{file}}/run", "is a file, not a folder"),
    Case("resume-missing", "train --resume {tmp}/nothing", "checkpoint not found"),
    Case("resume-folder-without-checkpoint", "train --resume {tmp}", "no checkpoint in"),
    Case("resume-corrupt", "train --resume {tmp}/bad.pt", "not a readable checkpoint", _write("bad.pt", b"junk")),
    Case("resume-truncated", "train --resume {tmp}/cut.pt", "not a readable checkpoint",
         lambda tmp, mp: (tmp / "cut.pt").write_bytes((tmp / "run/checkpoints/latest.pt").read_bytes()[:2000])),
    Case("resume-foreign-file", "train --resume {tmp}/foreign.pt", "is not a dcgan checkpoint", _foreign_checkpoint),
    Case("resume-incompatible-option", "train --resume {run} --image-size 32", "was trained with image_size=28"),
    Case("resume-weights-do-not-fit", "train --resume {tmp}/edited.pt --run-dir {tmp}/new",
         "checkpoint does not fit this configuration", _edited_checkpoint),
    Case("resume-nothing-left", "train --resume {run} --steps 4", "is already at step 4"),
    Case("resume-older-checkpoint-in-place", "train --resume {run}/checkpoints/step_0000002.pt --steps 6",
         "resuming in place would overwrite the newer state"),
    Case("resume-into-another-run", "train --resume {run} --steps 6 --run-dir {tmp}/other",
         "already exists; resume it with --resume", lambda tmp, mp: (_mkdir("other")(tmp, mp),
                                                                     _write("other/x", b"x")(tmp, mp))),
    # fine-tuning: a new run from another run's weights
    Case("init-from-missing", f"train {NEW} --init-from {{tmp}}/nothing", "--init-from: checkpoint not found"),
    Case("init-from-not-a-checkpoint", f"train {NEW} --init-from {{file}}", "is not a readable checkpoint"),
    Case("init-from-foreign-file", f"train {NEW} --init-from {{tmp}}/foreign.pt", "is not a dcgan checkpoint",
         _foreign_checkpoint),
    Case("init-from-incompatible", f"train {NEW} --init-from {{run}} --image-size 32",
         "was trained with image_size=28, but --image-size 32 was given"),
    Case("init-from-with-resume", "train --resume {run} --init-from {run}", "give one of them"),
    Case("conditional-unlabelled-data", f"train {NEW} --conditional --data fake", "fake has no class labels"),
    Case("class-on-an-unconditional-run", "sample {run} --class 3 -o {tmp}/x.png",
         "--class applies to class-conditional runs"),
    # disk errors during a run: the checkpoints written so far stay intact
    Case("disk-full-metrics", f"train {NEW}", "could not write a metrics row",
         _disk_full(lambda p: p.endswith("metrics.jsonl"))),
    Case("disk-full-sample-grid", f"train {NEW}", "could not write a sample grid",
         _disk_full(lambda p: "/samples/" in p)),
    Case("disk-full-loss-plot", f"train {NEW}", "could not write the loss plot",
         _disk_full(lambda p: "losses.png" in p)),
    # sample
    Case("sample-missing-checkpoint", "sample {tmp}/nothing -o {tmp}/x.png", "checkpoint not found"),
    Case("sample-zero-images", "sample {run} -n 0 -o {tmp}/x.png", "--num-images must be at least 1"),
    Case("sample-unknown-extension", "sample {run} -o {tmp}/x.jpg", "cannot tell the format"),
    Case("sample-out-inside-a-file", "sample {run} -o {file}/x.png", "is a file, not a folder"),
    Case("sample-out-is-a-folder", "sample {run} -o {tmp}/x.png", "is an existing folder", _mkdir("x.png")),
    Case("sample-out-unwritable", "sample {run} -o /proc/dcgan-samples.png", "could not write images"),
    Case("sample-folder-not-empty", "sample {run} -o {run}", "already exists and is not empty"),
    # eval, quality, bench, evaluator
    Case("eval-one-image", "eval {run} -n 1", "--num-images must be at least 2"),
    Case("eval-weights-for-the-other-extractor", "eval {run} --extractor digits --inception-weights x.pth",
         "--inception-weights goes with --extractor inception"),
    Case("quality-out-is-a-file", "quality --quick --out {file}", "is a file; give a folder path"),
    Case("bench-json-is-a-folder", "bench --quick --json {tmp}", "is an existing folder"),
    Case("evaluator-unlabelled-data", "evaluator train --data celeba --out {tmp}/e.pt", "invalid choice"),
]

_messages: dict[str, tuple[str, int]] = {}


@pytest.fixture(scope="module")
def template_run(tmp_path_factory) -> Path:
    """A tiny trained run (4 steps, checkpoints at 2 and 4 kept) that every case sits beside."""
    run = tmp_path_factory.mktemp("template") / "run"
    assert main(["train", *TINY.split(), "--keep-every-steps", "2", "--run-dir", str(run)]) == 0
    return run


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, template_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(template_run, run)
    plain_file = tmp_path / "notes.txt"
    plain_file.write_text("not a folder\n")
    monkeypatch.chdir(tmp_path)  # anything written by default lands here, not in the repository
    if case.setup is not None:
        case.setup(tmp_path, monkeypatch)
    before = _snapshot(run)
    argv = case.argv.format(run=run, tmp=tmp_path, file=plain_file).split()
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(("error: ", "dcgan")) and case.expect in lines[0], lines[0]
    assert _snapshot(run) == before, "the pre-existing run directory changed"
    shown = lines[0].replace(str(run), "RUN").replace(str(tmp_path), "TMP")
    _messages[case.id] = (shown, code)


def test_new_run_dirs_of_failed_options_are_not_created(template_run, tmp_path, monkeypatch):
    """Options are checked before anything is written: a refused run leaves no folder behind."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY.split(), "--run-dir", str(tmp_path / "new"), "--lr-g", "-1"]) == 2
    assert main(["train", *TINY.split(), "--run-dir", str(tmp_path / "typo"), "--data", "mnist",
                 "--data-root", str(tmp_path / "nope")]) == 2
    assert not (tmp_path / "new").exists() and not (tmp_path / "nope").exists()


def test_the_docs_table_lists_every_case():
    text = DOCS_TABLE.read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*$", text, re.M)}
    assert set(rows) == {c.id for c in CASES}
    for case in CASES:
        assert case.expect.replace("|", "\\|") in rows[case.id], case.id
        assert rows[case.id].rstrip().endswith(f"| {case.code} |"), case.id


@pytest.fixture(scope="module", autouse=True)
def _write_docs_table():
    """With DCGAN_BAD_INPUT_TABLE set, write the table of the messages the cases printed."""
    yield
    target = os.environ.get("DCGAN_BAD_INPUT_TABLE")
    if not target or len(_messages) != len(CASES):
        return
    lines = [
        "# Bad input: one line, a non-zero exit, nothing lost", "",
        "Every case below is a test in `tests/test_bad_input.py`. Each runs the command beside a trained run",
        "directory (`RUN`) and checks the exit code, that stderr is exactly this one line, that no traceback",
        "appears, and that every file of `RUN` is byte-identical afterwards. `TMP` is an empty folder,",
        "`TMP/notes.txt` a plain file, and `NEW` stands for `--run-dir TMP/new` plus tiny training options.",
        "Regenerate this page with `DCGAN_BAD_INPUT_TABLE=docs/bad-input.md python -m pytest tests/test_bad_input.py`.",
        "", "| case | command | message | exit |", "|---|---|---|---|",
    ]
    for case in CASES:
        shown, code = _messages[case.id]
        command = "dcgan " + re.sub(r"\s+", " ", case.argv.replace(NEW, "NEW").replace(TINY, "TINY")).strip()
        command = command.replace("{run}", "RUN").replace("{tmp}", "TMP").replace("{file}", "TMP/notes.txt")
        lines.append(f"| `{case.id}` | `{command}` | {shown.replace('|', chr(92) + '|')} | {code} |")
    Path(target).write_text("\n".join(lines) + "\n")
