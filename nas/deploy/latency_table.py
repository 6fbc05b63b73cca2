"""Latency lookup tables: what each part of a compiled student costs on one device, and the
latency of a genotype predicted from them.

A compiled student (searchspace/student.py) runs the embeddings, splits the input (two masked
copies for a sentence pair), runs K identical cells and pools into the classifier head. A cell
computes each op of its six edges, sums the in-edges of each intermediate node, then takes the
attentive sum of the nodes and masks it. So, for batch B and length T,

    latency(genotype) = frame(B, T, pair) + K · (cell(B, T) + Σ_edges op(B, T))

with `frame` the forward pass without cells (embeddings, split, head, the model wrapper),
`cell` a cell's own overhead (a cell with no edges) and `op` one op on one edge, summed into its
node, as measured by `nas.deploy.latency_measure`. The table is JSON:

    {"schema_version": 1, "kind": "adabert-latency-table", "hidden_size": 128,
     ["embeddings": "frozen_projection", "teacher_width": 384,]  (absent: pca)
     "device": {"type": "cpu", "name": "AMD EPYC", "threads": 1}, "torch": "2.13.0", ...,
     "entries": [{"batch_size": 1, "seq_len": 64, "frame_ms": .., "frame_pair_ms": ..,
                  "embedding_ms": .., "head_ms": .., "cell_ms": .., "ops_ms": {"cnn3": .., ...}}]}

Batch sizes must have been measured; sequence lengths between two measured ones are
interpolated linearly (every part is close to linear in T), never extrapolated.
"""

from __future__ import annotations

import bisect
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.safe_files import key_name, read_json, show_value
from searchspace.genotype import DEFAULT_EMBEDDINGS, EMBEDDING_VARIANTS
from searchspace.topology import KEPT_EDGES

SCHEMA_VERSION = 1
KIND = "adabert-latency-table"
ENTRY_TIMES = ("frame_ms", "frame_pair_ms", "embedding_ms", "head_ms", "cell_ms")
EDGES_PER_CELL = KEPT_EDGES  # the edges a derived cell runs (searchspace/topology.py)


@dataclass(frozen=True)
class LatencyEntry:
    """Median milliseconds of a student's parts at one batch size and sequence length."""

    frame_ms: float  # a forward pass without cells, single sentence: embeddings, head, wrapper
    frame_pair_ms: float  # the same for sentence pairs, whose input is split into two masked copies
    embedding_ms: float  # part of the frame, kept for reading
    head_ms: float  # part of the frame, kept for reading
    cell_ms: float  # a cell with no edges: the node sums' start, the attentive output, the mask
    ops_ms: Mapping[str, float] = field(hash=False)  # one op on one edge, added into its node

    def blend(self, other: LatencyEntry, share: float) -> LatencyEntry:
        """(1 - share) · self + share · other, part by part (linear interpolation)."""
        mix = lambda a, b: (1.0 - share) * a + share * b  # noqa: E731
        times = {name: mix(getattr(self, name), getattr(other, name)) for name in ENTRY_TIMES}
        ops = {op: mix(ms, other.ops_ms[op]) for op, ms in self.ops_ms.items()}
        return LatencyEntry(**times, ops_ms=MappingProxyType(ops))


