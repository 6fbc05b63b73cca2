"""Whether other work competes for the CPU's cores while something is timed on it.

A busy CPU does not slow every timing alike. With more runnable threads than cores the kernel
time-slices them: a call shorter than a slice (a latency table's ops, a few milliseconds) mostly
runs whole at full speed, while one that lasts hundreds of milliseconds (a teacher's batch of 32)
is preempted again and again. On this project's 2-core CPU, with two training jobs running, a
search timed the SST-2 teacher at 1,121 ms (656 ms alone) while its latency tables came out as on
a quiet machine: "20x faster than the teacher" became a 56 ms budget instead of 33, and the
search derived a student 15x faster. Timing both in one process, minutes apart, does not cancel
that; only a quiet machine, or a budget in milliseconds timed on one, does.
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
