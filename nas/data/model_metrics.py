"""`metrics.json`, the record a trained model folder carries, as typed records.

`nas teacher` writes a `TeacherMetrics`; `nas finetune` and `nas distill` write a `StudentMetrics`
(the same keys, so their results compare). Later stages read them through these records, not
by key paths: the knowledge build reads the teacher's token length, `nas run` its report, the
model card and the sweep the student's numbers. Loading is bounded and checked field by field
(a malformed field is one line naming the file and the field); `to_dict` writes the keys, in the
order, that the files have always had. Keys a record does not model (a method's own, in `nas
distill`) are kept as written in `extra`, so a load and a save lose nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.safe_files import key_name, read_json, show_value

METRICS = "metrics.json"


class _Checked:
    """Fields of one JSON object, each checked as it is taken; a failure names the file and field."""

    def __init__(self, data, source, prefix: str = ""):
        if not isinstance(data, dict):
            where = f"{prefix.rstrip('.')}: " if prefix else ""
            raise UserError(f"{source}: {where}expected an object, got {show_value(data)}")
        self.data, self.source, self.prefix = data, source, prefix

    def fail(self, name: str, expected: str):
        raise UserError(f"{self.source}: {self.prefix}{key_name(name)}: expected {expected}, "
                        f"got {show_value(self.data.get(name))}")

    def take(self, name: str, check, expected: str, required: bool):
        if name not in self.data or self.data[name] is None:
            if required:
                raise UserError(f"{self.source}: {self.prefix}{key_name(name)}: missing")
            return None
        if not check(self.data[name]):
            self.fail(name, expected)
        return self.data[name]

    def text(self, name, required=False):
        return self.take(name, lambda v: isinstance(v, str), "text", required)

    def count(self, name, required=False):
        return self.take(name, lambda v: _is_int(v) and v >= 0, "an integer >= 0", required)

    def number(self, name, required=False):
        return self.take(name, _finite, "a finite number", required)

    def scores(self, name, required=False) -> dict[str, float] | None:
        """An object of name -> finite number (dev metrics, speed-ups)."""
        value = self.take(name, lambda v: isinstance(v, dict), "an object of numbers", required)
        for key, number in (value or {}).items():
            if not _finite(number):
                raise UserError(f"{self.source}: {self.prefix}{key_name(name)}.{key_name(key)}: expected a finite "
                                f"number, got {show_value(number)}")
        return value

    def object(self, name, required=False) -> dict | None:
        return self.take(name, lambda v: isinstance(v, dict), "an object", required)

    def list(self, name, required=False) -> list | None:
        return self.take(name, lambda v: isinstance(v, list), "a list", required)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _batch_size(key: str) -> int | None:
    """`batch_32_ms` -> 32; None for any other key."""
    middle = key.removeprefix("batch_").removesuffix("_ms")
    return int(middle) if key.startswith("batch_") and key.endswith("_ms") and middle.isdigit() else None


@dataclass(frozen=True)
class Measured:
    """One model's size and speed, measured by `nas finetune` / `nas distill` beside the other model."""

    params: int
    params_without_embeddings: int | None = None  # see nas/deploy/costs.py:parameter_counts
    flops: int | None = None  # one sequence of the record's flops_seq_len tokens
    latency_ms: dict[int, float] = field(default_factory=dict)  # batch size -> median ms (JSON: batch_<n>_ms)

    def ms(self, batch_size: int) -> float | None:
        return self.latency_ms.get(batch_size)

    @classmethod
    def from_dict(cls, data, source, name: str) -> Measured:
        checked = _Checked(data, source, f"{name}.")
        latency = {}
        for key in data:
            size = _batch_size(key)
            if size is not None:
                if not _finite(data[key]):
                    checked.fail(key, "a finite number of milliseconds")
                latency[size] = data[key]
        return cls(params=checked.count("params", required=True),
                   params_without_embeddings=checked.count("params_without_embeddings"),
                   flops=checked.count("flops"), latency_ms=latency)

    def to_dict(self) -> dict:
        sizes = {"params": self.params, "params_without_embeddings": self.params_without_embeddings, "flops": self.flops}
        return {**{k: v for k, v in sizes.items() if v is not None},
                **{f"batch_{size}_ms": ms for size, ms in self.latency_ms.items()}}


class _Record:
    """load/save for the records below; each lists its JSON keys as its fields, in file order."""

    @classmethod
    def load(cls, path):
        """A metrics.json, bounded and checked field by field."""
        return cls.from_dict(read_json(path, "a metrics file"), path)

    def save(self, path) -> Path:
        atomic.write_json(path, self.to_dict())
        return Path(path)


