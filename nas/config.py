"""Configuration as frozen dataclasses, loaded from YAML/JSON and `--set key=value` overrides.

Each command owns one dataclass of settings. Values come, lowest priority first, from the
dataclass defaults, a `--config FILE` (either flat keys, or a section named after the command,
so that one file can configure a whole `nas run`), the command's own flags, and `--set`.
Unknown keys and values of the wrong type are rejected with the key named.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import yaml

from nas.errors import UserError


# Sections a settings file may hold, one per command that has settings; `nas run` reads several.
CONFIG_SECTIONS = frozenset({"teacher", "knowledge", "search", "finetune", "distill", "run", "sweep", "latency"})


def read_config_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UserError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of settings")
    return data


def parse_sets(pairs) -> dict:
    """`["lr=1e-3", "epochs=2"]` -> `{"lr": "1e-3", "epochs": "2"}` (strings; coerced per field later)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _coerce(value, hint, key: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0] if errors else f"setting {key!r}: bad value {value!r}")
    if origin in (tuple, list):
        (item,) = typing.get_args(hint)[:1] or (str,)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"setting {key!r}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, key) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UserError(f"setting {key!r}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"setting {key!r}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"setting {key!r}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"setting {key!r}: expected text, got {value!r}")
    return value


def build(cls, section: str, file=None, flags=None, sets=None):
    """Resolve an instance of the dataclass `cls` from defaults, file, flags and --set."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    layers = []
    if file:
        data = read_config_file(file)
        sections = {k for k, v in data.items() if isinstance(v, dict)}
        unknown = sections - CONFIG_SECTIONS
        if unknown:
            raise UserError(f"{file}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(sorted(CONFIG_SECTIONS))})")
        if section in data and isinstance(data[section], dict):
            data = data[section]
        else:
            # A file written for `nas run` holds other commands' sections too; skip those.
            data = {k: v for k, v in data.items() if not isinstance(v, dict)}
        layers.append((str(file), data))
    layers.append(("flags", {k: v for k, v in (flags or {}).items() if v is not None}))
    layers.append(("--set", parse_sets(sets)))
    values = {}
    for origin, data in layers:
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise UserError(f"{origin}: unknown setting {key!r} for {section} (known: {', '.join(sorted(fields))})")
            values[name] = _coerce(value, hints[name], key)
    return cls(**values)


def as_dict(config) -> dict:
    return dataclasses.asdict(config)
