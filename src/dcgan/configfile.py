"""Training options from a file: ``dcgan train --config FILE`` in TOML, YAML or JSON.

A file holds ``TrainConfig``'s field names at its top level (``batch_size = 64``). A run's own
``config.json`` is a config file too, so a run can be repeated from its record: its ``resolved`` facts
(device, dataset size) and its ``run_dir`` are what that run found, not options, and are dropped (a
repeat writes a new run directory); ``class_names`` are taken from the data again. Every value is
checked against the field's type here, before any work, and refused in one line naming the field.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
import typing
from pathlib import Path

from .config import TrainConfig
from .errors import UserError

SUFFIXES = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
# what a run directory's config.json holds beside the options: the run's own facts, not inputs
RUN_RECORD_FIELDS = ("resolved", "run_dir")
# derived by options.resolve from the data and the run; a file may hold them (a run's record) but they are not read
DERIVED_FIELDS = ("class_names",)


def read_config_file(path: str | Path) -> dict:
    """The options a config file gives, by field name, each checked against ``TrainConfig``'s type."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"--config {path}: give a .toml, .yaml, .yml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path}: cannot read it ({e})") from None
    values = _parse(text, kind, path)
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a table of TrainConfig fields, got {type(values).__name__}")
    if "resolved" in values:  # a run's config.json: drop what the run found, keep what it was given
        values = {k: v for k, v in values.items() if k not in RUN_RECORD_FIELDS}
    return {name: check_field(name, value, path) for name, value in values.items() if name not in DERIVED_FIELDS}


def _parse(text: str, kind: str, path: Path):
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError as e:
            raise UserError(f"--config {path}: not valid JSON ({e})") from None
    if kind == "toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # tomllib is in the standard library from 3.11; tomli is the same parser
            try:
                import tomli as tomllib
            except ImportError:
                raise UserError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"--config {path}: not valid TOML ({e})") from None
    try:
        import yaml
    except ImportError:
        raise UserError("reading YAML needs PyYAML: pip install 'dcgan[yaml]'") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"--config {path}: not valid YAML ({' '.join(str(e).split())})") from None


_FIELD_TYPES = typing.get_type_hints(TrainConfig)  # resolves the annotations that __future__ keeps as strings


def check_field(name: str, value, path: Path | str = "config"):
    """``value`` as field ``name`` holds it, or one line naming the field and what it should be."""
    if name not in _FIELD_TYPES:
        close = difflib.get_close_matches(name.replace("-", "_"), _FIELD_TYPES, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; the fields are TrainConfig's (dcgan train --print-config)"
        raise UserError(f"--config {path}: unknown field {name!r}{hint}")
    hint = _FIELD_TYPES[name]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
        if kind is str and isinstance(value, str):
            return value
        if kind is dict and isinstance(value, dict):
            return value
        if typing.get_origin(kind) is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    expected = " or ".join(_type_name(k) for k in allowed)
    extra = ""
    if float in allowed and isinstance(value, str):
        try:
            float(value)
            extra = " (YAML 1.1 reads 4e-4 as text: write 4.0e-4)"
        except ValueError:
            pass
    raise UserError(f"--config {path}: field {name} must be {expected}, got {value!r}{extra}")


try:  # `int | None` is a types.UnionType from 3.10 on
    from types import UnionType as _UnionType
except ImportError:  # pragma: no cover
    _UnionType = typing.Union


def _type_name(kind) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is tuple:
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}.get(
        kind, str(kind)
    )
