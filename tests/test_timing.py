"""The one timing loop (nas/deploy/timing.py), on a fake clock that only the timed callables move."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nas.deploy import timing
from nas.deploy.latency import compare_latency
from nas.deploy.timing import interleaved_medians


class FakeClock:
    """Seconds that pass only when a fake callable says so; every call is logged by name."""

    def __init__(self):
        self.now, self.log = 0.0, []

    def __call__(self) -> float:
        return self.now

    def callable(self, name: str, ms, slow_calls=()):
        """A callable that takes `ms` milliseconds (`ms(n)` on its n-th call, from 0), and ten
        times longer on the calls numbered in `slow_calls`."""
        count = [0]

        def call():
            n = count[0]
            count[0] += 1
            self.log.append(name)
            took = ms(n) if callable(ms) else ms
            self.now += took * (10 if n in slow_calls else 1) / 1000
        return call


def test_each_callable_gets_the_median_of_its_rounds_and_a_slow_round_is_dropped():
    clock = FakeClock()
    # Calls 0..1 are the warm-up; call 4 (the third timed round) falls on an interruption.
    calls = {"a": clock.callable("a", 2.0, slow_calls={4}), "b": clock.callable("b", 5.0)}
    ms = interleaved_medians(calls, warmup=2, repeats=5, clock=clock)
    assert ms == pytest.approx({"a": 2.0, "b": 5.0})


def test_warm_up_comes_first_then_the_callables_take_turns():
    clock = FakeClock()
    calls = {"a": clock.callable("a", 1.0), "b": clock.callable("b", 1.0)}
    interleaved_medians(calls, warmup=2, repeats=3, clock=clock)
    assert clock.log == ["a", "a", "b", "b"] + ["a", "b"] * 3


def test_warm_up_calls_are_not_timed():
    clock = FakeClock()
    # The first two calls are slow (compilation, allocation); only later calls count.
    calls = {"a": clock.callable("a", lambda n: 100.0 if n < 2 else 3.0)}
    assert interleaved_medians(calls, warmup=2, repeats=3, clock=clock)["a"] == pytest.approx(3.0)


def test_a_primed_round_makes_one_untimed_call_before_the_timed_one():
    clock = FakeClock()
    # Every even call (the priming one) is slow: a cold cache. Only the warm odd calls are timed.
    calls = {"a": clock.callable("a", lambda n: 9.0 if n % 2 == 0 else 1.0),
             "b": clock.callable("b", lambda n: 9.0 if n % 2 == 0 else 4.0)}
    ms = interleaved_medians(calls, warmup=0, repeats=3, prime=True, clock=clock)
    assert ms == pytest.approx({"a": 1.0, "b": 4.0})
    assert clock.log == ["a", "a", "b", "b"] * 3


def test_a_round_lasts_min_round_ms_and_keeps_the_mean_call():
    clock = FakeClock()
    # 0.5 ms a call, one call in each round of 20 ten times slower: the round's mean counts it.
    calls = {"a": clock.callable("a", 0.5, slow_calls=set(range(1, 1 + 20 * 3, 20)))}
    ms = interleaved_medians(calls, warmup=0, repeats=3, min_round_ms=10.0, clock=clock)
    assert len(clock.log) == 1 + 3 * 20  # one calibrating call, then rounds of 10 ms / 0.5 ms calls
    assert ms["a"] == pytest.approx((19 * 0.5 + 5.0) / 20)


def test_on_cuda_the_device_is_synchronised_before_each_clock_read(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing.torch.cuda, "synchronize", lambda device=None: clock.log.append("sync"))
    calls = {"a": clock.callable("a", 1.0)}
    interleaved_medians(calls, torch.device("cuda"), warmup=1, repeats=2, clock=clock)
    assert clock.log == ["a"] + ["sync", "a", "sync"] * 2
    clock.log.clear()
    interleaved_medians(calls, torch.device("cpu"), warmup=1, repeats=2, clock=clock)
    assert "sync" not in clock.log


def test_no_rounds_is_refused():
    with pytest.raises(ValueError, match="repeats"):
        interleaved_medians({"a": lambda: None}, repeats=0)


def test_compare_latency_reports_rounded_medians_per_batch_size(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=clock))  # the loop's clock, and only its
    student, teacher = clock.callable("student", 1.23456), clock.callable("teacher", 7.0)
    inputs = {1: {"input_ids": torch.ones(1, 4, dtype=torch.long)}, 32: {"input_ids": torch.ones(32, 4, dtype=torch.long)}}
    result = compare_latency({"student": lambda batch: student(), "teacher": lambda batch: teacher()}, inputs,
                             torch.device("cpu"), warmup=1, repeats=3)
    assert result == {"student": {"batch_1_ms": 1.235, "batch_32_ms": 1.235},
                      "teacher": {"batch_1_ms": 7.0, "batch_32_ms": 7.0}}
    assert clock.log[:2] == ["student", "teacher"] and clock.log.count("student") == 2 * (1 + 3)