@dataclass(frozen=True)
class LatencyTable:
    hidden_size: int
    device: Mapping[str, Any] = field(hash=False)  # type ("cpu"/"cuda"), name, threads
    torch_version: str
    method: Mapping[str, Any] = field(hash=False)  # warm-up, repeats, clock, statistic
    created: str
    entries: Mapping[tuple[int, int], LatencyEntry] = field(hash=False)  # (batch, seq_len) -> entry
    source: str = "latency table"  # where it was read from, for messages
    # The word-vector variant the frame was timed with (absent from the file: pca, as every table
    # before the field) and, for one as wide as the teacher's, the teacher's width.
    embeddings: str = DEFAULT_EMBEDDINGS
    teacher_width: int = 0

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(next(iter(self.entries.values())).ops_ms)

    def seq_lens(self, batch_size: int) -> list[int]:
        return sorted(t for b, t in self.entries if b == batch_size)

    def entry(self, batch_size: int, seq_len: int) -> LatencyEntry:
        """The entry at (batch_size, seq_len), interpolated between the two nearest measured lengths."""
        lengths = self.seq_lens(batch_size)
        if not lengths:
            measured = sorted({b for b, _ in self.entries})
            raise UserError(f"{self.source}: batch size {batch_size} was not measured (measured: "
                            f"{', '.join(map(str, measured))}); build a table with it (--set batch_sizes=...)")
        if seq_len in lengths:
            return self.entries[(batch_size, seq_len)]
        if not lengths[0] < seq_len < lengths[-1]:
            raise UserError(f"{self.source}: sequence length {seq_len} is outside the measured lengths "
                            f"{lengths[0]}..{lengths[-1]} at batch size {batch_size} (lengths are interpolated, "
                            "not extrapolated); build a table with it (--set seq_lens=...)")
        above = bisect.bisect(lengths, seq_len)
        low, high = lengths[above - 1], lengths[above]
        return self.entries[(batch_size, low)].blend(self.entries[(batch_size, high)], (seq_len - low) / (high - low))

    def to_dict(self) -> dict:
        entries = [
            {"batch_size": b, "seq_len": t, **{name: round(getattr(e, name), 6) for name in ENTRY_TIMES},
             "ops_ms": {op: round(ms, 6) for op, ms in e.ops_ms.items()}}
            for (b, t), e in sorted(self.entries.items())
        ]
        embeddings = {} if self.embeddings == DEFAULT_EMBEDDINGS else \
            {"embeddings": self.embeddings, **({"teacher_width": self.teacher_width} if self.teacher_width else {})}
        return {"schema_version": SCHEMA_VERSION, "kind": KIND, "hidden_size": self.hidden_size, **embeddings,
                "device": dict(self.device), "torch": self.torch_version, "method": dict(self.method),
                "created": self.created, "entries": entries}


# ---------------------------------------------------------------- prediction


def cell_latency_ms(entry: LatencyEntry, genotype, source: str = "latency table") -> float:
    """One cell of `genotype`: the cell's overhead plus each of its six edges' op."""
    total = entry.cell_ms
    for _, edge in genotype.edges():
        if edge.op not in entry.ops_ms:
            raise UserError(f"{source}: no timing for op {edge.op!r} (the table has {', '.join(entry.ops_ms)})")
        total += entry.ops_ms[edge.op]
    return total


def predict_latency_ms(table: LatencyTable, genotype, batch_size: int, seq_len: int, pair: bool = False) -> float:
    """Predicted median latency (ms) of the compiled student of `genotype` on the table's device:
    frame + K · (cell overhead + Σ of its six edges' ops), at a measured batch size and a sequence
    length within the measured range (interpolated between measured lengths)."""
    if genotype.hidden_size != table.hidden_size:
        raise UserError(f"{table.source}: hidden_size {table.hidden_size} differs from the genotype's "
                        f"{genotype.hidden_size}")
    if genotype.embedding_variant != table.embeddings:
        raise UserError(f"{table.source}: embeddings {table.embeddings!r} differ from the genotype's "
                        f"{genotype.embedding_variant!r} (the frame includes the word vectors)")
    entry = table.entry(batch_size, seq_len)
    frame = entry.frame_pair_ms if pair else entry.frame_ms
    return frame + genotype.num_cells * cell_latency_ms(entry, genotype, table.source)


# ---------------------------------------------------------------- devices


def describe_device(device) -> dict:
    """What a latency depends on besides the model: device type and name, and CPU threads."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    else:
        name = cpu_model()
    return {"type": device.type, "name": name, "threads": torch.get_num_threads()}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def check_compatible(table: LatencyTable, device, hidden_size: int, warn=None,
                     embeddings: str = DEFAULT_EMBEDDINGS) -> None:
    """Refuse a table made on another device type, at another hidden size or with other word
    vectors; warn (on stderr) when the device name or the thread count differs, since the numbers
    may then be off."""
    if table.device["type"] != device.type:
        raise UserError(f"{table.source}: device.type is {table.device['type']!r} but this run is on "
                        f"{device.type!r}; measure a table here with `nas latency-table --device {device.type}`")
    if table.hidden_size != hidden_size:
        raise UserError(f"{table.source}: hidden_size is {table.hidden_size} but this run uses {hidden_size}")
    if table.embeddings != embeddings:
        raise UserError(f"{table.source}: embeddings are {table.embeddings!r} but this run uses {embeddings!r}; "
                        f"measure a table with `nas latency-table --set embeddings={embeddings}`")
    warn = warn or (lambda text: print(text, file=sys.stderr))
    for key, (theirs, ours) in device_differences(table, device, ("name", "threads")).items():
        warn(f"warning: {table.source}: device.{key} is {theirs!r} but this machine has {ours!r}; predicted "
             "latencies may be off")


def device_differences(table: LatencyTable, device, keys=("type", "name", "threads")) -> dict:
    """{key: (the table's, this machine's)} for each of `keys` of `describe_device` where the
    machine the table was timed on differs from `device` as this process runs it."""
    here = describe_device(device)
    return {key: (table.device.get(key), here[key]) for key in keys if table.device.get(key) != here[key]}


# ---------------------------------------------------------------- files


def save_latency_table(table: LatencyTable, path) -> Path:
    path = Path(path)
    atomic.write_json(path, table.to_dict())
    return path


def load_latency_table(path) -> LatencyTable:
    """Read and check a table; every problem is one UserError line naming the file and field."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise UserError(f"{source}: latency table not found")
    return table_from_dict(read_json(path, "a latency table (JSON)"), source)


