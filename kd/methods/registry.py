"""The registry of KD methods: `METHODS[name]` is the class registered under that name."""

from __future__ import annotations

from nas.base.errors import UserError

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: register a `kd.methods.base.Method` subclass under its `name`."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method {cls.__name__}: its name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type:
    """The method registered as `name`, or a one-line UserError listing the known ones."""
    if name not in METHODS:
        raise UserError(f"unknown KD method {name!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]
