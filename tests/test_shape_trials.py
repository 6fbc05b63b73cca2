"""`depth_choice=trial`: the searched cell's depth and width chosen by short trainings scored on
the search's held-out training rows (nas/train/shape_trials.py), never on dev."""

from __future__ import annotations

import json

import pytest
import torch

from nas.base.errors import UserError
from nas.train import shape_trials
from nas.train.search import SearchConfig
from searchspace.genotype import Genotype
from tests.test_latency_table import EXAMPLE
from tests.test_width import HAND_WIDTHS, scaled_hand_table, width_latency


# ---------------------------------------------------------------- candidates


@pytest.mark.parametrize("budget, shapes", [
    (100.0, [(3, 8), (3, 16)]),  # everything fits: the deepest stack at each width
    (20.0, [(3, 8), (1, 16)]),  # width 8: K=3 17.75 ms; width 16: K=1 12.5 ms, K=2 24 ms
    (12.0, [(2, 8)]),  # one cell at width 16 (12.5 ms) is over: that width adds nothing
])
def test_candidates_are_the_deepest_stack_that_fits_at_each_width(budget, shapes):
    latency = width_latency(budget)
    found = shape_trials.shape_candidates(EXAMPLE, (16, 8), 3, latency)
    assert [(g.num_cells, g.hidden_size) for g in found] == shapes
    assert all(g.cell == EXAMPLE.cell and latency.predict(g) <= budget for g in found)


# ---------------------------------------------------------------- held-out rows


def tiny_distill_data(prepared, tiny_glue):
    from kd.knowledge import Knowledge
    from nas.data.glue_io import load_task_data
    from nas.data.models import load_tokenizer
    from nas.data.tasks import get_task
    from nas.train.distill_data import prepare

    teacher, folder = prepared["sst2"]
    knowledge = Knowledge(folder)
    return prepare(load_task_data(get_task("sst2"), tiny_glue), knowledge, load_tokenizer(str(teacher)),
                   knowledge.max_length)


def test_held_out_data_scores_training_rows_the_trials_do_not_train_on(prepared, tiny_glue):
    data = tiny_distill_data(prepared, tiny_glue)
    train, held = [0, 2, 3], [5, 1]
    part = data.held_out(train, held)
    assert len(part.train) == part.original_rows == 3 and list(part.dev) == ["dev"]
    assert list(part.dev["dev"].input_ids) == [list(data.train.input_ids[i]) for i in held]
    assert torch.equal(part.dev["dev"].labels, data.train.labels[held])
    assert list(part.train.input_ids) == [list(data.train.input_ids[i]) for i in train]
    assert torch.equal(part.train_targets.probe_logits, data.train_targets.probe_logits[train])
    with pytest.raises(ValueError):
        data.held_out([0, 5], [5])  # a row both trained on and scored
    with pytest.raises(ValueError):
        data.held_out([0], [data.original_rows])  # an augmented row held out


COPIES = 2  # augmented copies per row in the transfer-set knowledge below


@pytest.fixture(scope="module")
def augmented(prepared, tiny_glue, tmp_path_factory):
    """(teacher, knowledge folder with the adabert preset's copies, that knowledge's DistillData)."""
    from kd.knowledge import Knowledge
    from nas.commands.cli import main
    from nas.data.glue_io import load_task_data
    from nas.data.models import load_tokenizer
    from nas.data.tasks import get_task
    from nas.train.distill_data import prepare

    teacher, _ = prepared["sst2"]
    out = tmp_path_factory.mktemp("augmented") / "knowledge"
    assert main(["knowledge", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher), "--out", str(out),
                 "--device", "cpu", "--augment-preset", "adabert", "--augment", str(COPIES)]) == 0
    knowledge = Knowledge(out)
    data = prepare(load_task_data(get_task("sst2"), tiny_glue), knowledge, load_tokenizer(str(teacher)), knowledge.max_length)
    return teacher, out, data


def test_a_row_s_copies_are_found_from_it_and_lead_back_to_it(augmented):
    data = augmented[2]
    copies = data.variants_of([1, 3])
    assert len(data.train) == data.original_rows * (1 + COPIES)
    assert list(data.source_rows(copies)) == [1, 1, 3, 3]
    assert list(data.source_rows([0, 4])) == [0, 4]


