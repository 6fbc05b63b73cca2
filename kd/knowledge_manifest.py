"""The knowledge folder's `manifest.json` as a typed record: read bounded, checked field by field.

The manifest is written by `nas knowledge`, but a folder handed to `--knowledge` may hold
anything: every field that search, finetuning and distillation read is checked here, so that a
broken manifest is one line naming the file and the field rather than a KeyError deep in a run.
The stages read it through `KnowledgeManifest`'s attributes; `to_dict` writes the keys, in the
order, that format 2 has always had, so folders made before the record existed still load and
are still reused (the reuse key hashes `inputs` as written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.safe_files import key_name, read_json, show_value

FORMAT_VERSION = 2  # 2: token ids stored beside the logits (1 had logits only)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ManifestInputs:
    """What the knowledge was made from. `config` and `augmentation` are recorded as `nas knowledge`
    wrote them (its KnowledgeConfig and the augmentation settings): they enter the reuse key as they are."""

    max_length: int  # the token length the teacher saw; students default to it
    labels: tuple[str, ...] | None  # the task's label names, None for regression or unnamed labels
    config: dict | None = None
    augmentation: dict | None = None
    train_rows: int | None = None
    dev_rows: dict[str, int] | None = None
    mlm_hash: str | None = None  # the masked LM that proposed substitutes (augment_source=mlm), by content

    @property
    def pooling(self) -> str:
        """How a layer's token states became the probes' input: mean or cls."""
        return (self.config or {}).get("pooling", "mean")

    @property
    def variants(self) -> int:
        """Augmented variants per training row (0: no augmented split)."""
        return (self.augmentation or {}).get("n", 0)

    def to_dict(self) -> dict:
        data = {"config": self.config, "augmentation": self.augmentation, "max_length": self.max_length,
                "train_rows": self.train_rows, "dev_rows": self.dev_rows}
        data = {k: v for k, v in data.items() if v is not None}
        data["labels"] = list(self.labels) if self.labels is not None else None
        if self.mlm_hash is not None:
            data["mlm_hash"] = self.mlm_hash
        return data


@dataclass(frozen=True)
class ProbeScores:
    """The frozen layer probes on one split, one number per layer (the embedding output first)."""

    loss: tuple[float, ...]
    accuracy: tuple[float, ...] | None = None  # None for regression

    @classmethod
    def from_dict(cls, data: dict) -> ProbeScores:
        accuracy = data.get("accuracy")
        return cls(tuple(data["loss"]), tuple(accuracy) if accuracy is not None else None)

    def to_dict(self) -> dict:
        return {"loss": list(self.loss), **({"accuracy": list(self.accuracy)} if self.accuracy is not None else {})}


@dataclass(frozen=True)
class KnowledgeManifest:
    """What a knowledge folder holds and what it was made from (`manifest.json`, format 2).
    JSON's `probes.dev` and `probes.train` are `probes_dev` and `probes_train` here."""

    task: str
    inputs: ManifestInputs
    splits: dict[str, int]  # split name -> rows
    num_layers: int  # transformer layers, embedding output not counted
    pad_id: int
    probes_dev: ProbeScores
    probes_train: ProbeScores | None = None
    teacher_hash: str | None = None
    key: str | None = None  # the hash of the inputs that decides reuse (manifest_key)
    num_labels: int | None = None
    dtype: str | None = None
    teacher: str | None = None  # the teacher folder, resolved
    teacher_params: int | None = None
    teacher_dev_metrics: dict[str, float] | None = None
    seconds: float | None = None  # build time
    bytes: int | None = None  # of the .npy arrays
    format_version: int = FORMAT_VERSION
    reused: bool = field(default=False, compare=False)  # this call found it built already; not written

    @classmethod
    def load(cls, path) -> KnowledgeManifest:
        """A manifest.json, bounded and checked; anything wrong is one line naming the file and field."""
        return cls.from_dict(read_json(path, "a knowledge manifest"), path)

    def save(self, path) -> Path:
        atomic.write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, data, path) -> KnowledgeManifest:
        check_manifest(data, path)
        inputs, probes = data["inputs"], data["probes"]
        labels = inputs.get("labels")
        return cls(
            format_version=data["format_version"], task=data["task"],
            inputs=ManifestInputs(
                max_length=inputs["max_length"], labels=tuple(labels) if labels is not None else None,
                config=inputs.get("config"), augmentation=inputs.get("augmentation"),
                train_rows=inputs.get("train_rows"), dev_rows=inputs.get("dev_rows"), mlm_hash=inputs.get("mlm_hash"),
            ),
            splits=dict(data["splits"]), num_layers=data["num_layers"], pad_id=data["pad_id"],
            probes_dev=ProbeScores.from_dict(probes["dev"]),
            probes_train=ProbeScores.from_dict(probes["train"]) if "train" in probes else None,
            **{name: data.get(name) for name in _OPTIONAL},
        )

    def to_dict(self) -> dict:
        """The manifest as JSON holds it: format 2's keys in format 2's order (optional ones only when known)."""
        probes = {"dev": self.probes_dev.to_dict(),
                  **({"train": self.probes_train.to_dict()} if self.probes_train is not None else {})}
        data = {
            "format_version": self.format_version, "teacher_hash": self.teacher_hash, "task": self.task,
            "inputs": self.inputs.to_dict(), "key": self.key, "splits": self.splits, "num_layers": self.num_layers,
            "num_labels": self.num_labels, "dtype": self.dtype, "pad_id": self.pad_id, "teacher": self.teacher,
            "teacher_params": self.teacher_params, "probes": probes, "teacher_dev_metrics": self.teacher_dev_metrics,
            "seconds": self.seconds, "bytes": self.bytes,
        }
        required = ("format_version", "task", "inputs", "splits", "num_layers", "pad_id", "probes")
        return {k: v for k, v in data.items() if k in required or v is not None}


