"""`latency_check=measure`: the derived student timed whole and stepped down while it misses the
budget. The stepping is checked against hand tables with made-up timings (the answers worked out
in the comments), over one width and over searched widths; the wiring through `nas search` with a
hand table far faster than any real student, so that the real clock must overrule it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nas.train.latency_budget import SearchLatency
from nas.train.latency_check import fit_measured
from nas.train.search import SearchConfig
from nas.deploy.latency_table import table_from_dict
from ops import ADABERT_OPS
from searchspace.genotype import Genotype
from tests.test_latency_table import EXAMPLE, hand_table, search_args
from tests.test_width import scaled_hand_table, width_latency


def one_width(budget: float, margin: float = 0.0) -> SearchLatency:
    """The hand table (tests/test_latency_table.py): EXAMPLE (K=3) 35.5 ms, K=2 24 ms, K=1 12.5 ms."""
    config = SearchConfig(hidden_size=16, max_cells=3, latency_budget_ms=budget, latency_margin=margin)
    return SearchLatency(table_from_dict(hand_table()), config, False, ADABERT_OPS, torch.device("cpu"))


LATENCIES = {"one width": one_width, "searched widths": width_latency}


def slower_by(latency, factor: float, teacher_ms: float | None = None):
    """A clock on which every student takes `factor` times its prediction (and a teacher `teacher_ms`)."""
    seen = []

    def measure(genotype):
        seen.append(genotype)
        return {"student_ms": latency.predict(genotype) * factor, **({"teacher_ms": teacher_ms} if teacher_ms else {})}
    return measure, seen


def cheapest(latency, genotype):
    while (step := latency.cheaper(genotype)) is not None:
        genotype = step
    return genotype


@pytest.mark.parametrize("name", LATENCIES)
def test_a_student_the_table_fits_but_the_clock_does_not_loses_a_cell(name):
    latency = LATENCIES[name](40.0)
    # Predicted 35.5 ms fits 40; timed at 1.2x it is 42.6 ms, over. The ratio calibrates the next
    # step: K=2's 24 ms x 1.2 = 28.8 ms fits, so K=2 is timed next, and meets the budget.
    measure, seen = slower_by(latency, 1.2)
    chosen, record = fit_measured(EXAMPLE, latency, measure, say=lambda text: None)
    assert chosen == dataclasses.replace(EXAMPLE, num_cells=2) and [g.num_cells for g in seen] == [3, 2]
    assert record["met"] is True and [t["met"] for t in record["timings"]] == [False, True]
    assert record["timings"][0]["student_ms"] == pytest.approx(42.6) and record["timings"][0]["predicted_ms"] == 35.5


@pytest.mark.parametrize("name", LATENCIES)
def test_a_speedup_is_checked_against_the_teacher_timed_beside_the_student(name):
    latency = LATENCIES[name](40.0)  # 10x of a 400 ms teacher
    measure, seen = slower_by(latency, 1.2, teacher_ms=400.0)
    chosen, record = fit_measured(EXAMPLE, latency, measure, speedup=10.0, say=lambda text: None)
    # K=3: 400 / 42.6 = 9.39x misses 10x; K=2: 400 / 28.8 = 13.9x meets it.
    assert chosen.num_cells == 2 and record["met"] is True
    assert [t["speedup"] for t in record["timings"]] == [pytest.approx(9.39, abs=0.01), pytest.approx(13.889, abs=0.001)]
    # The same clock with a teacher twice as fast: K=2 at 6.9x misses, and the calibrated step is
    # K=1 (12.5 ms x 1.2 = 15 ms <= 200 / 10 = 20 ms), which meets it at 13.3x.
    measure, seen = slower_by(latency, 1.2, teacher_ms=200.0)
    chosen, record = fit_measured(dataclasses.replace(EXAMPLE, num_cells=2), latency, measure, speedup=10.0,
                                  say=lambda text: None)
    assert [g.num_cells for g in seen] == [2, 1] and chosen.num_cells == 1 and record["met"] is True


@pytest.mark.parametrize("speedup, teacher_ms", [(0.0, None), (10.0, 400.0)])
def test_the_timed_student_must_meet_the_budget_less_its_margin(speedup, teacher_ms):
    # 40 ms (10x a 400 ms teacher) less 5% is 38 ms: K=3 timed at 39 ms (35.5 x 1.1) is within the
    # budget but not its margin, so K=2 (26.4 ms) is kept.
    latency = one_width(40.0, margin=0.05)
    measure, seen = slower_by(latency, 1.1, teacher_ms)
    said = []
    chosen, record = fit_measured(EXAMPLE, latency, measure, speedup=speedup, say=said.append)
    assert [g.num_cells for g in seen] == [3, 2] and chosen.num_cells == 2 and record["met"] is True
    assert ("less its 5% margin" in said[0]) if not speedup else ("(with its 5% margin: 10.53x)" in said[0])


@pytest.mark.parametrize("name", LATENCIES)
def test_a_student_that_meets_the_budget_is_timed_once_and_kept(name):
    latency = LATENCIES[name](40.0)
    measure, seen = slower_by(latency, 1.0)
    said = []
    chosen, record = fit_measured(EXAMPLE, latency, measure, say=said.append)
    assert chosen == EXAMPLE and seen == [EXAMPLE] and record["met"] is True
    assert len(said) == 1 and "K=3 H=16 measured 35.500 ms (predicted 35.500): within the 40 ms budget" in said[0]


@pytest.mark.parametrize("name", LATENCIES)
def test_when_nothing_meets_the_budget_the_cheapest_is_kept_with_a_warning_after_two_timings(name):
    latency = LATENCIES[name](40.0)
    measure, seen = slower_by(latency, 100.0)
    warned = []
    chosen, record = fit_measured(EXAMPLE, latency, measure, say=lambda text: None, warn=warned.append)
    # No step's calibrated prediction fits, so the next one timed is the cheapest, not each of the
    # dozen op swaps between: two timings, not fourteen.
    assert chosen == cheapest(latency, EXAMPLE) and seen == [EXAMPLE, chosen] and record["met"] is False
    assert len(warned) == 1 and warned[0].startswith("warning: the cheapest student") and "raise the budget" in warned[0]
    if name == "searched widths":
        assert chosen.hidden_size == 8 and chosen.num_cells == 1


def test_cheaper_steps_are_strictly_cheaper_down_to_the_narrowest_width():
    latency = width_latency(40.0)
    genotype, seen = EXAMPLE, []
    while genotype is not None:
        seen.append(latency.predict(genotype))
        genotype = latency.cheaper(genotype)
    # K=3 -> K=2 -> K=1 at width 16, its op swaps, then width 8 (half the times) and its swaps.
    assert all(later < earlier for earlier, later in zip(seen, seen[1:])), seen
    assert seen[:3] == [35.5, 24.0, 12.5] and seen[-1] < 12.5 / 2


# ---------------------------------------------------------------- through `nas search`


def tiny_table(path, name=None):
    """The hand table at a thousandth of its times: every real student is far slower than it predicts."""
    data = scaled_hand_table(16, 1 / 1000)
    data["device"]["name"] = name or data["device"]["name"]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("check", ["measure", "predict"])
def test_the_search_times_its_derived_student_unless_told_to_trust_the_table(check, prepared, tiny_glue, tmp_path, run_cli):
    table = tiny_table(tmp_path / "table.json")
    # 0.1 ms: the table predicts every student under it (K=3 at most 0.0835 ms), no real one is.
    code, out, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", table,
                                          "--latency-budget", "0.1", "--set", "depth_choice=budget",
                                          "--set", f"latency_check={check}"))
    assert code == 0, err
    derived = Genotype.load(tmp_path / "run" / "arch.json")
    if check == "predict":
        assert derived.num_cells == 3 and "latency_check" not in derived.extra and "latency check" not in out
        return
    record = derived.extra["latency_check"]
    assert record["met"] is False and ";K=3;" in record["timings"][0]["genotype"]
    assert record["timings"][-1]["genotype"] == derived.to_string() and derived.num_cells == 1
    assert all(t["student_ms"] > 0.1 for t in record["timings"])
    assert "latency check: K=3 H=16 measured" in out and "warning: the cheapest student" in err


def test_depth_choice_budget_stacks_as_deep_as_the_clock_allows(prepared, tiny_glue, tmp_path, run_cli):
    from tests.test_latency_table import write_table

    # The hand table's times are far slower than the tiny students: by the table K=3 (56.5 ms at
    # most) does not fit 50 ms less the margin, by the clock it does.
    table = write_table(tmp_path / "table.json")
    code, out, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", table,
                                          "--latency-budget", "50", "--set", "depth_choice=budget"))
    assert code == 0, err
    derived = Genotype.load(tmp_path / "run" / "arch.json")
    record = derived.extra["latency_check"]
    assert derived.num_cells == 3 and record["met"] is True and record["timings"][-1]["genotype"] == derived.to_string()
    assert all(t["student_ms"] < 50 for t in record["timings"] if t["met"])
    assert f"timed {record['timings'][-1]['student_ms']:.3f} ms" in out.splitlines()[-1]


@pytest.mark.parametrize("load, warned", [(0.0, False), (1000.0, True)])
def test_a_check_on_a_busy_cpu_is_warned_and_its_load_kept(load, warned, prepared, tiny_glue, tmp_path, run_cli,
                                                           monkeypatch):
    from nas.train import search
    from tests.test_latency_table import write_table

    monkeypatch.setattr(search, "cpu_load", lambda: load)
    table = write_table(tmp_path / "table.json")
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", table,
                                        "--latency-budget", "50"))
    assert code == 0, err
    assert Genotype.load(tmp_path / "run" / "arch.json").extra["latency_check"]["load_average"] == load
    assert ("warning: the CPU is busy (load average 1000.0) while the search times its student" in err) is warned


def test_a_table_from_another_machine_is_not_checked_by_this_ones_clock(prepared, tiny_glue, tmp_path, run_cli):
    table = tiny_table(tmp_path / "table.json", name="the serving machine's CPU")
    code, out, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", table,
                                          "--latency-budget", "0.1", "--set", "depth_choice=budget"))
    assert code == 0, err
    derived = Genotype.load(tmp_path / "run" / "arch.json")
    assert derived.num_cells == 3 and "another device" in derived.extra["latency_check"]["skipped"]
    assert "latency check" not in out


def test_latency_check_is_validated():
    from nas.base.errors import UserError

    with pytest.raises(UserError, match="setting 'latency_check': expected measure or predict"):
        SearchConfig(latency_check="trust")


def test_a_student_with_room_to_spare_gains_cells_when_allowed():
    latency = one_width(40.0)
    # The table is pessimistic by 2x: K=1 is timed at 6.25 ms, so K=3 (35.5 x 0.5 = 17.75 ms) fits
    # by the calibrated prediction, is timed, and meets the budget.
    measure, seen = slower_by(latency, 0.5)
    one = dataclasses.replace(EXAMPLE, num_cells=1)
    chosen, record = fit_measured(one, latency, measure, deepest=3, say=lambda text: None)
    assert [g.num_cells for g in seen] == [1, 3] and chosen.num_cells == 3 and record["met"] is True
    # Without `deepest` the met student is kept as it is.
    measure, seen = slower_by(latency, 0.5)
    assert fit_measured(one, latency, measure, say=lambda text: None)[0] == one and seen == [one]


def test_a_deeper_stack_that_misses_on_the_clock_is_not_tried_again():
    latency = one_width(40.0)
    seen = []

    def measure(genotype):  # half the prediction up to two cells, then 50 ms: the third cell is slow
        seen.append(genotype.num_cells)
        return {"student_ms": latency.predict(genotype) * 0.5 if genotype.num_cells <= 2 else 50.0}
    chosen, record = fit_measured(dataclasses.replace(EXAMPLE, num_cells=2), latency, measure, deepest=3,
                                  say=lambda text: None)
    assert seen == [2, 3] and chosen.num_cells == 2 and record["met"] is True
    assert [t["met"] for t in record["timings"]] == [True, False]


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]),
])
def test_the_timer_times_a_compiled_student_beside_the_teacher(device, tiny_teacher):
    from nas.data.tasks import get_task
    from nas.train.distill_data import teacher_embedding_tables
    from nas.train.latency_check import student_timer

    task, device = get_task("sst2"), torch.device(device)
    words, positions = teacher_embedding_tables(str(tiny_teacher), task)
    measure = student_timer(tiny_teacher, task, words, positions, device, batch_size=2, seq_len=16, speedup=2.0)
    genotype = dataclasses.replace(EXAMPLE, num_cells=1, hidden_size=16)
    times = measure(genotype)
    assert set(times) == {"student_ms", "teacher_ms"} and all(ms > 0 for ms in times.values())
    # Through the search's stepping, on the hand table's predictions (only the clock is real here).
    chosen, record = fit_measured(genotype, one_width(40.0), measure, speedup=1e-6, say=lambda text: None)
    assert chosen == genotype and record["met"] is True and record["timings"][0]["teacher_ms"] > 0