def test_held_out_data_may_train_on_copies_and_scores_the_held_out_rows_copies(augmented):
    data = augmented[2]
    train = [0, 2, *data.variants_of([0, 2])]
    part = data.held_out(train, [1, 3], variants=True)
    assert len(part.train) == 6 and part.original_rows == 2
    assert list(part.train.input_ids) == [list(data.train.input_ids[i]) for i in train]
    copies = data.variants_of([1, 3])
    assert list(part.dev["variants"].input_ids) == [list(data.train.input_ids[i]) for i in copies]
    assert torch.equal(part.dev["variants"].labels, data.train.labels[copies])  # the teacher's labels
    assert list(data.held_out(train, [1, 3]).dev) == ["dev"]
    with pytest.raises(ValueError):
        data.held_out([0, *data.variants_of([1])], [1])  # a copy of a held-out row trained on


# ---------------------------------------------------------------- a search


def trial_search_args(prepared, tiny_glue, out, *extra):
    teacher, knowledge = prepared["sst2"]
    return ["search", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher),
            "--knowledge", str(knowledge), "--out", str(out), "--device", "cpu", "--epochs", "1", "--seed", "0",
            "--set", "hidden_size=16", "--set", "widths=8,16", "--set", "max_cells=3", "--set", "warmup_epochs=0",
            "--latency-budget", "100", "--set", "depth_choice=trial", "--set", "trial_epochs=1", *extra]


def hand_tables(out):
    """One table per width in the run folder, where the search reuses them: width 8 half of width 16."""
    out.mkdir(parents=True, exist_ok=True)
    for width, scale in HAND_WIDTHS:
        (out / f"latency_table_w{width}.json").write_text(json.dumps(scaled_hand_table(width, scale)))


@pytest.fixture(scope="module")
def trial_search(prepared, tiny_glue, tmp_path_factory):
    """A tiny search over widths 8 and 16 with depth_choice=trial; the trials' data recorded."""
    from nas.commands.cli import main

    out = tmp_path_factory.mktemp("trial") / "search"
    hand_tables(out)
    seen, real = [], shape_trials.trial_scores
    patch = pytest.MonkeyPatch()
    patch.setattr(shape_trials, "trial_scores", lambda genotype, data, *rest: seen.append((genotype, data)) or real(genotype, data, *rest))
    try:
        assert main(trial_search_args(prepared, tiny_glue, out)) == 0
    finally:
        patch.undo()
    return out, seen


def test_the_search_keeps_the_best_trial_and_records_every_one(trial_search):
    out, seen = trial_search
    arch = Genotype.load(out / "arch.json")
    record = arch.extra["shape"]
    trials = record["trials"]
    assert record["rule"] == "trial" and record["epochs"] == 1
    assert [(g.num_cells, g.hidden_size) for g, _ in seen] == [(3, 8), (3, 16)]  # both fit the budget of 100
    scores = [t["held_out_accuracy"] for t in trials]
    best = max(range(2), key=lambda i: (scores[i], -trials[i]["predicted_ms"]))
    assert (arch.num_cells, arch.hidden_size) == (seen[best][0].num_cells, seen[best][0].hidden_size)
    assert arch.costs["predicted_latency_ms"] <= 100 * 0.95
    written = json.loads((out / "arch.json").read_text())["extra"]["shape"]["trials"]
    assert json.loads((out / shape_trials.TRIALS_FILE).read_text())["trials"] == written


def test_trials_never_read_dev(trial_search, prepared, tiny_glue):
    out, seen = trial_search
    record = Genotype.load(out / "arch.json").extra["shape"]
    full = tiny_distill_data(prepared, tiny_glue)
    tail = range(full.original_rows - record["held_out_rows"], full.original_rows)  # the search's held-out slice
    for _, data in seen:
        assert len(data.train) == data.original_rows == record["rows"] == full.original_rows - len(tail)
        assert list(data.dev["dev"].input_ids) == [list(full.train.input_ids[i]) for i in tail]
        assert torch.equal(data.dev["dev"].labels, full.train.labels[list(tail)])


def test_a_resumed_search_reuses_the_finished_trials(trial_search, prepared, tiny_glue, monkeypatch):
    from nas.commands.cli import main

    out, _ = trial_search
    before = Genotype.load(out / "arch.json")
    monkeypatch.setattr(shape_trials, "trial_scores", lambda *a, **k: pytest.fail("a finished trial ran again"))
    assert main(trial_search_args(prepared, tiny_glue, out, "--resume")) == 0
    after = Genotype.load(out / "arch.json")
    assert (after.num_cells, after.hidden_size, after.cell) == (before.num_cells, before.hidden_size, before.cell)


