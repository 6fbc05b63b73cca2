"""Configuration as frozen dataclasses, loaded from YAML/JSON and `--set key=value` overrides.

Each command owns one dataclass of settings. Values come, lowest priority first, from the
dataclass defaults, a `--config FILE` (either flat keys, or a section named after the command,
so that one file can configure a whole `nas run`), the command's own flags, and `--set`.
Unknown keys and values of the wrong type are rejected with the key named.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml

from nas.base.commands import CONFIG_SECTIONS  # one section per command that has settings
from nas.base.errors import UserError
from nas.base.safe_files import check_depth, parse_json, read_text, shorten, show_value


def read_config_file(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"--config {path}: no such file")
    text = read_text(path, "a settings file (YAML or JSON)")  # bounded; a folder or device is refused
    if path.suffix == ".json":
        data = parse_json(text, path)
    else:
        data = _parse_yaml(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of settings")
    for key, value in data.items():
        _check_key(key, path)
        if isinstance(value, dict):
            for inner in value:
                _check_key(inner, f"{path}: {_name(key)}")
    return data


def _parse_yaml(text: str, path: Path):
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as error:
        # A value YAML recognises but cannot build: an integer past Python's digit limit, a
        # date like 2024-13-45.
        raise UserError(f"{path}: a value YAML cannot read ({shorten(str(error).splitlines()[0], 80)})") from None
    check_depth(data, path)
    return data


def _check_key(key, origin) -> None:
    # YAML keys may be numbers, booleans or null; a setting is always named by text.
    if not isinstance(key, str):
        raise UserError(f"{origin}: setting names are text, got the key {show_value(key)}")


def _name(key: str) -> str:
    """A setting name for a message, quoted, and cut to its start when long."""
    return shorten(key, 60)


def parse_sets(pairs) -> dict:
    """`["lr=1e-3", "epochs=2"]` -> `{"lr": "1e-3", "epochs": "2"}` (strings; coerced per field later)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {shorten(pair)}: expected key=value")
        out[key.strip()] = value.strip()
    return out


INT_LIMIT = 2**63


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
        raise UserError(errors[0] if errors else f"setting {_name(key)}: bad value {show_value(value)}")
    if origin in (tuple, list):
        (item,) = typing.get_args(hint)[:1] or (str,)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"setting {_name(key)}: expected a list, got {show_value(value)}")
        return tuple(_coerce(v, item, key) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UserError(f"setting {_name(key)}: expected true or false, got {show_value(value)}")
    if hint is int:
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                pass
        if number is None:
            raise UserError(f"setting {_name(key)}: expected an integer, got {show_value(value)}")
        # torch and numpy take at most 64-bit integers; a larger one would fail deep inside a run.
        if not -INT_LIMIT <= number < INT_LIMIT:
            raise UserError(f"setting {_name(key)}: expected an integer below 2**63 in size, got {show_value(value)}")
        return number
    if hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond any float
                pass
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        # NaN or infinity would only surface later, as a NaN loss or a loop that never ends.
        if number is not None and math.isfinite(number):
            return number
        raise UserError(f"setting {_name(key)}: expected a finite number, got {show_value(value)}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"setting {_name(key)}: expected text, got {show_value(value)}")
    return value


def build(cls, section: str, file=None, flags=None, sets=None):
    """Resolve an instance of the dataclass `cls` from defaults, file, flags and --set."""
    return resolve(cls, section, [file_layer(file, section)] if file else [], flags, sets)


def file_layer(file, section: str) -> tuple[str, dict]:
    """(the file's name, its settings for `section`): the section of that name, else its flat keys."""
    data = read_config_file(file)
    sections = {k for k, v in data.items() if isinstance(v, dict)}
    unknown = sections - CONFIG_SECTIONS
    if unknown:
        raise UserError(f"{file}: unknown section {_name(sorted(unknown)[0])} (known: {', '.join(sorted(CONFIG_SECTIONS))})")
    if section in data and isinstance(data[section], dict):
        data = data[section]
    else:
        # A file written for `nas run` holds other commands' sections too; skip those.
        data = {k: v for k, v in data.items() if not isinstance(v, dict)}
    return str(file), data


def resolve(cls, section: str, layers, flags=None, sets=None):
    """An instance of `cls` from `layers` of (origin, {key: value}), lowest priority first, then
    flags and --set. Settings are handed to a stage in memory this way (`nas run`); a value that
    does not fit is named with the origin it came from."""
    hints = {name: hint for name, hint, _ in settings_fields(cls)}
    fields = set(hints)
    layers = [*layers, ("flags", {k: v for k, v in (flags or {}).items() if v is not None}), ("--set", parse_sets(sets))]
    values = {}
    for origin, data in layers:
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise UserError(f"{origin}: unknown setting {_name(key)} for {section} (known: {', '.join(sorted(fields))})")
            try:
                values[name] = _coerce(value, hints[name], key)
            except UserError as error:
                # Name the file a bad value came from (flags and --set name themselves).
                raise UserError(str(error) if origin in ("flags", "--set") else f"{origin}: {error}") from None
    return cls(**values)


def settings_fields(cls) -> list[tuple[str, object, object]]:
    """(name, type, default) of each setting of `cls`: its fields, or the flat view of a class
    that holds another settings object (`settings_fields()`, nas/base/flat_settings.py)."""
    if hasattr(cls, "settings_fields"):
        return cls.settings_fields()
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f.default) for f in dataclasses.fields(cls)]


def as_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "settings_fields") else dataclasses.asdict(config)
