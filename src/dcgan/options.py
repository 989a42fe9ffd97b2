"""From the options a user gave to the one frozen config a run uses.

``resolve`` is the only place where a run's configuration is decided: it validates the options
before any device, process group or file is touched, merges a resumed run's checkpoint config
(options given explicitly win) or, with ``--init-from``, takes the architecture of the checkpoint a
new run starts from, fills the size-dependent defaults, picks and checks the run directory, and
returns a ``Resolved`` whose config the trainer uses unchanged. ``write_config`` records it as
config.json once the data has been found.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import checkpoint as ckpt
from .augment import parse_policy
from .config import ARCHITECTURE_FIELDS, RECIPES, TrainConfig
from .errors import UserError
from .fileio import check_new_folder, write_text_atomic
from .outputs import run_dir_of
from .runtime import print0

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
LR_SCHEDULES = ("constant", "linear", "cosine")
# What --init-from carries over and checks: the shape of the networks, but not the data, which is what a
# fine-tuning run is free to change. Derived, so a new architecture field is checked without a change here.
# the class names come from the new run's data; only their count must match (options.resolve)
INIT_FIELDS = tuple(name for name in ARCHITECTURE_FIELDS if name not in ("data", "class_names"))


@dataclass(frozen=True)
class Resolved:
    """A run's final config, and what resuming brings with it."""

    cfg: TrainConfig
    checkpoint: dict | None = None  # the resumed state (None: a new run)
    continued_from: Path | None = None  # the source run when resuming into a new run directory
    init_weights: ckpt.Networks | None = None  # with --init-from: the source's G, D and G_ema state dicts

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)


def given_options(cfg: TrainConfig) -> set[str]:
    """The fields a Python caller set: those that differ from the config's recipe."""
    base = TrainConfig.for_recipe(cfg.recipe)
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(cfg, f.name) != getattr(base, f.name)}