@dataclass(frozen=True)
class TeacherMetrics(_Record):
    """A teacher folder's metrics.json (`nas teacher`). Every field may be absent: a teacher folder
    may come from elsewhere, and readers take only what they need."""

    task: str | None = None
    metrics: dict[str, float] | None = None  # the best epoch's dev metrics
    primary_metric: str | None = None
    best_epoch: int | None = None  # counted from 1
    history: list[dict] | None = None  # dev metrics of every epoch
    train_seconds: float | None = None
    params: int | None = None
    train_rows: int | None = None
    dev_rows: dict[str, int] | None = None
    max_length: int | None = None  # the token length it was fine-tuned at; its knowledge uses the same
    source_model: str | None = None
    config: dict | None = None
    provenance: dict | None = None

    @classmethod
    def from_dict(cls, data, source) -> TeacherMetrics:
        checked = _Checked(data, source)
        dev_rows = checked.object("dev_rows")
        for name, rows in (dev_rows or {}).items():
            if not _is_int(rows) or rows < 0:
                raise UserError(f"{source}: dev_rows.{key_name(name)}: expected an integer >= 0, got {show_value(rows)}")
        return cls(
            task=checked.text("task"), metrics=checked.scores("metrics"), primary_metric=checked.text("primary_metric"),
            best_epoch=checked.count("best_epoch"), history=checked.list("history"),
            train_seconds=checked.number("train_seconds"), params=checked.count("params"),
            train_rows=checked.count("train_rows"), dev_rows=dev_rows, max_length=checked.count("max_length"),
            source_model=checked.text("source_model"), config=checked.object("config"),
            provenance=checked.object("provenance"),
        )

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True, kw_only=True)  # keyword-only: the fields stay in the file's order, required or not
class StudentMetrics(_Record):
    """A student folder's metrics.json (`nas finetune`, `nas distill`)."""

    task: str
    primary_metric: str | None = None
    metrics: dict[str, float]  # the best epoch's dev metrics
    teacher_metrics: dict[str, float] | None = None  # the teacher's dev metrics, from the knowledge
    best_epoch: int | None = None  # counted from 1
    history: list[dict] | None = None
    train_seconds: float | None = None
    train_rows: int | None = None
    init: str | None = None  # search (the supernet's weights) or scratch
    genotype: str | None = None  # the cell, as text
    flops_seq_len: int | None = None
    latency_device: str | None = None
    latency_threads: int | None = None
    student: Measured
    teacher: Measured
    speedup: dict[str, float] | None = None  # batch_<n>_speedup: teacher ms / student ms
    optimised: dict | None = None  # the same timings through the serving path (nas/deploy/serving.py)
    compression: float | None = None  # teacher params / student params
    onnx: dict | None = None  # the ONNX export's check and latency, when the deploy extra is installed
    extra: dict = field(default_factory=dict)  # keys of a `nas distill` method (method, stages, ...), as written
    config: dict | None = None
    provenance: dict | None = None

    def speedup_at(self, batch_size: int) -> float | None:
        return (self.speedup or {}).get(f"batch_{batch_size}_speedup")

    @classmethod
    def from_dict(cls, data, source) -> StudentMetrics:
        checked = _Checked(data, source)
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            task=checked.text("task", required=True), metrics=checked.scores("metrics", required=True),
            student=Measured.from_dict(checked.object("student", required=True), source, "student"),
            teacher=Measured.from_dict(checked.object("teacher", required=True), source, "teacher"),
            primary_metric=checked.text("primary_metric"), teacher_metrics=checked.scores("teacher_metrics"),
            best_epoch=checked.count("best_epoch"), history=checked.list("history"),
            train_seconds=checked.number("train_seconds"), train_rows=checked.count("train_rows"),
            init=checked.text("init"), genotype=checked.text("genotype"), flops_seq_len=checked.count("flops_seq_len"),
            latency_device=checked.text("latency_device"), latency_threads=checked.count("latency_threads"),
            speedup=checked.scores("speedup"), optimised=checked.object("optimised"),
            compression=checked.number("compression"), onnx=checked.object("onnx"),
            extra={k: v for k, v in data.items() if k not in known},
            config=checked.object("config"), provenance=checked.object("provenance"),
        )

    def to_dict(self) -> dict:
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                data.update(value)
            elif isinstance(value, Measured):
                data[f.name] = value.to_dict()
            elif value is not None or f.name in _WRITTEN_AS_NULL:
                data[f.name] = value
        return data


# Fields `student_record` writes even when null (a student without a genotype, a teacher without metrics).
_WRITTEN_AS_NULL = ("teacher_metrics", "genotype")
