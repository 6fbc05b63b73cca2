"""Reading the user's files with bounded effort: one place that every reader goes through.

A path a user hands us may be a folder, a FIFO, a link to `/dev/zero`, a file of gigabytes, a
file in another encoding, or JSON nested a million deep. Each of those is answered here with
one `UserError` line naming the file (and the line where there is one) before more than a
bounded amount is read:

* only regular files are read (the file is opened without blocking, then checked with fstat,
  so a FIFO or a device is refused before a byte is read), and never more than a size cap;
* text is UTF-8, with or without a byte-order mark; anything else is refused with the line of
  the first bad byte, and so are NUL bytes (a binary file) and overlong lines;
* JSON is parsed without Python's int-string limit ever firing (integers of more than
  `MAX_INT_DIGITS` digits are refused by name), without NaN/Infinity (not JSON, and never
  written by this package), with duplicate keys refused, and with nesting deeper than
  `MAX_DEPTH` refused, so that no later recursive walk can hit the recursion limit.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from nas.base.errors import UserError, where

MiB = 1024 * 1024
# Records (arch.json, configs, latency tables, manifests) are a few KiB; 16 MiB leaves room for
# long provenance without letting a stray multi-gigabyte file be read into memory.
JSON_CAP = 16 * MiB
# The largest GLUE file (MNLI train) is about 300 MB.
DATA_CAP = 2 * 1024 * MiB
# One line of a data file: GLUE's longest is a few KiB; a "line" of a megabyte is a binary file.
MAX_LINE_BYTES = 1 * MiB
MAX_INT_DIGITS = 100  # far beyond any count, size or seed; keeps int() away from its digit limit
MAX_DEPTH = 64  # arch.json nests 3 deep, configs 2; provenance may nest a little more
# Characters of an error line: room for a list of known settings, not for a 100,000-character key.
MAX_MESSAGE = 1000


def shorten(text: str, limit: int = 60) -> str:
    """`text` cut to its start when long, with how long it was: '"aaaa..." (100000 characters)'."""
    text = str(text)
    shown = repr(text)
    if len(shown) <= limit:
        return shown
    return f"{repr(text[: max(limit - 30, 8)])[:-1]}...' ({len(text):,} characters)"


def show_value(value, limit: int = 60) -> str:
    """A user's value for a message: its repr, cut to its start when long (and never str() of a
    huge integer, which Python refuses past 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: max(limit - 25, 8)]}... ({len(text):,} characters)"


def key_name(key, limit: int = 40) -> str:
    """A key as part of a field name: bare when plain and short, else quoted (a long one by its
    start, so that a 100,000-character key does not make a 100,000-character error line)."""
    key = str(key)
    return key if len(key) <= limit and re.fullmatch(r"[\w.-]+", key) else shorten(key, limit)


def clip(text: str, limit: int) -> str:
    """`text` unquoted, cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """A message as one line of at most `limit` characters (the last line of defence for the CLI)."""
    return clip(" ".join(str(message).splitlines()), limit)


def _size(n: int) -> str:
    return f"{n / MiB:,.0f} MiB" if n >= MiB else f"{n:,} bytes"


def read_bytes(path, what: str = "a file", cap: int = JSON_CAP) -> bytes:
    """The bytes of the regular file `path`; refuses anything else, and files over `cap` bytes."""
    with open_regular(path, what, cap) as handle:
        data = handle.read(cap + 1)  # a file that grew after fstat is still read no further
    if len(data) > cap:
        raise UserError(f"{path}: larger than the {_size(cap)} allowed for {what}")
    return data


def open_regular(path, what: str = "a file", cap: int = JSON_CAP):
    """A binary handle on `path`, once it is known to be a regular file of at most `cap` bytes."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected {what}") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{path}: is a folder, expected {what}")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: not a regular file (a device, FIFO or socket), expected {what}")
        if info.st_size > cap:
            raise UserError(f"{path}: {info.st_size:,} bytes, more than the {_size(cap)} allowed for {what}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def decode(data: bytes, path, first_line: int = 1) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); a bad byte is reported with its line."""
    try:
        text = data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as error:
        line = first_line + data.count(b"\n", 0, error.start)
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at column {column}); "
                        "save the file as UTF-8") from None
    if "\x00" in text:
        line = first_line + text.count("\n", 0, text.index("\x00"))
        raise UserError(f"{path}:{line}: contains a NUL byte; is this a binary file?")
    return text


