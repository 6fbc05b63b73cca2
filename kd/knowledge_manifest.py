"""Reading a knowledge folder's `manifest.json`: bounded, and checked field by field.

The manifest is written by `nas knowledge`, but a folder handed to `--knowledge` may hold
anything: every field that search, finetuning and distillation read is checked here, so that a
broken manifest is one line naming the file and the field rather than a KeyError deep in a run.
"""

from __future__ import annotations

import math
from pathlib import Path

from nas.base.errors import UserError
from nas.base.safe_files import key_name, read_json, show_value

FORMAT_VERSION = 2  # 2: token ids stored beside the logits (1 had logits only)
MANIFEST = "manifest.json"


def read_manifest(folder, strict: bool = False) -> dict | None:
    """The manifest of `folder`, or None when it has none. An unreadable or malformed one is a
    UserError when `strict` (a folder given to read from), else None (a folder about to be
    rebuilt: `nas knowledge` simply builds it again)."""
    path = Path(folder) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return check_manifest(read_json(path, "a knowledge manifest"), path)
    except UserError:
        if strict:
            raise
        return None


def check_manifest(data, path) -> dict:
    def fail(field: str, reason: str):
        raise UserError(f"{path}: {field}: {reason}")

    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a JSON object")
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < FORMAT_VERSION:
        raise UserError(f"{path}: made by an older `nas knowledge` (format {version}, no stored token ids); "
                        "rerun `nas knowledge` with the same settings to rebuild it")
    if version != FORMAT_VERSION:
        fail("format_version", f"{show_value(version)} is not supported (supported: {FORMAT_VERSION})")
    if not isinstance(data.get("task"), str):
        fail("task", "expected a task name")
    inputs = _object(data.get("inputs"), "inputs", fail)
    _count(inputs.get("max_length"), "inputs.max_length", fail, low=1)
    labels = inputs.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        fail("inputs.labels", "expected a list of label names or null")
    pooling = _object(inputs.get("config", {}), "inputs.config", fail).get("pooling", "mean")
    if pooling not in ("mean", "cls"):
        fail("inputs.config.pooling", f"expected mean or cls, got {show_value(pooling)}")
    splits = _object(data.get("splits"), "splits", fail)
    for name, rows in splits.items():
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            fail("splits", f"{key_name(name)} is not a split name")  # names become file names
        _count(rows, f"splits.{key_name(name)}", fail, low=0)
    if "augmented" in splits:
        augmentation = _object(inputs.get("augmentation"), "inputs.augmentation", fail)
        _count(augmentation.get("n"), "inputs.augmentation.n", fail, low=1)
    _count(data.get("num_layers"), "num_layers", fail, low=0)
    _count(data.get("pad_id"), "pad_id", fail, low=0)
    probes = _object(data.get("probes"), "probes", fail)
    dev = _object(probes.get("dev"), "probes.dev", fail)
    for key in ("loss", "accuracy"):
        values = dev.get(key)
        if values is None and key == "accuracy":
            continue
        if not isinstance(values, list) or not all(_finite(x) for x in values):
            fail(f"probes.dev.{key}", "expected a list of finite numbers")
    metrics = data.get("teacher_dev_metrics")
    if metrics is not None and not isinstance(metrics, dict):
        fail("teacher_dev_metrics", "expected an object or null")
    return data


def _object(value, field, fail) -> dict:
    if not isinstance(value, dict):
        fail(field, f"expected an object, got {show_value(value)}")
    return value


def _count(value, field, fail, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fail(field, f"expected an integer >= {low}, got {show_value(value)}")
    return value


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

