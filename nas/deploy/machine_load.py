"""Whether other work competes for the CPU's cores while something is timed on it.

A busy CPU slows every timing, and not alike. With more runnable threads than cores the kernel
time-slices them: a call shorter than a slice (a latency table's ops, a few milliseconds) often
runs whole, while one that lasts hundreds of milliseconds (a teacher's batch of 32) is preempted
again and again. On this project's 2-core CPU, beside two training jobs, a search timed the SST-2
teacher at 1,121 ms (656 ms alone, 1.7x) and its latency tables predicted its K=1 H=64 student
at 22-23 ms (16.6 ms from tables measured alone, 1.4x). As a speed-up over the teacher timed then,
"20x faster" became a 56 ms budget instead of 33 and the search derived a student 15x faster; as
milliseconds timed on a quiet machine, tables measured so admitted one cell where two fit.
Timing both in one process, minutes apart, does not cancel that; only a quiet machine does.
"""

from __future__ import annotations

import os


def cpu_load() -> float | None:
    """The 1-minute load average (runnable threads, this process's included), None where the
    platform has none (Windows)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def competes(load: float | None, threads: int, cores: int | None = None) -> bool:
    """Whether `load` (cpu_load's) says other work would share the cores with `threads` timing
    threads. This process's own main thread is in the load while it prepares (one runnable
    thread), and half a thread of slack keeps a blip from counting."""
    if load is None:
        return False
    cores = cores or os.cpu_count() or 1
    others = max(0.0, load - 1.0)
    return others + threads > cores + 0.5