def table_from_dict(data, source: str = "latency table") -> LatencyTable:
    def fail(name, reason):
        raise UserError(f"{source}: {name}: {reason}")

    if not isinstance(data, dict):
        fail("top level", "expected a JSON object")
    if data.get("kind") != KIND:
        fail("kind", f"expected {KIND!r}, got {show_value(data.get('kind'))}; is this a latency table?")
    if data.get("schema_version") != SCHEMA_VERSION:
        fail("schema_version", f"expected {SCHEMA_VERSION}, got {show_value(data.get('schema_version'))}")
    hidden = data.get("hidden_size")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        fail("hidden_size", f"expected a positive integer, got {show_value(hidden)}")
    embeddings = data.get("embeddings", DEFAULT_EMBEDDINGS)
    if embeddings not in EMBEDDING_VARIANTS:
        fail("embeddings", f"expected one of {', '.join(EMBEDDING_VARIANTS)}, got {show_value(embeddings)}")
    teacher_width = data.get("teacher_width", 0)
    if isinstance(teacher_width, bool) or not isinstance(teacher_width, int) or teacher_width < 0:
        fail("teacher_width", f"expected a width (an integer >= 0), got {show_value(teacher_width)}")
    device = data.get("device")
    if not isinstance(device, dict) or device.get("type") not in ("cpu", "cuda"):
        fail("device.type", "expected 'cpu' or 'cuda'")
    method = data.get("method")
    if method is not None and not isinstance(method, dict):
        fail("method", "expected an object")
    entries_data = data.get("entries")
    if not isinstance(entries_data, list) or not entries_data:
        fail("entries", "expected a non-empty list")
    entries = {}
    for i, item in enumerate(entries_data):
        name = f"entries[{i}]"
        if not isinstance(item, dict):
            fail(name, "expected an object")
        key = tuple(_count(item.get(k), f"{name}.{k}", fail) for k in ("batch_size", "seq_len"))
        if key in entries:
            fail(name, f"batch_size {key[0]}, seq_len {key[1]} is listed twice")
        times = {k: _ms(item.get(k), f"{name}.{k}", fail) for k in ENTRY_TIMES}
        ops = item.get("ops_ms")
        if not isinstance(ops, dict) or not ops:
            fail(f"{name}.ops_ms", "expected an object of op name -> milliseconds")
        ops = {op: _ms(ms, f"{name}.ops_ms.{key_name(op)}", fail) for op, ms in ops.items()}
        if entries and set(ops) != set(next(iter(entries.values())).ops_ms):
            fail(f"{name}.ops_ms", "holds other ops than entries[0]")
        entries[key] = LatencyEntry(**times, ops_ms=MappingProxyType(ops))
    return LatencyTable(
        hidden_size=hidden, device=MappingProxyType(dict(device)), torch_version=str(data.get("torch", "")),
        method=MappingProxyType(dict(method or {})), created=str(data.get("created", "")),
        entries=MappingProxyType(entries), source=source, embeddings=embeddings, teacher_width=teacher_width,
    )


def _count(value, name, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(name, f"expected a positive integer, got {show_value(value)}")
    return value


def _ms(value, name, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        fail(name, f"expected milliseconds (a number >= 0), got {show_value(value)}")
    return float(value)
