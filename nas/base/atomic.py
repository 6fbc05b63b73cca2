"""Writes that never leave a half-written file or folder behind.

A file is written to a temporary name in its own folder and renamed over the target, so a
reader sees either the old content or the new one. An output folder is built under a
`.partial` name and renamed into place only when the command finished, so an interrupted run
never leaves a folder that a later run would take for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from nas.base.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes | str) -> Path:
    """Write `data` (text is UTF-8 encoded) to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise UserError(f"{path}: cannot write ({error.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode an ordinary write would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise UserError(f"{path}: cannot write ({error.strerror})") from None
        raise
    return path


def write_text(path, text: str) -> Path:
    return write_bytes(path, text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_torch(obj, path) -> None:
    """torch.save through a temporary file, so a crash mid-write keeps the previous checkpoint."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_folder(final):
    """Yield a staging folder that replaces `final` only if the block finishes.

    On any exception (Ctrl-C included) the staging folder is removed and `final`, if it
    existed, is left exactly as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(final.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, final)


def resumable_folder(final, key: str) -> Path:
    """A staging folder for `final` that survives an interruption, for work that resumes.

    It holds `.key` with the caller's key of the inputs: the same key finds the folder as it was
    left (finished pieces kept), another key empties it. `publish` moves it into place.
    """
    final = Path(final)
    staging = final.with_name(final.name + ".partial")
    stamp = staging / ".key"
    if staging.exists() and not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(staging)
    if not staging.exists():
        staging.mkdir(parents=True)
        write_text(stamp, key)
    return staging


def publish(staging, final) -> None:
    """Replace `final` by the finished `staging` folder (renames only, so never half of either)."""
    staging, final = Path(staging), Path(final)
    (staging / ".key").unlink(missing_ok=True)
    if final.exists():
        retired = final.with_name(final.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