def test_transfer_trials_train_on_the_rows_and_their_copies_and_score_both(augmented, tiny_glue, tmp_path, monkeypatch):
    from nas.commands.cli import main

    teacher, knowledge, full = augmented
    out = tmp_path / "search"
    hand_tables(out)
    seen, real = [], shape_trials.trial_scores
    monkeypatch.setattr(shape_trials, "trial_scores", lambda genotype, data, *rest: seen.append(data) or real(genotype, data, *rest))
    args = trial_search_args({"sst2": (teacher, knowledge)}, tiny_glue, out, "--set", "trial_data=transfer")
    assert main(args) == 0
    record = Genotype.load(out / "arch.json").extra["shape"]
    assert record["data"] == "transfer" and all("variants_accuracy" in trial for trial in record["trials"])
    task_rows = record["rows"] // (1 + COPIES)
    held = range(full.original_rows - record["held_out_rows"], full.original_rows)
    assert task_rows == full.original_rows - len(held)
    for data in seen:
        assert len(data.train) == record["rows"] and data.original_rows == task_rows
        assert list(data.dev["dev"].input_ids) == [list(full.train.input_ids[i]) for i in held]
        assert len(data.dev["variants"]) == len(held) * COPIES
    # The trials trained on the weight rows: every task row outside the slice, and each one's copies.
    expected = [*range(task_rows), *full.variants_of(range(task_rows))]
    assert list(seen[0].train.input_ids) == [list(full.train.input_ids[i]) for i in expected]


@pytest.mark.parametrize("settings, field", [
    ({"depth_choice": "trial"}, "needs a latency budget"),
    ({"depth_choice": "trial", "latency_budget_ms": 50.0, "trial_data": "dev"}, "trial_data"),
    ({"depth_choice": "trial", "latency_budget_ms": 50.0, "trial_epochs": 0}, "trial_epochs"),
    ({"depth_choice": "trial", "latency_budget_ms": 50.0, "trial_rows": -1}, "trial_rows"),
])
def test_trial_settings_are_checked(settings, field):
    with pytest.raises(UserError, match=field):
        SearchConfig(**settings)


def test_trial_settings_stay_out_of_a_default_record():
    assert "trial_epochs" not in SearchConfig().to_dict()
    assert SearchConfig(trial_epochs=3).to_dict()["trial_epochs"] == 3


# ---------------------------------------------------------------- shallower stacks, inherited weights


@pytest.mark.parametrize("depth, expected", [(8, [8, 4, 2, 1]), (5, [5, 2, 1]), (3, [3, 1]), (1, [1])])
def test_halvings_go_down_to_one_cell(depth, expected):
    assert shape_trials.halvings(depth) == expected


@pytest.mark.parametrize("budget, shapes", [
    (100.0, [(3, 8), (1, 8), (3, 16), (1, 16)]),
    (20.0, [(3, 8), (1, 8), (1, 16)]),  # width 16 fits one cell only: nothing to halve
])
def test_halving_adds_the_shallower_stacks_of_each_width(budget, shapes):
    found = shape_trials.shape_candidates(EXAMPLE, (16, 8), 3, width_latency(budget), depths="halving")
    assert [(g.num_cells, g.hidden_size) for g in found] == shapes


def test_a_finished_search_derives_again_with_other_trial_settings_without_training(trial_search, prepared, tiny_glue,
                                                                                  tmp_path, monkeypatch):
    import shutil

    from nas.commands.cli import main
    from nas.train import search as search_module
    from searchspace.width import leading_slice

    out = tmp_path / "search"
    shutil.copytree(trial_search[0], out)
    before = json.loads((out / "arch.json").read_text())["extra"]
    supernet = torch.load(out / "supernet_best.pt", weights_only=True)
    monkeypatch.setattr(search_module.Search, "step_loss", lambda *a, **k: pytest.fail("the supernet trained again"))
    starts, real = [], shape_trials.train_with_kd

    def spy(student, task, data, config, device, **rest):
        starts.append({name: value.clone() for name, value in student.state_dict().items()})
        return real(student, task, data, config, device, **rest)

    monkeypatch.setattr(shape_trials, "train_with_kd", spy)
    assert main(trial_search_args(prepared, tiny_glue, out, "--resume", "--set", "trial_init=search",
                                  "--set", "trial_depths=halving")) == 0
    record = Genotype.load(out / "arch.json").extra["shape"]
    assert record["init"] == "search" and record["depths"] == "halving"
    assert [t["genotype"].split(";")[1:3] for t in record["trials"]] == [["K=3", "H=8"], ["K=1", "H=8"],
                                                                         ["K=3", "H=16"], ["K=1", "H=16"]]
    assert json.loads((out / "arch.json").read_text())["extra"]["history"] == before["history"]
    # Each trial started from the supernet: its cells' weights are the supernet's leading channels.
    for start in starts:
        name = next(n for n in start if n.startswith("cells.") and n.endswith("weight") and start[n].dim() > 1)
        assert torch.equal(start[name], leading_slice(supernet[name], start[name].shape)), name


