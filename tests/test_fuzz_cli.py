"""A fuzzer for the bad-input promise: generated options and paths for every subcommand, in-process.

For each generated command line it checks four things: the exit code is 0, or 2 with exactly one
line on stderr; no exception escapes ``main`` and no traceback is printed; every file of the trained
run directory beside it is byte-identical afterwards (a new file may appear in it only where the
command line named it, e.g. ``nearest RUN -o RUN/new.png``); and no temporary (half-written) file or
folder is left anywhere.

Bounded for CI: ``DCGAN_FUZZ_EXAMPLES`` examples per subcommand (default 6, derandomised so CI runs
are reproducible) with a deadline per example. A nightly run sets e.g. ``DCGAN_FUZZ_EXAMPLES=300``,
which also draws fresh random examples. The long-running commands are cut short where their work
starts: ``bench`` and ``quality`` validate their options and stop there, ``demo`` loads its
generator instead of serving; everything else runs for real with tiny sizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import traceback
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="the fuzzer needs hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dcgan.cli import main  # noqa: E402
from dcgan.models import Generator  # noqa: E402

EXAMPLES = int(os.environ.get("DCGAN_FUZZ_EXAMPLES", "6"))
NIGHTLY = "DCGAN_FUZZ_EXAMPLES" in os.environ and EXAMPLES > 6

TINY = [
    "--g-width",
    "8",
    "--d-width",
    "8",
    "--batch-size",
    "16",
    "--max-images",
    "32",
    "--log-every-steps",
    "1",
    "--sample-every-steps",
    "1",
    "--checkpoint-every-steps",
    "1",
    "--num-samples",
    "4",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--quiet",
]

PATHS = [
    "{run}",
    "{run}/checkpoints/latest.pt",
    "{run}/checkpoints/step_0000002.pt",
    "{run}/checkpoints/new.pt",
    "{run}/losses.png",
    "{run}/samples",
    "{run}/samples/final.png",
    "{run}/samples/progress.gif",
    "{run}/config.json",
    "{run}/metrics.jsonl",
    "{run}/new.png",
    "{tmp}/out.png",
    "{tmp}/out.gif",
    "{tmp}/out.npz",
    "{tmp}/out.pt",
    "{tmp}/out.onnx",
    "{tmp}/out.safetensors",
    "{tmp}/out.jpg",
    "{tmp}/outdir",
    "{tmp}/notes.txt",
    "{tmp}/notes.txt/x.png",
    "{tmp}/missing/deep/x.png",
    "{tmp}/images.npz",
    "{tmp}/images",
    "{tmp}/bad.npz",
    "{tmp}/c.pt",
    "{tmp}/stats.npz",
    "/proc/dcgan-fuzz.png",
    "",
    "-",
    "{tmp}/ünï cödé.png",
]
INTS = [
    "-1",
    "0",
    "1",
    "2",
    "3",
    "7",
    "16",
    "65",
    "100001",
    "1000001",
    "18446744073709551616",
    "99999999999999999999999",
    "1e3",
    "nan",
    "x",
    "",
    "0x10",
    "-0",
]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "0.5", "1", "12", "1e308", "1e-320", "-0", "x", ""]
SEEDS = [
    "0",
    "1,2",
    "0-3",
    "3-1",
    "-1",
    "0-999999999",
    "18446744073709551615",
    "18446744073709551616",
    "",
    "a",
    "1,,2",
    "5-5",
]
EXPRESSIONS = ["1+2", "1-2+3", "[1,2]-3", "", "+", "1--2", "18446744073709551616+1", "[0-999999999]", "[]", "1 2"]
DATASETS = ["mnist-5k", "mnist", "cifar10", "fake", "folder", "imagenet", ""]

# per subcommand: positionals (a strategy each) and options (flag -> strategy of its value, None: a switch)
path = st.sampled_from(PATHS)
source = st.sampled_from(["{run}"] * len(PATHS) + PATHS)  # a checkpoint argument: mostly the trained run
out = st.sampled_from(["{tmp}/out.png", "{tmp}/out.gif", "{tmp}/out.npz", "{tmp}/out.pt", "{tmp}/fresh"] * 4 + PATHS)
ints, floats, seeds = st.sampled_from(INTS), st.sampled_from(FLOATS), st.sampled_from(SEEDS)
COMMANDS: dict[str, tuple[list, dict]] = {
    "train": (
        [],
        {
            "--run-dir": out,
            "--resume": source,
            "--init-from": source,
            "--data": st.sampled_from(DATASETS),
            "--data-root": path,
            "--image-size": ints,
            "--channels": ints,
            "--latent-dim": ints,
            "--g-width": ints,
            "--batch-size": ints,
            "--lr-g": floats,
            "--ema-decay": floats,
            "--minutes": floats,
            "--seed": ints,
            "--r1-gamma": floats,
            "--augment": st.sampled_from(["color", "bogus", "", "color,cutout"]),
            "--conditional": None,
            "--keep-every-minutes": floats,
        },
    ),
    "sample": (
        [source],
        {
            "-n": ints,
            "-o": out,
            "--format": st.sampled_from(["grid", "folder", "npz", "x"]),
            "--seed": ints,
            "--seeds": seeds,
            "--class": st.sampled_from(["0", "3", "cat", ""]),
            "--no-ema": None,
        },
    ),
    "eval": (
        [source],
        {
            "-n": ints,
            "--k": ints,
            "--ref": path,
            "--data": st.sampled_from(DATASETS),
            "--data-root": path,
            "--batch-size": ints,
            "--seed": ints,
            "--cache-dir": path,
            "--extractor": st.sampled_from(["digits", "inception", "x"]),
            "--json": None,
        },
    ),
    "evaluator": (
        [st.just("train")],
        {"--out": out, "--epochs": ints, "--batch-size": ints, "--seed": ints, "--data-root": path},
    ),
    "interpolate": (
        [source],
        {
            "--seeds": seeds,
            "--frames": ints,
            "--direction": ints,
            "--distance": floats,
            "--fps": floats,
            "-o": out,
            "--mode": st.sampled_from(["slerp", "lerp", "x"]),
            "--loop": None,
        },
    ),
    "arithmetic": ([source, st.sampled_from(EXPRESSIONS)], {"-o": out, "--scale": ints}),
    "animate": ([source], {"-o": out, "--fps": floats, "--max-frames": ints}),
    "export": (
        [source],
        {"-o": out, "--format": st.sampled_from(["torchscript", "onnx", "safetensors", "x"]), "--no-ema": None},
    ),
    "nearest": ([source], {"-n": ints, "-k": ints, "--num-compare": ints, "-o": out, "--test-data": path}),
    "stats": (
        [st.sampled_from(DATASETS) | path],
        {"-o": out, "--image-size": ints, "--channels": ints, "--split": st.sampled_from(["train", "test", "x"])},
    ),
    "demo": ([source], {"--port": ints, "--host": st.sampled_from(["127.0.0.1", "", "x"])}),
    "bench": (
        [],
        {
            "--sizes": st.sampled_from(["28", "28,64", "-1", "x", ""]),
            "--batch-sizes": st.sampled_from(["2", "0", "100000", "x"]),
            "--steps": ints,
            "--min-repeat-s": floats,
            "--json": out,
            "--quick": None,
        },
    ),
    "quality": (
        [],
        {
            "--budget-min": floats,
            "--seeds": st.sampled_from(["0", "-1", "x", "0,0"]),
            "--num-images": ints,
            "--out": out,
            "--jobs": ints,
            "--quick": None,
        },
    ),
}
# options placed first so that a command that does run stays small; generated ones come after and win
SMALL = {
    "train": TINY,
    "sample": ["-n", "4"],
    "eval": ["-n", "16", "--k", "0", "--extractor", "digits"],
    "nearest": [
        "-n",
        "4",
        "--num-compare",
        "4",
        "--extractor",
        "digits",
        "--test-data",
        "folder",
        "--test-root",
        "{tmp}/images",
    ],
    "interpolate": ["--seeds", "1,2"],
    "stats": ["--extractor", "digits", "-o", "{tmp}/stats-out.npz"],
}
OWNED = {"animate": {"samples/progress.gif"}}  # what a command may rewrite in the run (its own output)
LAST = {"train": ["--steps", "2"]}  # no generated option makes a training run long
TRIMMED = {"-n": 64, "--num-images": 64, "--frames": 64, "--num-compare": 64, "--max-frames": 64}  # valid, but slow


@st.composite
def command_lines(draw, command: str) -> list[str]:
    positionals, options = COMMANDS[command]
    argv = [command, *[draw(s) for s in positionals]]
    if command == "evaluator":
        argv += ["--out", "{tmp}/e.pt"]
    argv += SMALL.get(command, [])
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        value = None if options[flag] is None else draw(options[flag])
        if flag in TRIMMED and value is not None and value.isdigit() and int(value) > TRIMMED[flag]:
            value = value if int(value) > 10**6 else str(TRIMMED[flag])  # the refused sizes stay
        argv += [flag] if value is None else [flag, value]
    return argv + LAST.get(command, [])


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob(".*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained run and a work folder with the files the path pool names."""
    base = tmp_path_factory.mktemp("fuzz")
    run, tmp = base / "run", base / "work"
    assert (
        main(
            [
                "train",
                *TINY,
                "--steps",
                "4",
                "--log-every-steps",
                "2",
                "--sample-every-steps",
                "2",
                "--checkpoint-every-steps",
                "2",
                "--keep-every-steps",
                "2",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    tmp.mkdir()
    (tmp / "notes.txt").write_text("not a folder\n")
    np.savez(tmp / "images.npz", images=np.random.default_rng(0).integers(0, 255, (8, 28, 28), dtype=np.uint8))
    (tmp / "bad.npz").write_bytes(b"not a zip")
    (tmp / "images").mkdir()
    from PIL import Image

    for i, image in enumerate(np.load(tmp / "images.npz")["images"]):
        Image.fromarray(image).save(tmp / "images" / f"{i}.png")
    shutil.copyfile(run / "checkpoints" / "latest.pt", tmp / "c.pt")
    return run, tmp


@pytest.fixture
def cut_short(monkeypatch):
    """bench and quality stop once their options are validated; demo loads its generator, serves nothing;
    no progress bars."""
    from dcgan.benchmarks import quality, speed

    monkeypatch.setattr(speed, "run", lambda cfg, **kw: speed.validate(cfg) or {})
    monkeypatch.setattr(quality, "_run", lambda cfg, command, out: {"rows": []})
    monkeypatch.setattr(
        "dcgan.demo.serve",
        lambda checkpoint, *, device, ema, **kw: Generator.from_checkpoint(checkpoint, device, ema=ema) and None,
    )
    import tqdm

    real_init = tqdm.tqdm.__init__  # progress bars are stderr output by design; the promise is about errors
    monkeypatch.setattr(tqdm.tqdm, "__init__", lambda self, *a, **k: real_init(self, *a, **{**k, "disable": True}))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_fuzz(command, world, cut_short, monkeypatch):
    run, tmp = world
    monkeypatch.chdir(tmp)  # defaults (samples.png, runs/...) land in the work folder
    before = _snapshot(run)
    pristine = tmp.parent / "pristine"
    if not pristine.exists():
        shutil.copytree(run, pristine)
    folders = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_dir()}
    seen: list[tuple[list[str], int]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=timedelta(seconds=60),
        derandomize=not NIGHTLY,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(argv=command_lines(command))
    def case(argv):
        argv = [a.format(run=run, tmp=tmp) for a in argv]
        err = io.StringIO()
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")  # a warning is a line on the user's stderr too
            try:
                code = main(argv)
            except BaseException as e:  # an escaped exception is the traceback the promise rules out
                raise AssertionError(f"{argv}: {type(e).__name__} escaped main:\n{traceback.format_exc()}") from None
        text = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + err.getvalue()
        lines = [line for line in text.splitlines() if line.strip()]
        assert "Traceback" not in text, (argv, text)
        assert code in (0, 2), (argv, code, text)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, text)
        after = _snapshot(run)
        changed = [name for name, digest in before.items() if after.get(name) != digest]
        owned = OWNED.get(command, set()) if code == 0 else set()
        assert not set(changed) - owned, (argv, "the run directory's files changed", changed)
        for name in changed:  # animate rebuilt the run's own progress.gif (with other --fps): put it back
            shutil.copyfile(pristine / name, run / name)
        for name in set(after) - set(before):  # a new file, beside the run's own: only where the user said
            new = run / name
            assert any(a and (new == Path(a) or Path(a) in new.parents) for a in argv[1:]), (argv, "wrote", name)
            new.unlink()
        for folder in sorted((p for p in run.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()) and str(folder.relative_to(run)) not in folders:
                folder.rmdir()
        assert not _temporaries(run, tmp), (argv, _temporaries(run, tmp))
        seen.append((argv, code))
        if os.environ.get("DCGAN_FUZZ_SHOW"):
            print(
                code,
                " ".join(argv).replace(str(run), "RUN").replace(str(tmp), "TMP"),
                "->",
                (lines[-1] if lines else "")[:150].replace(str(run), "RUN").replace(str(tmp), "TMP"),
            )

    torch.manual_seed(0)
    case()
    assert seen, "no example ran"
    print(
        f"fuzz {command}: {len(seen)} examples, exit 0: {sum(c == 0 for _, c in seen)}, "
        f"exit 2: {sum(c == 2 for _, c in seen)}"
    )
