"""The one timing loop: every latency this project reports is measured by `interleaved_medians`.

`metrics.json`'s student and teacher latencies (nas/deploy/latency.py, `compare_latency`), the
parts of a latency table (nas/deploy/latency_measure.py) and the experiments' measurements
(experiments/latency_predictor.py, experiments/serving_latency.py) all time their callables
here, so "median ms" means one thing everywhere:

* warm-up: `warmup` untimed calls of each callable first (allocation, caches, graph capture);
* rounds: in each of `repeats` rounds every callable runs in turn, so that a slow spell of a
  shared machine lands on all of them alike rather than on whichever happened to run then;
* a round times `calls` back-to-back calls and keeps their mean: one call, or, with
  `min_round_ms`, as many as it takes to last that long (one timed call after the warm-up
  decides how many), so a 20 µs op is not lost in the clock's resolution. Means, not the median
  call, because means add up: a sum of parts then pays for the small interruptions a whole
  forward pass runs into (on this project's shared CPU, medians of single 50 µs calls made
  the latency table's batch-1 predictions about 5% lower);
* on CUDA the device is synchronised before each clock read, so queued kernels are counted;
* the result is the median over rounds, which drops the rounds a long interruption fell on.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping

import torch


def synchronise(device) -> None:
    """Wait for the device's queued work, so a clock read afterwards counts it (no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _round_ms(call: Callable[[], object], calls: int, device, clock) -> float:
    """Mean milliseconds per call over `calls` back-to-back calls of `call()`."""
    synchronise(device)
    began = clock()
    for _ in range(calls):
        call()
    synchronise(device)
    return (clock() - began) * 1000 / calls


@torch.no_grad()
def interleaved_medians(calls: Mapping[str, Callable[[], object]], device=None, *, warmup: int = 5,
                        repeats: int = 20, min_round_ms: float = 0.0, prime: bool = False,
                        clock: Callable[[], float] | None = None) -> dict[str, float]:
    """{name: median over `repeats` rounds of the mean milliseconds per call of `calls[name]()`}.

    `prime=True` makes one untimed call just before each of a callable's timed rounds, so the
    timed calls find its weights in cache, as a model serving on its own does, rather than
    evicted by the other callables' turns. `clock` (seconds; `time.perf_counter` by default) is
    for tests.
    """
    clock = clock or time.perf_counter
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, got {repeats}")
    per_round = {}
    for name, call in calls.items():
        for _ in range(warmup):
            call()
        per_round[name] = 1
        if min_round_ms > 0:
            once = _round_ms(call, 1, device, clock)
            per_round[name] = max(1, math.ceil(min_round_ms / max(once, 1e-3)))
    samples = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            if prime:
                call()
            samples[name].append(_round_ms(call, per_round[name], device, clock))
    return {name: statistics.median(values) for name, values in samples.items()}
