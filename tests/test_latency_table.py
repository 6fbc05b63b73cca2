"""Latency tables, the latency predictor, the expected-latency term and latency-budgeted search:
hand-made tables whose answers are worked out in the comments, bad input, `nas latency-table`
on tiny settings, and a budget that forces a smaller student on the tiny GLUE task."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from kd.losses import expected_latency, latency_budget_penalty
from nas.base.errors import UserError
from nas.deploy import latency_measure
from nas.train.latency_budget import TABLE_FILE, SearchLatency
from nas.deploy.latency_table import (check_compatible, cpu_model, load_latency_table, predict_latency_ms,
                               save_latency_table, table_from_dict)
from nas.train.search import SearchConfig
from ops import ADABERT_OPS, OP_NAMES
from searchspace.genotype import Genotype
from searchspace.random_arch import random_genotypes
from searchspace.space import SearchSpace
from searchspace.supernet import SuperNet

# Milliseconds per op on one edge in the hand-made table (at batch 1, length 64).
OP_MS = {"cnn3": 2.0, "cnn5": 3.0, "cnn7": 4.0, "dilated_cnn3": 2.5, "dilated_cnn5": 3.5, "dilated_cnn7": 4.5,
         "avg_pool": 0.5, "max_pool": 0.75, "identity": 0.25, "zero": 0.0}
FRAME_MS, FRAME_PAIR_MS, CELL_MS = 1.0, 1.25, 0.5


def entry(batch: int, seq_len: int, scale: float = 1.0) -> dict:
    return {"batch_size": batch, "seq_len": seq_len, "frame_ms": FRAME_MS * scale, "frame_pair_ms": FRAME_PAIR_MS * scale,
            "embedding_ms": 0.25 * scale, "head_ms": 0.25 * scale, "cell_ms": CELL_MS * scale,
            "ops_ms": {op: ms * scale for op, ms in OP_MS.items()}}


def hand_table(hidden: int = 16, device_type: str = "cpu", name: str | None = None, threads: int | None = None) -> dict:
    """Batch 1 at lengths 32 (half the times), 64 (OP_MS) and 128 (twice); batch 32 at 64 (ten times).
    Device name and threads default to this machine's, so that no warning is printed."""
    return {
        "schema_version": 1, "kind": "adabert-latency-table", "hidden_size": hidden,
        "device": {"type": device_type, "name": name or cpu_model(), "threads": threads or torch.get_num_threads()},
        "torch": torch.__version__, "method": {"note": "hand-made for the tests"}, "created": "",
        "entries": [entry(1, 32, 0.5), entry(1, 64), entry(1, 128, 2.0), entry(32, 64, 10.0)],
    }


def write_table(path, **changes):
    path.write_text(json.dumps(hand_table(**changes)))
    return path