def with_native_shape(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """The image size and channel count of ``cfg``'s data where they were not given: cifar10 trains at
    32x32 RGB, an image folder at its images' own (data.native_shape). Resumed and fine-tuned runs keep
    their checkpoint's, which win over anything not given."""
    from .data import native_shape
    from .models import SUPPORTED_IMAGE_SIZES

    shape = (
        None if {"image_size", "channels"} <= given else native_shape(cfg.data, cfg.data_root, SUPPORTED_IMAGE_SIZES)
    )
    if shape is None:
        return cfg
    size, channels = shape
    return dataclasses.replace(
        cfg,
        image_size=cfg.image_size if "image_size" in given else size,
        channels=cfg.channels if "channels" in given else channels,
    )


def resolve(cfg: TrainConfig, *, resume: str | None = None, given: Iterable[str] | None = None) -> Resolved:
    """Validate, merge a resumed checkpoint's config, choose the run directory; never changes ``cfg``.

    ``given`` names the options the user gave (the CLI passes the flags typed); by default they are
    the fields that differ from ``cfg``'s recipe. On resume, the checkpoint's values are used for
    everything else.
    """
    validate(cfg)
    given = set(given_options(cfg) if given is None else given)
    if "epochs" not in given and any(name in given and getattr(cfg, name) is not None for name in ("steps", "minutes")):
        # a length in steps or minutes replaces the default epochs: TrainConfig(minutes=3) is dcgan train --minutes 3
        cfg, given = dataclasses.replace(cfg, epochs=None), given | {"epochs"}
    cfg = with_native_shape(cfg, given)
    state, continued_from, init_weights, init_classes = None, None, None, ()
    if resume is not None and "init_from" in given:
        # a resumed run already has its weights; a fine-tuned run's own checkpoint wins over its source
        raise UserError(
            "--init-from starts a new run from another run's weights, --resume continues a run "
            "from its own checkpoint: give one of them"
        )
    if resume is not None:
        resume_path = ckpt.resolve(resume)
        state = ckpt.load_training(resume_path, map_location="cpu")
        saved = ckpt.config_of(state)
        check_compatible(saved, cfg, given, resume_path)
        source_run = resume_path.parent.parent
        report_config_edits(source_run, saved, given)
        # the checkpoint's config, overridden by what was given explicitly (length, logging, ...)
        values = {**saved, **{k: getattr(cfg, k) for k in given}}
        if cfg.run_dir is None:
            if resume_path.parent.name != "checkpoints":
                # its parent folder is no run directory: adopting it would write over what is there
                raise UserError(
                    f"{resume_path} is not inside a run's checkpoints/ folder; give --run-dir NEW "
                    "to continue it in a new run directory"
                )
            refuse_older_checkpoint(resume_path, ckpt.step_of(state))
            values["run_dir"] = str(source_run)
        elif Path(cfg.run_dir).resolve() != source_run.resolve():
            continued_from = source_run
        cfg = TrainConfig.from_dict(values)
    elif cfg.init_from is not None:
        cfg, init_weights, init_classes = take_init_source(cfg, given)
    cfg = cfg.resolved()
    if cfg.conditional and (state is None or not cfg.class_names):  # a new conditional run: its data's classes
        from .data import class_names

        cfg = dataclasses.replace(cfg, class_names=class_names(cfg.data, cfg.data_root))
    elif not cfg.conditional and cfg.class_names:
        cfg = dataclasses.replace(cfg, class_names=())
    if init_weights is not None and cfg.conditional:
        source_classes = len(init_classes)
        if source_classes != cfg.num_classes:
            raise UserError(
                f"--init-from {cfg.init_from} draws {source_classes} classes, but {cfg.data} has "
                f"{cfg.num_classes}; a conditional generator only fine-tunes onto as many classes"
            )
    validate(cfg)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    check_run_dir(run_dir, new=state is None or continued_from is not None)
    return Resolved(dataclasses.replace(cfg, run_dir=str(run_dir)), state, continued_from, init_weights)


def validate(cfg: TrainConfig) -> None:
    """Fail on bad values and combinations before any work starts."""
    from .metrics.evaluate import check_fid_images
    from .models import SUPPORTED_CHANNELS, SUPPORTED_IMAGE_SIZES

    if cfg.recipe not in RECIPES:
        raise UserError(f"unknown recipe {cfg.recipe!r}; choose from {', '.join(RECIPES)}")
    if cfg.image_size not in SUPPORTED_IMAGE_SIZES:
        raise UserError(
            f"unsupported image size {cfg.image_size}; supported: {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}"
        )
    if cfg.channels not in SUPPORTED_CHANNELS:
        raise UserError(f"unsupported channel count {cfg.channels}; use 1 (grayscale) or 3 (RGB)")
    positive = (
        "batch_size",
        "latent_dim",
        "g_width",
        "d_width",
        "log_every_steps",
        "sample_every_steps",
        "checkpoint_every_steps",
        "num_samples",
    )
    for name in positive:
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:  # None: the size's default width
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    for name in ("lr_g", "lr_d"):
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise UserError(f"--{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UserError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if not 0.5 < cfg.real_label <= 1.0:
        raise UserError(f"--real-label must be in (0.5, 1], got {cfg.real_label}")
    if cfg.steps is None and cfg.epochs is None and cfg.minutes is None:
        raise UserError("give the run length with --epochs, --steps or --minutes")
    if cfg.minutes is not None and not (cfg.minutes > 0 and math.isfinite(cfg.minutes)):
        raise UserError(f"--minutes must be a positive number, got {cfg.minutes}")
    if not (cfg.keep_every_minutes >= 0 and math.isfinite(cfg.keep_every_minutes)):
        raise UserError(f"--keep-every-minutes must be 0 or more, got {cfg.keep_every_minutes}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if not (cfg.r1_gamma >= 0 and math.isfinite(cfg.r1_gamma)):
        raise UserError(f"--r1-gamma must be 0 or more, got {cfg.r1_gamma}")
    if cfg.r1_every_steps < 1:
        raise UserError(f"--r1-every-steps must be at least 1, got {cfg.r1_every_steps}")
    if (cfg.steps is not None and cfg.steps < 1) or (cfg.epochs is not None and cfg.epochs < 1):
        raise UserError("--epochs and --steps must be at least 1")
    if cfg.max_images is not None and cfg.max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {cfg.max_images}")
    check_fid_images(cfg.eval_num_images, "--eval-num-images")
    parse_policy(cfg.augment)
    if cfg.compile_mode not in COMPILE_MODES:
        raise UserError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {cfg.compile_mode!r}")
    for name in ("keep_every_steps", "eval_every_steps", "num_workers", "lr_warmup_steps"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 or more")


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/DATA-SIZEpx-TIMESTAMP, with -2, -3, ... when a run started in the same second has it."""
    base = Path("runs") / f"{cfg.data}-{cfg.image_size}px-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_run_dir(run_dir: Path, *, new: bool) -> None:
    """A new run needs a missing or empty folder it can make; resuming in place reuses the run's own."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file; give a folder path")
    inside = run_dir_of(run_dir.parent) if new else None
    if inside is not None:
        raise UserError(f"--run-dir {run_dir} is inside the run directory {inside}; choose a folder outside it")
    if new and run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"run directory {run_dir} already exists; resume it with --resume {run_dir} or choose another --run-dir"
        )
    if not run_dir.exists():
        check_new_folder(run_dir, "run directory")  # its parent must be a writable folder


def check_compatible(saved: dict, cfg: TrainConfig, given: set[str], source: Path) -> None:
    """A resumed run must agree with its checkpoint on everything that shapes the networks."""
    for name in ARCHITECTURE_FIELDS:
        if name in given and saved.get(name) != getattr(cfg, name):
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{source} was trained with {name}={saved.get(name)!r}, but {flag} "
                f"{getattr(cfg, name)!r} was given; drop the option or start a new run"
            )


def take_init_source(cfg: TrainConfig, given: set[str]) -> tuple[TrainConfig, ckpt.Networks, tuple[str, ...]]:
    """--init-from: ``cfg`` with the source's architecture where none was given, the source's weights and
    (a conditional source) its class names.

    The source is only read. ``init_from`` becomes the absolute path of the checkpoint file, so config.json
    names exactly which file a run started from (a run directory's latest.pt moves on as that run trains).
    """
    try:
        path = ckpt.resolve(cfg.init_from)  # a run directory means its checkpoints/latest.pt, as everywhere
        state = ckpt.load(path, map_location="cpu")
    except UserError as e:
        raise UserError(f"--init-from: {e}") from None
    lacking = ckpt.missing(state)
    if lacking:
        raise UserError(f"--init-from: {path} is not a dcgan training checkpoint (no {', '.join(lacking)})")
    weights = ckpt.networks(state)
    source = TrainConfig.from_dict(ckpt.config_of(state)).resolved()  # fields it predates take their defaults
    for name in INIT_FIELDS:
        if name in given and getattr(cfg, name) != getattr(source, name):
            raise UserError(
                f"--init-from {path} was trained with {name}={getattr(source, name)!r}, but "
                f"--{name.replace('_', '-')} {getattr(cfg, name)!r} was given; its weights only fit its own "
                f"{name}: drop the option"
            )
    taken = {name: getattr(source, name) for name in INIT_FIELDS if name not in given}
    cfg = dataclasses.replace(cfg, init_from=str(path.absolute()), **taken)
    return cfg, weights, source.class_names if source.conditional else ()


def refuse_older_checkpoint(resume_path: Path, step: int) -> None:
    """Resuming an older checkpoint in place would overwrite its run's newer state: refuse."""
    latest = resume_path.parent / ckpt.LATEST
    if resume_path.name == ckpt.LATEST or not latest.is_file():
        return
    try:
        newest = ckpt.step_of(ckpt.load(latest))
    except (UserError, KeyError, TypeError) as e:  # unreadable, perhaps newer: not ours to overwrite
        reason = str(e) if isinstance(e, UserError) else f"{latest} has no step"
        raise UserError(
            f"{reason}; resuming {resume_path.name} in place could overwrite it: add --run-dir NEW to "
            f"continue step {step} in a new run directory"
        ) from None
    if newest > step:
        raise UserError(
            f"{resume_path} is at step {step} but {latest} is at step {newest}; resuming in place would "
            f"overwrite the newer state: add --run-dir NEW to continue step {step} in a new run directory"
        )


def report_config_edits(run_dir: Path, saved: dict, given: set[str]) -> None:
    """config.json is a record, not an input: say so when it was edited since the checkpoint."""
    path = run_dir / "config.json"
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(recorded, dict):
        return
    edited = sorted(
        name
        for name, value in saved.items()
        if name in recorded and recorded[name] != value and name not in given and name != "run_dir"
    )
    if edited:
        changes = ", ".join(f"{name} {saved[name]!r} -> {recorded[name]!r}" for name in edited)
        print0(
            f"notice: {path} was edited ({changes}); resuming uses the checkpoint's values: give "
            f"options on the command line to change them",
            file=sys.stderr,
        )


def write_config(run_dir: Path, cfg: TrainConfig, facts: dict) -> None:
    """config.json: the resolved config and what the run found (device, precision, dataset size)."""
    write_text_atomic(run_dir / "config.json", json.dumps({**cfg.to_dict(), "resolved": facts}, indent=2) + "\n")
