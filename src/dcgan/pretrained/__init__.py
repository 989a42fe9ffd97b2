"""The generators shipped inside the package: ``<name>.safetensors``, its card ``<name>.json`` and grid ``<name>.png``.

``dcgan pretrained`` lists them; ``Generator.from_pretrained(NAME)``, ``dcgan sample --pretrained NAME`` and
``dcgan demo --pretrained NAME`` load them with no training and no network. Each card records the data,
recipe, steps, training time, the FID with its feature network and sample count, and the exact commands
that made the files (``scripts/make_pretrained.sh``, which calls ``dcgan.pretrained.make``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

FOLDER = Path(__file__).resolve().parent
CARD_FORMAT = "dcgan-pretrained"


def names() -> tuple[str, ...]:
    """The shipped generators: every card with its weights beside it."""
    return tuple(sorted(p.stem for p in FOLDER.glob("*.json") if p.with_suffix(".safetensors").is_file()))


def weights_path(name: str) -> Path:
    """The safetensors file of a shipped generator; one line naming what ships when ``name`` does not."""
    if name not in names():
        shipped = ", ".join(names()) or "none"
        raise UserError(f"no pretrained generator {name!r} ships with dcgan (shipped: {shipped})")
    return FOLDER / f"{name}.safetensors"


def card(name: str) -> dict:
    """A shipped generator's card (what made it and how it scored)."""
    path = weights_path(name).with_suffix(".json")
    values = json.loads(path.read_text())
    if values.get("format") != CARD_FORMAT:
        raise UserError(f"{path} is not a dcgan pretrained card")
    return values


def grid_path(name: str) -> Path:
    return weights_path(name).with_suffix(".png")


def dataset(card: dict) -> str:
    """The data a card's generator learned: its --data, or a folder dataset's folder name."""
    data = card["data"]
    return f"folder {data['root']}" if data["name"] == "folder" and data.get("root") else data["name"]


def format_list() -> str:
    """``dcgan pretrained``: one line per shipped generator."""
    if not names():
        return "no pretrained generators ship with this install"
    lines = []
    for name in names():
        c = card(name)
        fid = c["fid"]
        lines.append(
            f"{name:<12} {c['generator']['image_size']}x{c['generator']['image_size']}x{c['generator']['channels']}  "
            f"{dataset(c)} ({c['data']['num_images']:,} images), {c['recipe']} recipe, {c['steps']:,} steps "
            f"in {c['train_seconds'] / 60:.1f} min on {c['device']}; FID {fid['value']:.2f} ({fid['extractor']}, "
            f"{fid['num_images']:,} samples against {fid['real']})"
        )
    lines.append(f"files: {FOLDER}")
    return "\n".join(lines)