# Top-level fields that `nas knowledge` writes but a hand-made folder may lack (checked by check_manifest when present).
_OPTIONAL = ("teacher_hash", "key", "num_labels", "dtype", "teacher", "teacher_params", "teacher_dev_metrics",
             "seconds", "bytes")


def read_manifest(folder, strict: bool = False) -> KnowledgeManifest | None:
    """The manifest of `folder`, or None when it has none. An unreadable or malformed one is a
    UserError when `strict` (a folder given to read from), else None (a folder about to be
    rebuilt: `nas knowledge` simply builds it again)."""
    path = Path(folder) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return KnowledgeManifest.load(path)
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
    if inputs.get("augmentation") is not None:
        _object(inputs["augmentation"], "inputs.augmentation", fail)
    if inputs.get("train_rows") is not None:
        _count(inputs["train_rows"], "inputs.train_rows", fail, low=0)
    if inputs.get("mlm_hash") is not None and not isinstance(inputs["mlm_hash"], str):
        fail("inputs.mlm_hash", f"expected a folder hash, got {show_value(inputs['mlm_hash'])}")
    if inputs.get("dev_rows") is not None:
        for name, rows in _object(inputs["dev_rows"], "inputs.dev_rows", fail).items():
            _count(rows, f"inputs.dev_rows.{key_name(name)}", fail, low=0)
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
    for split in ("dev", "train"):
        if split == "train" and "train" not in probes:
            continue
        scores = _object(probes.get(split), f"probes.{split}", fail)
        for key in ("loss", "accuracy"):
            values = scores.get(key)
            if values is None and key == "accuracy":
                continue
            if not isinstance(values, list) or not all(_finite(x) for x in values):
                fail(f"probes.{split}.{key}", "expected a list of finite numbers")
    metrics = data.get("teacher_dev_metrics")
    if metrics is not None and not isinstance(metrics, dict):
        fail("teacher_dev_metrics", "expected an object or null")
    for name, value in (metrics or {}).items():
        if not _finite(value):
            fail(f"teacher_dev_metrics.{key_name(name)}", f"expected a number, got {show_value(value)}")
    for name in ("teacher_hash", "key", "dtype", "teacher"):
        if data.get(name) is not None and not isinstance(data[name], str):
            fail(name, f"expected text, got {show_value(data[name])}")
    for name in ("num_labels", "teacher_params", "bytes"):
        if data.get(name) is not None:
            _count(data[name], name, fail, low=0)
    if data.get("seconds") is not None and not _finite(data["seconds"]):
        fail("seconds", f"expected a number, got {show_value(data['seconds'])}")
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