# The example genotype: K = 3; its six edges cost cnn3 2 + max_pool 0.75 + dilated_cnn5 3.5
# + identity 0.25 + cnn7 4 + avg_pool 0.5 = 11 ms; a cell 0.5 + 11 = 11.5 ms;
# the student 1 + 3 · 11.5 = 35.5 ms (pair: 1.25 + 34.5 = 35.75 ms).
EXAMPLE = Genotype(num_cells=3, hidden_size=16, max_cells=3, cell=[
    [["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]], [["cnn7", 3], ["avg_pool", 2]]])


# ---------------------------------------------------------------- the table and the predictor


def test_table_round_trips_through_its_file(tmp_path):
    table = table_from_dict(hand_table(), "hand-made")
    path = save_latency_table(table, tmp_path / "table.json")
    again = load_latency_table(path)
    assert again.to_dict() == table.to_dict()
    assert again.entries == table.entries and again.ops == ADABERT_OPS
    assert again.seq_lens(1) == [32, 64, 128] and again.seq_lens(32) == [64]


def test_prediction_is_the_sum_of_the_parts():
    table = table_from_dict(hand_table())
    assert predict_latency_ms(table, EXAMPLE, 1, 64) == pytest.approx(35.5)
    assert predict_latency_ms(table, EXAMPLE, 1, 64, pair=True) == pytest.approx(35.75)
    assert predict_latency_ms(table, dataclasses.replace(EXAMPLE, num_cells=1), 1, 64) == pytest.approx(12.5)
    assert predict_latency_ms(table, EXAMPLE, 32, 64) == pytest.approx(355.0)  # every part ten times


def test_prediction_interpolates_between_measured_lengths_only():
    table = table_from_dict(hand_table())
    # Length 48 is halfway between 32 (scale 0.5) and 64 (scale 1): scale 0.75 -> 35.5 · 0.75.
    assert predict_latency_ms(table, EXAMPLE, 1, 48) == pytest.approx(26.625)
    # 96 is halfway between 64 (1) and 128 (2): scale 1.5.
    assert predict_latency_ms(table, EXAMPLE, 1, 96) == pytest.approx(53.25)
    with pytest.raises(UserError, match="outside the measured lengths 32..128"):
        predict_latency_ms(table, EXAMPLE, 1, 256)
    with pytest.raises(UserError, match="outside the measured lengths 64..64"):
        predict_latency_ms(table, EXAMPLE, 32, 32)
    with pytest.raises(UserError, match="batch size 8 was not measured"):
        predict_latency_ms(table, EXAMPLE, 8, 64)


def test_prediction_refuses_another_hidden_size():
    with pytest.raises(UserError, match="hidden_size 128 differs"):
        predict_latency_ms(table_from_dict(hand_table(hidden=128)), EXAMPLE, 1, 64)


# ---------------------------------------------------------------- expected latency (the search's term)


def test_expected_latency_on_hand_made_weights():
    # Two cells, 9 edges, 3 ops costing 1, 2 and 0 ms. Cell 1: op 0 on every edge -> mean 1 ms,
    # cell 2: half op 0, half op 1 -> mean 1.5 ms. With 6 kept edges and a 0.5 ms overhead a cell
    # costs 6.5 and 9.5 ms; depth p = (0.25, 0.75); frame 2 ms:
    # E = 2 + 0.25 · 6.5 + 0.75 · (6.5 + 9.5) = 2 + 1.625 + 12 = 15.625 ms.
    op_ms = torch.tensor([1.0, 2.0, 0.0])
    weights = torch.zeros(2, 9, 3)
    weights[0, :, 0] = 1.0
    weights[1, :, :2] = 0.5
    depth = torch.tensor([0.25, 0.75], requires_grad=True)
    value = expected_latency(weights, depth, op_ms, cell_ms=0.5, frame_ms=2.0)
    assert value.item() == pytest.approx(15.625)
    value.backward()
    assert depth.grad.tolist() == pytest.approx([6.5, 16.0])  # dE/dp(K=k) = cost of the first k cells


def test_expected_latency_of_a_genotype_path_is_its_prediction():
    table = table_from_dict(hand_table())
    supernet = SuperNet(SearchSpace(16, 3), vocab_size=29, max_positions=128, num_labels=2, pair=False)
    op_ms = torch.tensor([OP_MS[op] for op in supernet.space.ops])
    for genotype in [EXAMPLE, *random_genotypes(3, 4, hidden_size=16, max_depth=3, max_cells=3)]:
        path = supernet.genotype_path(genotype)  # the 3 dropped edges have all-zero weights
        value = expected_latency(path.op_weights, path.depth_weights, op_ms, CELL_MS, FRAME_MS)
        assert value.item() == pytest.approx(predict_latency_ms(table, genotype, 1, 64))


def test_budget_penalty_is_a_hinge():
    assert latency_budget_penalty(torch.tensor(8.0), 10.0).item() == 0.0
    assert latency_budget_penalty(torch.tensor(10.0), 10.0).item() == 0.0
    assert latency_budget_penalty(torch.tensor(15.0), 10.0).item() == pytest.approx(0.5)


# ---------------------------------------------------------------- fitting a genotype into a budget


def search_latency(budget: float, cap: int = 2, margin: float = 0.0) -> SearchLatency:
    """Without a margin unless asked, so the budgets below are the targets the arithmetic aims at."""
    config = SearchConfig(hidden_size=16, max_cells=3, latency_budget_ms=budget, max_parameter_free=cap,
                          latency_margin=margin)
    return SearchLatency(table_from_dict(hand_table()), config, False, ADABERT_OPS, torch.device("cpu"))


def test_fit_aims_at_the_budget_less_its_margin():
    # K=2 costs 24 ms: inside a 25 ms budget, but not inside 25 ms less 5% (23.75 ms), so K=1.
    assert search_latency(budget=25.0).fit(EXAMPLE).num_cells == 2
    assert search_latency(budget=25.0, margin=0.05).fit(EXAMPLE).num_cells == 1
    recorded = search_latency(budget=25.0, margin=0.05).record(dataclasses.replace(EXAMPLE, num_cells=1))
    assert recorded.extra["latency_margin"] == 0.05 and recorded.extra["latency_budget_ms"] == 25.0


def test_fit_keeps_the_deepest_stack_within_the_budget():
    latency = search_latency(budget=30.0)  # K=3: 35.5 ms, K=2: 1 + 2 · 11.5 = 24 ms
    assert latency.fit(EXAMPLE) == dataclasses.replace(EXAMPLE, num_cells=2)
    assert search_latency(budget=40.0).fit(EXAMPLE) == EXAMPLE


def test_fit_swaps_the_slowest_ops_once_one_cell_is_too_slow():
    # K=1 costs 12.5 ms. The budget 11.0 needs 1.5 ms less: cnn7 (4) -> dilated_cnn5 (3.5) -> cnn5 (3)
    # saves 1 ms, then dilated_cnn5 (3.5, node 3) -> cnn5 (3) and the cell is at 11.0 ms.
    fitted = search_latency(budget=11.0).fit(EXAMPLE)
    assert fitted.num_cells == 1
    assert predict_latency_ms(table_from_dict(hand_table()), fitted, 1, 64) <= 11.0
    assert [e.op for _, e in fitted.edges()] == ["cnn3", "max_pool", "cnn5", "identity", "cnn5", "avg_pool"]


def test_fit_keeps_the_parameter_free_cap():
    # The cheapest cell with at most 2 parameter-free edges: 4 x cnn3 (8) + 2 x identity (0.5),
    # 1 + 0.5 + 8.5 = 10 ms; without a cap, 6 x identity: 1 + 0.5 + 1.5 = 3 ms.
    assert search_latency(budget=10.0).cheapest() == (pytest.approx(10.0), "K=1, cnn3 x4 + identity x2")
    assert search_latency(budget=3.0, cap=6).cheapest() == (pytest.approx(3.0), "K=1, identity x6")
    # Two parameter-free edges (as the capped derivation gives), K=1 at 1 + 0.5 + 13.5 = 15 ms:
    # the budget of 10 ms is met only by the cheapest cell within the cap.
    capped = dataclasses.replace(EXAMPLE, cell=[[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]],
                                                [["cnn7", 3], ["cnn5", 2]]])
    fitted = search_latency(budget=10.0).fit(capped)
    assert sorted(e.op for _, e in fitted.edges()) == ["cnn3"] * 4 + ["identity"] * 2
    assert predict_latency_ms(table_from_dict(hand_table()), fitted, 1, 64) == pytest.approx(10.0)


def test_fit_moves_an_edge_to_another_input_rather_than_repeat_an_in_edge():
    # Both in-edges of each node come from the same input, so a cheaper op would often repeat the
    # other in-edge; the edge then takes another input, and the cheapest cell (10 ms) is reached.
    same_inputs = dataclasses.replace(EXAMPLE, num_cells=2, cell=[
        [["cnn5", 0], ["cnn3", 0]], [["cnn7", 1], ["dilated_cnn3", 1]], [["max_pool", 3], ["identity", 3]]])
    fitted = search_latency(budget=10.0).fit(same_inputs)
    assert sorted(e.op for _, e in fitted.edges()) == ["cnn3"] * 4 + ["identity"] * 2
    assert predict_latency_ms(table_from_dict(hand_table()), fitted, 1, 64) == pytest.approx(10.0)
    assert all(a != b for a, b in fitted.cell)  # still a valid cell (Genotype checks this too)


def test_a_budget_below_the_cheapest_architecture_is_refused():
    with pytest.raises(UserError, match=r"below the cheapest architecture .*: 10\.000 ms \(K=1, cnn3 x4 \+ identity x2\)"):
        search_latency(budget=9.0).check_reachable()
    search_latency(budget=10.0).check_reachable()


# ---------------------------------------------------------------- bad tables


@pytest.mark.parametrize("change, field", [
    (lambda t: t.pop("hidden_size"), "hidden_size"),
    (lambda t: t.update(kind="something else"), "kind"),
    (lambda t: t.update(schema_version=2), "schema_version"),
    (lambda t: t["device"].update(type="tpu"), "device.type"),
    (lambda t: t.update(entries=[]), "entries"),
    (lambda t: t["entries"][1]["ops_ms"].update(cnn3=-1), "entries[1].ops_ms.cnn3"),
    (lambda t: t["entries"][0].pop("cell_ms"), "entries[0].cell_ms"),
    (lambda t: t["entries"][2].update(seq_len="long"), "entries[2].seq_len"),
    (lambda t: t["entries"][3]["ops_ms"].pop("zero"), "entries[3].ops_ms"),
])
def test_a_malformed_table_names_the_file_and_field(tmp_path, change, field):
    data = hand_table()
    change(data)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as error:
        load_latency_table(path)
    assert str(error.value).startswith(f"{path}: {field}: ")


def test_a_missing_or_non_json_table_is_one_line(tmp_path):
    with pytest.raises(UserError, match="latency table not found"):
        load_latency_table(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match=r"bad\.json: not valid JSON: .*line 1, column 2"):
        load_latency_table(tmp_path / "bad.json")


def test_another_device_type_or_hidden_size_is_refused_and_another_cpu_warned_about():
    cpu = torch.device("cpu")
    with pytest.raises(UserError, match=r"device\.type is 'cuda' but this run is on 'cpu'"):
        check_compatible(table_from_dict(hand_table(device_type="cuda")), cpu, 16)
    with pytest.raises(UserError, match="hidden_size is 16 but this run uses 128"):
        check_compatible(table_from_dict(hand_table()), cpu, 128)
    warnings = []
    check_compatible(table_from_dict(hand_table(name="Some Other CPU", threads=64)), cpu, 16, warn=warnings.append)
    assert len(warnings) == 2
    assert "device.name is 'Some Other CPU'" in warnings[0] and "device.threads is 64" in warnings[1]
    check_compatible(table_from_dict(hand_table()), cpu, 16, warn=warnings.append)
    assert len(warnings) == 2  # this machine's own table: no warning


# ---------------------------------------------------------------- nas latency-table


TINY_TABLE = ("--set", "hidden_size=8", "--set", "batch_sizes=1,2", "--set", "seq_lens=4,8",
              "--set", "repeats=1", "--set", "warmup=0", "--set", "min_repeat_ms=0")


def test_latency_table_command_on_tiny_settings(tmp_path, run_cli):
    code, out, err = run_cli("latency-table", "--device", "cpu", "--out", tmp_path / "t.json", *TINY_TABLE)
    assert code == 0, err
    assert "latency-table cpu" in out
    table = load_latency_table(tmp_path / "t.json")
    assert sorted(table.entries) == [(1, 4), (1, 8), (2, 4), (2, 8)]
    assert table.ops == OP_NAMES and table.hidden_size == 8
    assert table.device["type"] == "cpu" and table.device["threads"] == torch.get_num_threads()
    # Only signs: frame vs embedding time is a timing race on a loaded machine, not a property of the table.
    assert all(e.frame_ms > 0 and e.cell_ms > 0 and e.embedding_ms > 0 for e in table.entries.values())


def test_latency_table_command_refuses_bad_settings(tmp_path, run_cli):
    code, _, err = run_cli("latency-table", "--device", "cpu", "--out", tmp_path / "t.json", "--set", "seq_lens=8,1024")
    assert code == 2 and "seq_lens" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.json").exists()


# ---------------------------------------------------------------- latency-budgeted search


SEARCH = ("--epochs", "1", "--set", "hidden_size=16", "--set", "max_cells=3", "--set", "warmup_epochs=0")


def search_args(prepared, tiny_glue, out, *extra):
    teacher, knowledge = prepared["sst2"]
    return ["search", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
            "--out", out, "--device", "cpu", *SEARCH, *extra]


@pytest.fixture(scope="module")
def unconstrained(prepared, tiny_glue, tmp_path_factory):
    """A search with a latency table (for the record) but no budget."""
    from nas.commands.cli import main

    root = tmp_path_factory.mktemp("latency_search")
    table = write_table(root / "table.json")
    out = root / "free"
    assert main(search_args(prepared, tiny_glue, out, "--latency-table", table)) == 0
    return table, Genotype.load(out / "arch.json")


def test_a_budget_forces_a_smaller_student_than_the_unconstrained_search(unconstrained, prepared, tiny_glue, tmp_path, run_cli,
                                                                         monkeypatch):
    from nas.train import search

    # A quiet CPU, whatever else this machine runs: the busy-CPU warning has its own test
    # (tests/test_latency_check.py), and here any warning means the budget went wrong.
    monkeypatch.setattr(search, "cpu_load", lambda: 0.0)
    table, free = unconstrained
    assert free.costs["predicted_latency_ms"] == pytest.approx(predict_latency_ms(load_latency_table(table), free, 1, 64))
    assert free.extra["latency_budget_ms"] == 0.0 and free.extra["efficiency"] == "cost"

    # 1 ms under the unconstrained student: one cell fewer, or (at K=1) its slowest ops swapped.
    budget = free.costs["predicted_latency_ms"] - 1.0
    code, out, err = run_cli(*search_args(prepared, tiny_glue, tmp_path, "--latency-table", table, "--latency-budget", budget))
    assert code == 0, err
    assert "ms at batch 1, length 64" in out and "warning" not in err
    fitted = Genotype.load(tmp_path / "arch.json")
    assert fitted.costs["predicted_latency_ms"] <= budget < free.costs["predicted_latency_ms"]
    assert fitted.costs["latency_batch_size"] == 1 and fitted.costs["latency_seq_len"] == 64
    assert fitted.extra["latency_budget_ms"] == budget and fitted.extra["efficiency"] == "latency_budget"
    assert fitted.num_cells <= free.num_cells and fitted.costs["params"] <= free.costs["params"]
    if fitted.num_cells == free.num_cells:  # the same depth: some op gave way to a cheaper one
        fitted_ms = sorted(OP_MS[e.op] for _, e in fitted.edges())
        free_ms = sorted(OP_MS[e.op] for _, e in free.edges())
        assert sum(fitted_ms) < sum(free_ms)


@pytest.mark.parametrize("budget", [50.0, 1000.0])
def test_depth_choice_budget_derives_the_deepest_stack_that_fits(prepared, tiny_glue, tmp_path, run_cli, budget):
    table = write_table(tmp_path / "table.json")
    # The table alone (the measured check would time the real students, far faster than this
    # hand table says, and stack deeper: tests/test_latency_check.py).
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", table,
                                        "--latency-budget", budget, "--set", "depth_choice=budget",
                                        "--set", "latency_check=predict"))
    assert code == 0, err
    derived = Genotype.load(tmp_path / "run" / "arch.json")
    target, hand = budget * 0.95, table_from_dict(hand_table())
    assert derived.extra["depth_choice"] == "budget"
    assert predict_latency_ms(hand, derived, 1, 64) <= target
    if budget == 1000.0:
        assert derived.num_cells == 3  # max_cells here
    elif derived.num_cells < 3:
        deeper = dataclasses.replace(derived, num_cells=derived.num_cells + 1)
        assert predict_latency_ms(hand, deeper, 1, 64) > target


@pytest.mark.parametrize("sets, message", [
    (["--set", "depth_choice=budget"], "needs a latency budget"),
    (["--latency-budget", "50", "--set", "depth_choice=widest"], "expected logits, budget or trial"),
])
def test_depth_choice_is_checked(prepared, tiny_glue, tmp_path, run_cli, sets, message):
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", *sets))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "depth_choice" in err and message in err, err


def test_search_refuses_an_unreachable_budget_before_searching(prepared, tiny_glue, tmp_path, run_cli):
    table = write_table(tmp_path / "table.json")
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", table, "--latency-budget", "5"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "10.000 ms" in err and "cheapest" in err, err
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


@pytest.mark.parametrize("table, field", [
    (dict(device_type="cuda"), "device.type"),
    (dict(hidden=32), "hidden_size"),
    (None, "not found"),
])
def test_search_refuses_a_table_of_another_device_or_size_or_none(prepared, tiny_glue, tmp_path, run_cli, table, field):
    path = write_table(tmp_path / "table.json", **table) if table else tmp_path / "missing.json"
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path / "run", "--latency-table", path, "--latency-budget", "50"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and str(path) in err and field in err, err


def test_latency_search_without_a_table_measures_one_into_the_run_folder(prepared, tiny_glue, tmp_path, run_cli, monkeypatch):
    real = latency_measure.build_latency_table
    quick = lambda config, device, **kwargs: real(dataclasses.replace(config, repeats=1, warmup=0, min_repeat_ms=0), device, **kwargs)  # noqa: E731
    monkeypatch.setattr(latency_measure, "build_latency_table", quick)
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path, "--set", "efficiency=latency"))
    assert code == 0, err
    table = load_latency_table(tmp_path / TABLE_FILE)
    assert sorted(table.entries) == [(1, 64)] and table.hidden_size == 16
    genotype = Genotype.load(tmp_path / "arch.json")
    assert genotype.costs["predicted_latency_ms"] == pytest.approx(predict_latency_ms(table, genotype, 1, 64), abs=1e-3)
    assert genotype.extra["efficiency"] == "latency" and genotype.extra["latency_table"]["file"] == TABLE_FILE