def read_text(path, what: str = "a file", cap: int = JSON_CAP) -> str:
    return decode(read_bytes(path, what, cap), path)


def text_lines(path, what: str = "a data file", cap: int = DATA_CAP, max_line: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a UTF-8 text file, line endings kept (as `csv` wants them), read one at a time."""
    with open_regular(path, what, cap) as handle:
        read = 0
        for number, raw in enumerate(iter(lambda: handle.readline(max_line + 1), b""), 1):
            read += len(raw)
            if read > cap:
                raise UserError(f"{path}: larger than the {_size(cap)} allowed for {what}")
            if len(raw) > max_line:
                raise UserError(f"{path}:{number}: a line longer than {_size(max_line)}; is this {what}?")
            yield decode(raw, path, number)


def check_text(path, what: str = "a data file", cap: int = DATA_CAP, max_line: int = MAX_LINE_BYTES) -> None:
    """Read the whole file once, so that its encoding is checked up front: a quick run that reads
    only its first rows still refuses a file that is not UTF-8 further down."""
    for _ in text_lines(path, what, cap, max_line):
        pass


# ----- JSON -----


class _Refused(Exception):
    """Raised inside the JSON parser's hooks; turned into a UserError with the file named.
    `pattern` finds the refused token in the text, for its line number (the hooks see no position)."""

    def __init__(self, message: str, pattern: str | None = None):
        super().__init__(message)
        self.pattern = pattern


def _line_of(text: str, pattern: str | None) -> int | None:
    match = re.search(pattern, text) if pattern else None
    return text.count("\n", 0, match.start()) + 1 if match else None


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits:,} digits (at most {MAX_INT_DIGITS} are read)",
                       rf"(?<![\d.eE+-])-?\d{{{MAX_INT_DIGITS + 1},}}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {shorten(text, 40)} is out of range")
    return value


def _parse_constant(name: str):
    raise _Refused(f"{name} is not a JSON number", r"(?<![\w\"])" + re.escape(name) + r"(?![\w\"])")


def _constant_as_float(name: str) -> float:
    return float(name)  # NaN, Infinity, -Infinity: left for the reader's own check, which names the field


def _unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _Refused(f"duplicate key {shorten(key, 60)}")
        seen[key] = value
    return seen


def parse_json(text: str, source, object_pairs_hook=None, non_finite: bool = False) -> object:
    """Parse JSON text with the guards above; every problem is one line naming `source`.
    `object_pairs_hook` replaces the duplicate-key check (a reader that names the key its way);
    `non_finite` lets NaN, Infinity and overflowing numbers through as floats, for a reader that
    checks every number itself and can then name the field."""
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=float if non_finite else _parse_float,
                          parse_constant=_constant_as_float if non_finite else _parse_constant,
                          object_pairs_hook=object_pairs_hook or _unique_keys)
    except json.JSONDecodeError as error:
        raise UserError(f"{source}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except _Refused as error:
        raise UserError(f"{where(source, _line_of(text, error.pattern))}: {error}") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    check_depth(data, source)
    return data


def read_json(path, what: str = "a JSON file", cap: int = JSON_CAP) -> object:
    return parse_json(read_text(path, what, cap), path)


def check_depth(data, source, limit: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than `limit`, and containers that hold themselves (a YAML
    alias can make one). Iterative, and each container is measured once, so YAML aliases that
    share one list a billion times over cost nothing extra."""
    heights: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(data, False)]
    while stack:
        value, finished = stack.pop()
        if not isinstance(value, (dict, list, tuple, set, frozenset)):
            continue
        key = id(value)
        children = list(value.values()) if isinstance(value, dict) else list(value)
        if finished:
            on_path.discard(key)
            heights[key] = 1 + max((heights.get(id(child), 0) for child in children), default=0)
            if heights[key] > limit:
                raise UserError(f"{source}: nested too deeply (at most {limit} levels)")
            continue
        if key in heights:
            continue
        if key in on_path:
            raise UserError(f"{source}: a list or mapping contains itself")
        on_path.add(key)
        stack.append((value, True))
        stack.extend((child, False) for child in children)
