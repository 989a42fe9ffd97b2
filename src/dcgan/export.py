"""Exporting the generator: TorchScript, ONNX or safetensors, and loading it back in one line.

What is exported is what ``dcgan sample`` uses: the EMA generator in eval mode
with its batch-norm statistics re-estimated for the averaged weights
(``sample.load_generator``). Each file carries the config needed to use it
(latent size, image size, channels, width, classes): in TorchScript's extra
files, ONNX's metadata properties and the safetensors header. Every export maps
z [B, latent_dim] to images [B, channels, size, size] in [-1, 1]; a class-conditional one
takes (z, y) with y [B] the class indices (int64), and its config lists the class names.

ONNX needs ``onnx`` (and ``onnxscript`` for torch's exporter), safetensors the
``safetensors`` package: ``pip install 'dcgan[export]'``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import torch

from .errors import UserError
from .models import Generator

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "safetensors": ".safetensors"}
SUFFIXES = {"torchscript": (".pt", ".ts"), "onnx": (".onnx",), "safetensors": (".safetensors",)}
CONFIG_KEY = "dcgan"  # the metadata entry (ONNX, safetensors) or extra file (TorchScript) with the config
EXPORT_VERSION = 1
HUB_WEIGHTS = "model.safetensors"  # the weights file of a Hub folder (hub.write_folder)


def generator_config(G: Generator) -> dict:
    return {
        "format": "dcgan-generator", "version": EXPORT_VERSION, "latent_dim": G.latent_dim,
        "image_size": G.image_size, "channels": G.channels, "width": G.width,
        "num_classes": getattr(G, "num_classes", 0) or None,  # None: unconditional
        "class_names": list(getattr(G, "class_names", ())) if getattr(G, "num_classes", 0) else None,
        "input": "z [B, latent_dim], standard normal" + (", y [B] int64 class indices" if G.num_classes else ""),
        "output": "images [B, channels, size, size] in [-1, 1]",
    }


def infer_format(out: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
        return fmt
    by_suffix = {".pt": "torchscript", ".ts": "torchscript", ".onnx": "onnx", ".safetensors": "safetensors"}
    if out.suffix.lower() not in by_suffix:
        raise UserError(f"cannot tell the export format from {out}; use --format {'|'.join(FORMATS)}")
    return by_suffix[out.suffix.lower()]


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"this export needs the {module} package: pip install 'dcgan[export]'") from None


def export_generator(G: Generator, out: str | os.PathLike, fmt: str) -> Path:
    """Write ``G`` (eval mode, CPU) to ``out`` in ``fmt``; written to a temporary file and renamed."""
    from .explore import check_output_file
    from .outputs import check_suffix, writing

    out = Path(out)
    check_suffix(out, fmt, SUFFIXES)
    check_output_file(out, (out.suffix.lower(),))  # any name; the format is chosen
    G = G.cpu().eval()
    config = json.dumps(generator_config(G))
    z = torch.randn(2, G.latent_dim, generator=torch.Generator().manual_seed(0))
    inputs = (z, torch.tensor([0, 1 % G.num_classes])) if G.num_classes else (z,)
    names = ["z", "y"][: len(inputs)]
    if fmt == "safetensors":
        save_file = _require("safetensors.torch").save_file
    elif fmt == "onnx":
        onnx = _require("onnx")
    with writing(out, "the export") as tmp, warnings.catch_warnings():
        # tracing warns about the shape check in forward (the 2-D branch is the one exported) and
        # torch marks TorchScript deprecated; both are expected here, not news for the user
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(G, inputs)  # the 2-D z path; the batch size stays free
            # into memory first: torch.jit.save aborts the whole interpreter when the disk fills under it
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={CONFIG_KEY: config})
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
        elif fmt == "onnx":
            with torch.no_grad():
                torch.onnx.export(
                    G, inputs, str(tmp), input_names=names, output_names=["images"],
                    dynamic_axes={**{n: {0: "batch"} for n in names}, "images": {0: "batch"}}, dynamo=False,
                )
            model = onnx.load(str(tmp))
            entry = model.metadata_props.add()
            entry.key, entry.value = CONFIG_KEY, config
            onnx.save(model, str(tmp))
        else:
            state = {k: v.detach().contiguous() for k, v in G.state_dict().items()}
            save_file(state, str(tmp), metadata={CONFIG_KEY: config})
    return out


def export_run(run: str | os.PathLike, out: str | os.PathLike, *, fmt: str | None = None, ema: bool = True) -> Path:
    """``dcgan export``: the generator of a run directory or checkpoint, exported on the CPU."""
    from .outputs import check_output, check_suffix
    from .sample import load_generator

    out = Path(out)
    fmt = infer_format(out, fmt)
    check_suffix(out, fmt, SUFFIXES)
    check_output(out, "the export")  # before the generator is loaded and its statistics re-estimated
    if fmt == "onnx":
        _require("onnx")
    elif fmt == "safetensors":
        _require("safetensors")
    G = load_generator(run, torch.device("cpu"), ema=ema)
    return export_generator(G, out, fmt)


def _config_generator(config: dict, source: Path) -> Generator:
    if not isinstance(config, dict) or config.get("format") != "dcgan-generator":
        raise UserError(f"{source} is not a dcgan generator export")
    if config.get("version") != EXPORT_VERSION:
        raise UserError(f"{source} has export version {config.get('version')}; this dcgan reads {EXPORT_VERSION}")
    G = Generator(latent_dim=config["latent_dim"], channels=config["channels"], image_size=config["image_size"],
                  width=config["width"], num_classes=config.get("num_classes") or 0)
    G.class_names = tuple(config.get("class_names") or ())
    return G


def _load_weights(G: Generator, state: dict, source: Path) -> Generator:
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{source}: weights do not fit its config: {str(e).splitlines()[0]}") from None
    return G.eval()


def load_pretrained(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True) -> Generator:
    """A ``Generator`` in eval mode from a safetensors or TorchScript export, a checkpoint, a run directory,
    a Hub folder (``dcgan export --hub-folder``), the name of a generator shipped with the package
    (``dcgan pretrained``) or a Hugging Face Hub repository id ``user/repo``.

    A path that exists wins over a shipped name or a repository id of the same spelling. Exports already
    hold re-estimated batch-norm statistics; checkpoints get them from ``sample.load_generator``. ONNX
    files are for ONNX runtimes, not torch.
    """
    from . import pretrained

    device = torch.device(device)
    if not Path(path).exists() and isinstance(path, str):
        if path in pretrained.names():
            path = pretrained.weights_path(path)
        else:
            from . import hub

            if not hub.looks_like_repo_id(path):
                raise UserError(f"{path} is not a file or folder, a generator that ships with dcgan "
                                f"({', '.join(pretrained.names()) or 'none'}) or a Hub id user/repo")
            path = hub.download(path)
    path = Path(path)
    if path.is_dir() and (path / HUB_WEIGHTS).is_file():
        path = path / HUB_WEIGHTS
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        raise UserError(f"{path} is an ONNX export: run it with onnxruntime, or load the .safetensors export")
    if path.is_dir() or (path.is_file() and suffix not in (".safetensors", ".ts") and not _is_torchscript(path)):
        from .sample import load_generator

        return load_generator(path, device, ema=ema)
    if not path.is_file():
        raise UserError(f"not found: {path}")
    if suffix == ".safetensors":
        safetensors = _require("safetensors")
        safe_open = safetensors.safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                config = json.loads((f.metadata() or {}).get(CONFIG_KEY, "null"))
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, ValueError, safetensors.SafetensorError) as e:  # JSONDecodeError is a ValueError
            raise UserError(f"{path} is not a readable safetensors file: {str(e).splitlines()[0][:200]}") from None
        return _load_weights(_config_generator(config, path), state, path).to(device)
    extra = {CONFIG_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch marks TorchScript deprecated
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        config = json.loads(extra[CONFIG_KEY] or "null")
    except (RuntimeError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable TorchScript export: {str(e).splitlines()[0][:200]}") from None
    # the traced module's parameters and buffers have the eager Generator's names
    return _load_weights(_config_generator(config, path), module.state_dict(), path).to(device)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds ``constants.pkl``; a checkpoint (torch.save) does not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