def test_a_resume_with_another_training_setting_is_still_refused(trial_search, prepared, tiny_glue, tmp_path, run_cli):
    import shutil

    out = tmp_path / "search"
    shutil.copytree(trial_search[0], out)
    code, _, err = run_cli(*trial_search_args(prepared, tiny_glue, out, "--resume", "--set", "lr=0.5"))
    assert code == 2 and "other settings (lr)" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("settings", [{"trial_init": "teacher"}, {"trial_depths": "all"}])
def test_trial_start_and_depth_settings_are_checked(settings):
    with pytest.raises(UserError, match="trial_init.*trial_depths"):
        SearchConfig(depth_choice="trial", latency_budget_ms=50.0, **settings)


# ---------------------------------------------------------------- which trial wins


HAND_TRIALS = [{"predicted_ms": 10.0, "held_out_accuracy": 0.86}, {"predicted_ms": 20.0, "held_out_accuracy": 0.87},
               {"predicted_ms": 30.0, "held_out_accuracy": 0.85}, {"predicted_ms": 5.0, "held_out_accuracy": 0.87}]


@pytest.mark.parametrize("error, winner", [
    (0.0, 3),  # the best score, the tie to the faster
    (0.015, 1),  # within 0.855..0.87: the slowest of 0, 1 and 3
    (0.03, 2),  # every one within: the slowest
])
def test_the_winner_is_the_best_or_the_slowest_within_the_error(error, winner):
    assert shape_trials.chosen_trial(HAND_TRIALS, "held_out_accuracy", error) == winner


HAND_TRIAL_WIDTHS = [128, 64, 64, 128]  # the hidden size of each of HAND_TRIALS


@pytest.mark.parametrize("error, winner", [
    (0.0, 3),  # only 1 and 3 score the best: 3 is the wider
    (0.015, 0),  # 0, 1 and 3 within: 0 and 3 are the widest, 0 the slower
    (0.03, 0),  # every one within: 2 is the slowest, but narrower than 0 and 3
])
def test_trial_choice_widest_takes_the_widest_within_the_error_then_the_slowest(error, winner):
    assert shape_trials.chosen_trial(HAND_TRIALS, "held_out_accuracy", error, HAND_TRIAL_WIDTHS) == winner


@pytest.mark.parametrize("metric, score, rows, expected", [
    ("accuracy", 0.87, 800, (0.87 * 0.13 / 800) ** 0.5),  # 1.2 points: SST-2's 800 held-out rows
    ("f1", 0.84, 366, (0.84 * 0.16 / 366) ** 0.5),
    ("pearson", 0.8, 101, 0.36 / 10),
    ("matthews", -0.5, 26, 0.75 / 5),
])
def test_standard_errors(metric, score, rows, expected):
    assert shape_trials.standard_error(metric, score, rows) == pytest.approx(expected)


@pytest.mark.parametrize("choice", ["budget", "widest"])
def test_trial_choice_rederives_from_the_kept_trials(choice, trial_search, prepared, tiny_glue, tmp_path, monkeypatch):
    import shutil

    from nas.commands.cli import main

    out = tmp_path / "search"
    shutil.copytree(trial_search[0], out)
    monkeypatch.setattr(shape_trials, "trial_scores", lambda *a, **k: pytest.fail("a finished trial ran again"))
    assert main(trial_search_args(prepared, tiny_glue, out, "--resume", "--set", f"trial_choice={choice}")) == 0
    arch = Genotype.load(out / "arch.json")
    record = arch.extra["shape"]
    scores = [t["held_out_accuracy"] for t in record["trials"]]
    assert record["choice"] == choice
    assert record["standard_error"] == pytest.approx(shape_trials.standard_error("accuracy", max(scores), record["held_out_rows"]), abs=1e-6)
    widths = [Genotype.from_string(t["genotype"]).hidden_size for t in record["trials"]] if choice == "widest" else None
    winner = record["trials"][shape_trials.chosen_trial(record["trials"], "held_out_accuracy", record["standard_error"], widths)]
    assert winner["genotype"].split(";")[1:3] == [f"K={arch.num_cells}", f"H={arch.hidden_size}"]


def test_trial_choice_is_checked():
    with pytest.raises(UserError, match="setting 'trial_choice': expected best, budget or widest, got 'deepest'"):
        SearchConfig(depth_choice="trial", latency_budget_ms=50.0, trial_choice="deepest")
