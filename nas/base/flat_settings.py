"""A settings dataclass that holds another one, read and written flat.

`SearchConfig` holds its `SearchSpace` (what the supernet is built from) as one field, but the
command line (`--set hidden_size=64`), settings files, run records (config.json, checkpoints,
provenance) and callers (`SearchConfig(hidden_size=16)`, `dataclasses.replace(config,
max_cells=4)`) all name the space's settings flat, beside the config's own. These helpers give
such a class that flat face, so nesting changes neither its settings' names nor its records.

A class using them declares `NESTED = (field name, (flat setting names, ...))`, calls
`flat_init` from its own `__init__` (the dataclass is declared with `init=False`), and exposes
`flat_fields` / `flat_dict` through `settings_fields()` / `to_dict()`; `nas.run.config.build`
and the settings help read `settings_fields()` when a class has it.
"""

from __future__ import annotations

import dataclasses
import typing


def flat_fields(cls) -> list[tuple[str, object, object]]:
    """(name, type hint, default) of every flat setting, in record order: the nested object's
    exposed settings in its field order, then the class's own fields."""
    nested, names = cls.NESTED
    hints = typing.get_type_hints(cls)
    inner_cls = hints[nested]
    inner_hints = typing.get_type_hints(inner_cls)
    out = []
    for field in dataclasses.fields(cls):
        if field.name == nested:
            defaults = _nested_default(cls)
            out += [(f.name, inner_hints[f.name], getattr(defaults, f.name)) for f in dataclasses.fields(inner_cls)
                    if f.name in names]
        else:
            out.append((field.name, hints[field.name], field.default))
    return out


def flat_init(self, nested_value=None, /, **settings) -> None:
    """Set the fields of frozen dataclass `self` from flat settings: the nested object is
    `nested_value` (or the class's default one) with the flat settings that name its fields."""
    cls = type(self)
    nested, names = cls.NESTED
    given = settings.pop(nested, None) if nested_value is None else nested_value
    inner = {name: settings.pop(name) for name in names if name in settings}
    value = dataclasses.replace(given if given is not None else _nested_default(cls), **inner)
    for field in dataclasses.fields(cls):
        if field.name == nested:
            object.__setattr__(self, nested, value)
        elif field.name in settings:
            object.__setattr__(self, field.name, settings.pop(field.name))
        elif field.default is not dataclasses.MISSING:
            object.__setattr__(self, field.name, field.default)
        else:
            raise TypeError(f"{cls.__name__}: missing setting {field.name!r}")
    if settings:
        raise TypeError(f"{cls.__name__}: unknown setting {sorted(settings)[0]!r}")
    if hasattr(self, "__post_init__"):
        self.__post_init__()


def flat_dict(obj, omit_when_default: tuple[str, ...] = ()) -> dict:
    """The flat record: every setting by its flat name, values as `dataclasses.asdict` gives
    them. Settings in `omit_when_default` are left out at their default, so records written
    before such a setting existed still compare equal (a resumed run's check)."""
    nested, names = type(obj).NESTED
    inner = getattr(obj, nested)
    out = {}
    for name, _, default in flat_fields(type(obj)):
        value = getattr(inner if name in names else obj, name)
        if name in omit_when_default and value == default:
            continue
        out[name] = _plain(value)
    return out


def _nested_default(cls):
    """The nested object a class holds by default: its field's default when it declares one (a
    class may hold its nested settings with defaults of its own), else the nested class's."""
    nested, _ = cls.NESTED
    field = next(f for f in dataclasses.fields(cls) if f.name == nested)
    if field.default is not dataclasses.MISSING:
        return field.default
    return typing.get_type_hints(cls)[nested]()


def _plain(value):
    """What `dataclasses.asdict` makes of a value: tuples stay tuples, dataclasses become dicts."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