def test_latency_seq_len_0_is_the_length_of_the_dev_batch_the_finetune_times(prepared, tiny_glue, tmp_path, run_cli,
                                                                           monkeypatch):
    from nas.data.batching import encode
    from nas.data.glue_io import load_task_data
    from nas.data.models import load_tokenizer
    from nas.data.tasks import get_task
    from nas.deploy.latency import dev_batch_length, latency_batches

    teacher, _ = prepared["sst2"]
    dev = load_task_data(get_task("sst2"), tiny_glue, with_train=False).dev["dev"]
    tokenizer = load_tokenizer(str(teacher))
    lengths = [len(tokenizer(e.text_a)["input_ids"]) for e in dev[:4]]
    assert dev_batch_length(dev, tokenizer, 4, 64) == max(lengths)  # padded to the longest of the first four
    assert dev_batch_length(dev, tokenizer, 4, 5) == 5  # cut at max_length
    assert dev_batch_length(dev, tokenizer, 4, 64) == latency_batches(encode(dev[:4], tokenizer, 64), (4,))[4]["input_ids"].shape[1]

    real = latency_measure.build_latency_table
    quick = lambda config, device, **kwargs: real(dataclasses.replace(config, repeats=1, warmup=0, min_repeat_ms=0), device, **kwargs)  # noqa: E731
    monkeypatch.setattr(latency_measure, "build_latency_table", quick)
    code, _, err = run_cli(*search_args(prepared, tiny_glue, tmp_path, "--latency-budget", "1000",
                                        "--set", "latency_batch_size=4", "--set", "latency_seq_len=0"))
    assert code == 0, err
    genotype = Genotype.load(tmp_path / "arch.json")
    assert genotype.costs["latency_seq_len"] == max(lengths) and genotype.costs["latency_batch_size"] == 4
    assert json.loads((tmp_path / "config.json").read_text())["config"]["latency_seq_len"] == max(lengths)
    assert load_latency_table(tmp_path / TABLE_FILE).seq_lens(4) == [max(lengths)]
