"""Exporting the generator: TorchScript, ONNX or safetensors (``Generator.from_pretrained`` loads it back).

What is exported is what ``dcgan sample`` uses: the EMA generator in eval mode
with its batch-norm statistics re-estimated for the averaged weights
(``Generator.from_checkpoint``). Each file carries the config needed to use it
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
from .loading import CONFIG_KEY, EXPORT_VERSION, require
from .models import Generator

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "safetensors": ".safetensors"}
SUFFIXES = {"torchscript": (".pt", ".ts"), "onnx": (".onnx",), "safetensors": (".safetensors",)}


def generator_config(G: Generator) -> dict:
    return {
        "format": "dcgan-generator",
        "version": EXPORT_VERSION,
        "latent_dim": G.latent_dim,
        "image_size": G.image_size,
        "channels": G.channels,
        "width": G.width,
        "num_classes": getattr(G, "num_classes", 0) or None,  # None: unconditional
        "class_names": list(G.class_names) if G.num_classes else None,
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
    return require(module, "export", "this export")


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
                    G,
                    inputs,
                    str(tmp),
                    input_names=names,
                    output_names=["images"],
                    dynamic_axes={**{n: {0: "batch"} for n in names}, "images": {0: "batch"}},
                    dynamo=False,
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

    out = Path(out)
    fmt = infer_format(out, fmt)
    check_suffix(out, fmt, SUFFIXES)
    check_output(out, "the export")  # before the generator is loaded and its statistics re-estimated
    if fmt == "onnx":
        _require("onnx")
    elif fmt == "safetensors":
        _require("safetensors")
    G = Generator.from_checkpoint(run, "cpu", ema=ema)
    return export_generator(G, out, fmt)
