"""Loading a generator back, from whatever holds one: a training checkpoint or run directory, an
export (safetensors, TorchScript), a Hub folder, a generator shipped with the package or a Hugging
Face Hub repository id.

``Generator.from_checkpoint`` and ``Generator.from_pretrained`` call in here with their own class,
so this module never imports the networks, and ``models`` imports nothing of the package when it
is imported. The format of an export's config (``CONFIG_KEY``, ``EXPORT_VERSION``) is read here and
written by ``export``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import checkpoint as ckpt
from . import pretrained
from .config import TrainConfig
from .ema import recalibrated
from .errors import UserError

if TYPE_CHECKING:  # for annotations only: the class always comes from the caller
    from .models import Generator

CONFIG_KEY = "dcgan"  # the metadata entry (ONNX, safetensors) or extra file (TorchScript) with the config
EXPORT_VERSION = 1
HUB_WEIGHTS = "model.safetensors"  # the weights file of a Hub folder (hub.write_folder)
HUB_LIBRARY = "dcgan"  # the library name the Hub records for downloads and cards

# The Hub's rules for a repository id: namespace/name, letters, digits, '-', '_' and '.', at most 96
# characters each, no '--' or '..', not starting or ending with '-' or '.'
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$")
_EXPORT_SUFFIXES = (".pt", ".ts", ".onnx", ".safetensors", ".json", ".png")


def from_checkpoint(cls: type[Generator], path: str | os.PathLike, device: torch.device, *, ema: bool = True):
    """The generator of a checkpoint or run directory (its EMA when present), in eval mode with
    batch-norm statistics re-estimated for its weights, on ``device`` whatever device wrote it."""
    state = ckpt.load_training(path, map_location="cpu")
    cfg = TrainConfig.from_dict(ckpt.config_of(state)).resolved()
    G = cls.from_config(cfg)
    try:
        G.load_state_dict(ckpt.generator_weights(state, ema=ema))
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not fit its own config: {str(e).splitlines()[0]}") from None
    return recalibrated(G.to(device), seed=cfg.seed)


def from_pretrained(
    cls: type[Generator], path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True
):
    """A generator in eval mode from any of the sources this module names.

    A path that exists wins over a shipped name or a repository id of the same spelling. Exports already
    hold re-estimated batch-norm statistics; checkpoints get them in ``from_checkpoint``. ONNX files are
    for ONNX runtimes, not torch.
    """
    device = torch.device(device)
    if not Path(path).exists() and isinstance(path, str):
        if path in pretrained.names():
            path = pretrained.weights_path(path)
        elif looks_like_repo_id(path):
            path = download(path)
        else:
            raise UserError(
                f"{path} is not a file or folder, a generator that ships with dcgan "
                f"({', '.join(pretrained.names()) or 'none'}) or a Hub id user/repo"
            )
    path = Path(path)
    if path.is_dir() and (path / HUB_WEIGHTS).is_file():
        path = path / HUB_WEIGHTS
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        raise UserError(f"{path} is an ONNX export: run it with onnxruntime, or load the .safetensors export")
    if path.is_dir() or (path.is_file() and suffix not in (".safetensors", ".ts") and not _is_torchscript(path)):
        return from_checkpoint(cls, path, device, ema=ema)
    if not path.is_file():
        raise UserError(f"not found: {path}")
    if suffix == ".safetensors":
        config, state = _read_safetensors(path)
    else:
        config, state = _read_torchscript(path)
    return _with_weights(_from_export_config(cls, config, path), state, path).to(device)


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    safetensors = require("safetensors", "export", "this export")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            config = json.loads((f.metadata() or {}).get(CONFIG_KEY, "null"))
            return config, {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    except (OSError, ValueError, safetensors.SafetensorError) as e:  # JSONDecodeError is a ValueError
        raise UserError(f"{path} is not a readable safetensors file: {str(e).splitlines()[0][:200]}") from None


def _read_torchscript(path: Path) -> tuple[dict, dict]:
    extra = {CONFIG_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch marks TorchScript deprecated
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        config = json.loads(extra[CONFIG_KEY] or "null")
    except (RuntimeError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable TorchScript export: {str(e).splitlines()[0][:200]}") from None
    return config, module.state_dict()  # the traced module's parameters and buffers have the eager names


def _from_export_config(cls: type[Generator], config: dict, source: Path):
    if not isinstance(config, dict) or config.get("format") != "dcgan-generator":
        raise UserError(f"{source} is not a dcgan generator export")
    if config.get("version") != EXPORT_VERSION:
        raise UserError(f"{source} has export version {config.get('version')}; this dcgan reads {EXPORT_VERSION}")
    return cls(
        latent_dim=config["latent_dim"],
        channels=config["channels"],
        image_size=config["image_size"],
        width=config["width"],
        num_classes=config.get("num_classes") or 0,
        class_names=tuple(config.get("class_names") or ()),
    )


def _with_weights(G, state: dict, source: Path):
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{source}: weights do not fit its config: {str(e).splitlines()[0]}") from None
    return G.eval()


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds ``constants.pkl``; a checkpoint (torch.save) does not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# --------------------------------------------------------------------------- optional packages, the Hub


def require(module: str, extra: str, what: str = "this"):
    """An optional package, or one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs the {module} package: pip install 'dcgan[{extra}]'") from None


def looks_like_repo_id(text: str) -> bool:
    """Whether ``text`` (a path that does not exist) is meant as a Hub repository id."""
    return bool(REPO_ID.match(text)) and not text.lower().endswith(_EXPORT_SUFFIXES)


def download(repo_id: str, *, revision: str | None = None) -> Path:
    """A Hub repository's folder in the Hub's cache, holding its model.safetensors (downloaded once)."""
    hf = require_hub()
    try:
        path = hf.hf_hub_download(repo_id, HUB_WEIGHTS, revision=revision, library_name=HUB_LIBRARY)
    except Exception as e:  # offline, unknown repository, no access: one line
        raise UserError(
            f"{repo_id} is not a local path, and downloading {HUB_WEIGHTS} from the Hugging Face Hub "
            f"failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    return Path(path).parent


def require_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise UserError("the Hugging Face Hub needs huggingface_hub: pip install 'dcgan[hub]'") from None
    return huggingface_hub
