"""`--speedup X` (`latency_speedup`): the search times its teacher itself and searches under the
teacher's latency over X; the timing is kept so a resume keeps the budget."""

from __future__ import annotations

import json

import pytest
import torch

from nas.base.errors import UserError
from nas.data.tasks import get_task
from nas.deploy.machine_load import competes
from nas.train import speedup_budget
from nas.train.search import SearchConfig
from nas.train.speedup_budget import TEACHER_LATENCY, time_teacher, with_speedup_budget
from searchspace.genotype import Genotype
from tests.test_shape_trials import hand_tables

CPU = torch.device("cpu")


def test_the_teacher_is_timed_at_the_budget_batch_and_length(tiny_teacher):
    ms = time_teacher(tiny_teacher, get_task("sst2"), CPU, batch_size=4, seq_len=16)
    assert isinstance(ms, float) and ms > 0


def test_a_length_beyond_the_teacher_positions_is_a_clear_error(tiny_teacher):
    with pytest.raises(UserError, match="'latency_seq_len' \\(100000\\) is longer than the teacher's"):
        time_teacher(tiny_teacher, get_task("sst2"), CPU, batch_size=1, seq_len=100000)


def test_the_budget_is_the_teacher_latency_over_the_speedup_and_a_kept_timing_is_reused(tmp_path, monkeypatch):
    timings = iter([300.0, 90.0])
    monkeypatch.setattr(speedup_budget, "time_teacher", lambda *args: next(timings))
    config = SearchConfig(latency_speedup=4, latency_batch_size=32, latency_seq_len=44)
    resolved, record = with_speedup_budget(config, "teacher", get_task("sst2"), tmp_path, CPU)
    assert resolved.latency_budget_ms == 75.0 and resolved.latency_speedup == 0
    assert record["teacher_ms"] == 300.0 and record["budget_ms"] == 75.0 and record["speedup"] == 4
    speedup_budget.keep(record, tmp_path)
    # A resumed search reads the kept timing (the next timing, 90 ms, is not taken) ...
    again, _ = with_speedup_budget(config, "teacher", get_task("sst2"), tmp_path, CPU)
    assert again.to_dict() == resolved.to_dict()
    # ... unless it was taken at another batch size: then the teacher is timed again.
    other, record = with_speedup_budget(SearchConfig(latency_speedup=4, latency_batch_size=1, latency_seq_len=44),
                                        "teacher", get_task("sst2"), tmp_path, CPU)
    assert record["teacher_ms"] == 90.0 and other.latency_budget_ms == 22.5


def test_no_speedup_leaves_the_config_alone(tmp_path):
    config = SearchConfig(latency_budget_ms=12.0)
    assert with_speedup_budget(config, "teacher", get_task("sst2"), tmp_path, CPU) == (config, None)


def test_an_unreadable_kept_timing_is_named(tmp_path):
    (tmp_path / TEACHER_LATENCY).write_text("{not json")
    with pytest.raises(UserError, match=f"{TEACHER_LATENCY}: not valid JSON"):
        with_speedup_budget(SearchConfig(latency_speedup=2), "teacher", get_task("sst2"), tmp_path, CPU)


@pytest.mark.parametrize("settings, message", [
    ({"latency_speedup": 5, "latency_budget_ms": 100}, "give one budget"),
    ({"latency_speedup": -1}, "give one budget"),
])
def test_bad_speedup_settings_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        SearchConfig(**settings)


def test_a_budget_choice_accepts_a_speedup_instead_of_milliseconds():
    assert SearchConfig(latency_speedup=5, depth_choice="budget").depth_choice == "budget"
    with pytest.raises(UserError, match="--speedup X"):
        SearchConfig(depth_choice="budget")


def test_a_search_with_speedup_records_the_teacher_timing_and_fits_the_budget(prepared, tiny_glue, tmp_path, monkeypatch):
    from nas.commands.cli import main

    # The hand tables' times are made up, so is the teacher's: 300 ms over 3 is the 100 ms budget
    # the hand tables are sized for (tests/test_shape_trials.py).
    monkeypatch.setattr(speedup_budget, "time_teacher", lambda *args: 300.0)
    teacher, knowledge = prepared["sst2"]
    out = tmp_path / "search"
    hand_tables(out)
    assert main(["search", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher),
                 "--knowledge", str(knowledge), "--out", str(out), "--device", "cpu", "--epochs", "1", "--seed", "0",
                 "--set", "hidden_size=16", "--set", "widths=8,16", "--set", "max_cells=3", "--set", "warmup_epochs=0",
                 "--speedup", "3", "--set", "depth_choice=budget"]) == 0
    arch = Genotype.load(out / "arch.json")
    assert arch.extra["latency_budget_ms"] == 100.0
    assert arch.extra["latency_speedup"]["teacher_ms"] == 300.0 and arch.extra["latency_speedup"]["speedup"] == 3
    assert arch.costs["predicted_latency_ms"] <= 100.0
    kept = json.loads((out / TEACHER_LATENCY).read_text())
    assert kept["teacher_ms"] == 300.0 and kept["batch_size"] == 1 and kept["seq_len"] == 64


@pytest.mark.parametrize("load, threads, cores, busy", [
    (1.0, 1, 2, False),  # this process alone
    (1.0, 2, 2, False),  # alone, on every core
    (3.0, 1, 2, True),   # two other jobs on a 2-core machine: the teacher is time-sliced
    (2.0, 2, 2, True),   # one other job where the timing wants both cores
    (1.4, 1, 1, False),  # a blip
    (None, 1, 2, False),  # no load average on this platform
])
def test_other_work_competes_when_the_load_exceeds_the_free_cores(load, threads, cores, busy):
    assert competes(load, threads, cores) is busy


@pytest.mark.parametrize("load, warned", [(1.0, False), (10000.0, True)])
def test_a_teacher_timed_on_a_busy_cpu_is_warned_and_the_load_kept(load, warned, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speedup_budget, "time_teacher", lambda *args: 300.0)
    monkeypatch.setattr(speedup_budget, "cpu_load", lambda: load)
    _, record = with_speedup_budget(SearchConfig(latency_speedup=4), "teacher", get_task("sst2"), tmp_path, CPU)
    assert record["load_average"] == load and record["budget_ms"] == 75.0
    err = capsys.readouterr().err
    assert ("warning: the CPU is busy" in err and "quiet machine" in err and len(err.splitlines()) == 1) is warned
    assert warned or err == ""
