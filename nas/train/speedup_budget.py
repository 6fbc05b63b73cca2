"""`latency_speedup`: a search's latency budget given as a speed-up over its teacher, the teacher
timed by the search itself.

A budget in milliseconds is only as true as the machine was quiet when it was timed. On this
project's shared CPU the SST-2 teacher timed at 1,010 ms for a batch of 32 with other jobs
running and at 656 ms alone; the student a search derived for the first "5x" budget ran 3.4x
faster than the teacher. Timed here, in the search's own process, on its device and threads,
minutes before the search measures its latency tables, the teacher and the tables see the same
machine, and the budget means what the user asked for: the teacher's latency over X. Not on a
CPU with more runnable threads than cores, though: time-slicing slows the teacher's long forward
passes more than the tables' short ops (nas/deploy/machine_load.py). The search then warns,
and the kept timing records the load average it was taken under.

The teacher is timed on a batch of `latency_batch_size` rows of `latency_seq_len` tokens (all
real tokens: its attention costs the same whatever their ids) with the one timing loop
(nas.deploy.latency). The timing is kept in the run folder, so a resumed search keeps its budget
and compares equal settings.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.safe_files import read_json
from nas.compute import distributed
from nas.data.models import load_classifier
from nas.deploy.costs import dummy_inputs
from nas.deploy.latency import compare_latency
from nas.deploy.machine_load import competes, cpu_load

TEACHER_LATENCY = "teacher_latency.json"


def with_speedup_budget(config, teacher_dir, task, out: Path, device, processes=None):
    """(`config` with `latency_budget_ms` set from the teacher's latency and `latency_speedup`
    cleared, the timing record), or (`config`, None) when no speed-up is asked for.

    The record is the kept one in `out` when it was timed at the same batch size, length, device
    and threads; otherwise the teacher is timed now (under torchrun by rank 0, for all)."""
    if config.latency_speedup <= 0:
        return config, None
    wanted = {"batch_size": config.latency_batch_size, "seq_len": config.latency_seq_len, "device": device.type,
              "threads": torch.get_num_threads()}
    record = _kept(Path(out) / TEACHER_LATENCY, wanted)
    if record is None:
        load = cpu_load() if device.type == "cpu" else None
        timed = time_teacher(teacher_dir, task, device, config.latency_batch_size, config.latency_seq_len) \
            if distributed.is_main(processes) else None
        record = {**wanted, "teacher_ms": distributed.broadcast_from_main(timed, processes)}
        if load is not None:
            record["load_average"] = round(load, 2)  # what the machine was doing, for whoever reads the budget
        if competes(load, wanted["threads"]) and distributed.is_main(processes):
            print(f"warning: the CPU is busy (load average {load:.1f} on {os.cpu_count()} cores) while the search "
                  f"times its teacher ({record['teacher_ms']:.1f} ms): time-slicing slows the teacher's long forward "
                  "passes more than the short ops of the latency tables, so the budget comes out loose; search on a "
                  "quiet machine (nas/deploy/machine_load.py)", file=sys.stderr)
    budget = round(record["teacher_ms"] / config.latency_speedup, 3)
    record = {**record, "speedup": config.latency_speedup, "budget_ms": budget}
    return dataclasses.replace(config, latency_budget_ms=budget, latency_speedup=0.0), record


def keep(record: dict | None, out: Path) -> None:
    """Write the timing record into the run folder (rank 0 only)."""
    if record is not None:
        atomic.write_json(Path(out) / TEACHER_LATENCY, record)


def time_teacher(teacher_dir, task, device, batch_size: int, seq_len: int) -> float:
    """The teacher's median milliseconds per forward pass of `batch_size` x `seq_len` tokens."""
    forward, inputs = timed_teacher(teacher_dir, task, device, batch_size, seq_len)
    timed = compare_latency({"teacher": forward}, {batch_size: inputs}, device)
    return timed["teacher"][f"batch_{batch_size}_ms"]


def timed_teacher(teacher_dir, task, device, batch_size: int, seq_len: int) -> tuple:
    """(the teacher's forward as the budget times it, its inputs: `batch_size` rows of `seq_len`
    real tokens), for the one timing loop; the measured check of the derived student
    (nas/train/latency_check.py) times the student beside this same forward."""
    teacher = load_classifier(str(teacher_dir), task, new_head=False, sdpa=True).to(device).eval()
    positions = getattr(teacher.config, "max_position_embeddings", seq_len)
    if seq_len > positions:
        raise UserError(f"setting 'latency_seq_len' ({seq_len}) is longer than the teacher's {positions} positions")
    inputs = dummy_inputs(batch_size, seq_len, task.is_pair, teacher.config.vocab_size)
    return (lambda batch: teacher(**batch).logits), inputs


def _kept(path: Path, wanted: dict) -> dict | None:
    """The timing kept in a run folder, if it was taken the way this search would take it."""
    if not path.is_file():
        return None
    record = read_json(path, "the search's teacher timing (JSON)")
    fits = isinstance(record, dict) and all(record.get(key) == value for key, value in wanted.items()) \
        and isinstance(record.get("teacher_ms"), (int, float)) and record["teacher_ms"] > 0
    return record if fits else None
