"""`nas latency-table`: time the parts a compiled student is made of, on this device.

Every part is the module the student runs (searchspace/cell.py, searchspace/student.py), on
random inputs of the configured batch sizes and lengths, with all tokens real:

  * `cell_ms`: a `Cell` with no edges: starting each node's sum, the attentive output, the mask;
  * `ops_ms[op]`: a `Cell` with all six edges on `op`, less the empty cell, over six: the op
    with its share of the cell's edge loop and the addition into its node;
    both timed as a stack of `stack_cells` distinct cells run by `run_cells`, then divided by
    it, since a cell among others runs slower than one alone whose weights stay in cache;
  * `frame_ms` / `frame_pair_ms`: the student's whole forward pass less its one cell (the
    student's `without_cells()`): embeddings, the pair split, the head, the model wrapper;
  * `embedding_ms`, `head_ms`: the frame's two big parts on their own, for reading.

The parts are timed by the one timing loop (nas/deploy/timing.py): warm-up calls, then
`repeats` rounds of enough calls to last `min_repeat_ms` (so a 20 µs op is not lost in the
clock's resolution), the parts taking turns within each round so that a slow spell of a shared
machine hits them all alike, the clock read after a device synchronisation on a GPU; each part
keeps the median over rounds of its mean time per call.

On a CPU the table records the load average it was measured under and warns when other work
competes for the cores: measured beside two training jobs, a table predicts ~1.4x slow
(nas/deploy/machine_load.py).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from nas.base.errors import UserError
from nas.compute.acceleration import Captured
from nas.deploy.latency_table import LatencyEntry, LatencyTable, describe_device
from nas.deploy.machine_load import competes, cpu_load
from nas.deploy.serving import serving_mode
from nas.deploy.timing import interleaved_medians
from ops import OP_NAMES
from searchspace.cell import Cell, fixed_choices, run_cells
from searchspace.embedding_variants import TEACHER_WIDE
from searchspace.genotype import DEFAULT_EMBEDDINGS, EMBEDDING_VARIANTS, Genotype
from searchspace.student import compile_genotype
from searchspace.topology import CHAIN_EDGES

VOCAB_SIZE = 30522  # BERT's; a lookup's time hardly depends on the table's size
MAX_POSITIONS = 512
NUM_LABELS = 2


@dataclass(frozen=True)
class LatencyTableConfig:
    hidden_size: int = 128
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_lens: tuple[int, ...] = (32, 64, 128)
    warmup: int = 3  # untimed calls before each part
    repeats: int = 11  # rounds per part, the parts taking turns
    min_repeat_ms: float = 20.0  # a round runs the part as many times as it takes to last this long
    stack_cells: int = 4  # cells are timed in a stack of this many distinct cells, as a student runs them
    seed: int = 0  # random token ids and inputs
    # Time the parts through the serving path (nas/deploy/serving.py): on CUDA each part is captured as a
    # CUDA graph, as the deployed student runs, so a GPU budget means what serving does. On CPU
    # the serving path is eager, so this changes nothing there.
    optimised: bool = True
    # The student's word vectors (searchspace/embedding_variants.py), part of the frame. The frame
    # is timed as served, the word vectors folded (`for_inference`), so a projected variant's frame
    # costs what pca's does; before the fold its (teacher width x hidden) matmul per token took SST-2's
    # K=1 H=64 student from 46x faster than its teacher at batch 32 on CPU (pca) to 34x
    # (frozen_projection). `teacher_width`: the width of the teacher's word vectors, which
    # frozen_projection and wide_projection keep (0: none given).
    embeddings: str = DEFAULT_EMBEDDINGS
    teacher_width: int = 0

    def __post_init__(self):
        if self.embeddings not in EMBEDDING_VARIANTS:
            raise UserError(f"setting 'embeddings': unknown variant {self.embeddings!r} (known: "
                            f"{', '.join(EMBEDDING_VARIANTS)})")
        if self.teacher_width < 0 or self.embeddings in TEACHER_WIDE and self.teacher_width < 1:
            raise UserError(f"setting 'teacher_width': embeddings {self.embeddings!r} keep the teacher's word vectors; "
                            f"give their width (384 for MiniLM, 768 for BERT-base), got {self.teacher_width}")
        for name in ("hidden_size", "repeats", "stack_cells"):
            if getattr(self, name) < 1:
                raise UserError(f"setting {name!r}: expected 1 or more, got {getattr(self, name)}")
        if self.warmup < 0 or self.min_repeat_ms < 0:
            raise UserError("settings 'warmup' and 'min_repeat_ms' must be 0 or more")
        for name in ("batch_sizes", "seq_lens"):
            values = getattr(self, name)
            if not values or min(values) < 1 or len(set(values)) != len(values):
                raise UserError(f"setting {name!r}: expected distinct positive integers, got {list(values)}")
        if max(self.seq_lens) > MAX_POSITIONS:
            raise UserError(f"setting 'seq_lens': at most {MAX_POSITIONS} tokens (the student's positions)")


# ---------------------------------------------------------------- the parts


def uniform_edges(op: str) -> dict[tuple[int, int], tuple[str, ...]]:
    """The six edges of a chain-shaped cell (two per intermediate node), all with `op`."""
    return {edge: (op,) for edge in CHAIN_EDGES}


def _frame_student(config: LatencyTableConfig, pair: bool, device):
    """A one-cell student less its cell: its forward is everything but the cells."""

    genotype = Genotype(num_cells=1, hidden_size=config.hidden_size, cell=[[["identity", 0], ["identity", 1]]] * 3,
                        embeddings=config.embeddings)
    student = compile_genotype(genotype, vocab_size=VOCAB_SIZE, max_positions=MAX_POSITIONS,
                               num_labels=NUM_LABELS, pair=pair, teacher_width=config.teacher_width or None)
    return student.for_inference().without_cells().to(device).eval()  # served: the word vectors folded


def measure_entry(config: LatencyTableConfig, batch: int, seq_len: int, device, generator) -> LatencyEntry:
    """Every part at one batch size and length."""

    hidden = config.hidden_size
    x = torch.randn(batch, seq_len, hidden, generator=generator).to(device)  # (B, T, H)
    mask = torch.ones(batch, seq_len, dtype=torch.bool, device=device)  # (B, T): every token real
    ids = torch.randint(5, VOCAB_SIZE, (batch, seq_len), generator=generator).to(device)  # (B, T)
    token_types = torch.zeros_like(ids)
    token_types[:, seq_len // 2:] = 1  # the second half is sentence B
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": token_types}

    depth = config.stack_cells

    def stack_forward(edge_ops):
        # `depth` distinct cells run one after the other by the student's own `run_cells`: a lone
        # cell run again and again keeps its weights in cache and times about 5% faster at batch 1.
        # (run_cells' own couple of element-wise ops, in the frame too, add under 1% to a cell.)
        cells = nn.ModuleList(Cell(hidden, edge_ops) for _ in range(depth)).to(device).eval()
        choices = fixed_choices(edge_ops)  # what a compiled student computes on each edge
        return lambda: run_cells(cells, x, inputs["attention_mask"], None, False, choices, depth)

    single, pair = _frame_student(config, False, device), _frame_student(config, True, device)
    parts = {"cell": stack_forward({}), **{op: stack_forward(uniform_edges(op)) for op in OP_NAMES},
             "frame": lambda: single(**inputs), "frame_pair": lambda: pair(**inputs),
             "embedding": lambda: single.embeddings(ids), "head": lambda: single.head(x, mask)}
    mode = serving_mode(device) if config.optimised else "off"
    if mode != "off":
        parts = {name: _captured(forward, mode, name) for name, forward in parts.items()}
    ms = interleaved_medians(parts, device, warmup=config.warmup, repeats=config.repeats,
                             min_round_ms=config.min_repeat_ms)
    # A difference of medians can dip below zero for the cheapest ops when the machine is noisy.
    ops = {op: max(0.0, (ms[op] - ms["cell"]) / (depth * len(uniform_edges(op)))) for op in OP_NAMES}
    return LatencyEntry(frame_ms=ms["frame"], frame_pair_ms=ms["frame_pair"], embedding_ms=ms["embedding"],
                        head_ms=ms["head"], cell_ms=ms["cell"] / depth, ops_ms=MappingProxyType(ops))


def _captured(forward, mode: str, name: str):
    captured = Captured(forward, mode, f"latency part {name}")
    captured.keep_outputs = False  # timing drops the outputs: no copy out of the graph
    return captured


def build_latency_table(config: LatencyTableConfig, device, progress=None, warn=None) -> LatencyTable:
    """Measure every (batch size, length) of `config` on `device`; `progress(text)` is told each
    one, `warn(text)` (default: stderr) that other work competes for the CPU."""
    load = cpu_load() if device.type == "cpu" else None
    if competes(load, torch.get_num_threads()):
        (warn or (lambda text: print(text, file=sys.stderr)))(
            f"warning: the CPU is busy (load average {load:.1f} on {os.cpu_count()} cores) while a latency table is "
            "measured: its op times come out slow and a budget in milliseconds admits a smaller student; measure "
            "on a quiet machine (nas/deploy/machine_load.py)")
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    entries = {}
    for batch in config.batch_sizes:
        for seq_len in sorted(config.seq_lens):
            if progress:
                progress(f"batch {batch}, length {seq_len}")
            entries[(batch, seq_len)] = measure_entry(config, batch, seq_len, device, generator)
    method = {
        "clock": "time.perf_counter after a device synchronisation" if device.type == "cuda" else "time.perf_counter",
        "statistic": "median over rounds of the mean time per call, parts interleaved",
        "warmup": config.warmup, "repeats": config.repeats, "min_repeat_ms": config.min_repeat_ms,
        "stack_cells": config.stack_cells, "capture": serving_mode(device) if config.optimised else "off",
        "vocab_size": VOCAB_SIZE, "num_labels": NUM_LABELS, "seconds": round(time.perf_counter() - started, 1),
        **({"load_average": round(load, 2)} if load is not None else {}),
    }
    return LatencyTable(
        hidden_size=config.hidden_size, device=MappingProxyType(describe_device(device)),
        torch_version=torch.__version__, method=MappingProxyType(method),
        created=time.strftime("%Y-%m-%d %H:%M:%S %Z"), entries=MappingProxyType(entries),
        embeddings=config.embeddings, teacher_width=config.teacher_width if config.embeddings in TEACHER_WIDE else 0,
    )
