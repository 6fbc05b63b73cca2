"""`nas sweep`: the search space, Pareto fronts, the reports and figures, the storage checks, and
tiny end-to-end sweeps: two worker processes sharing one SQLite study, a killed worker resumed,
a Ctrl-C'd trial queued again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from nas.base.errors import UserError
from nas.sweep.pareto import dominated_share, dominates, pareto_front
from nas.sweep.sweep import sweep_settings
from nas.sweep.sweep_report import load_baselines, write_reports
from nas.sweep.sweep_space import SweepConfig, sample_settings, trial_search_config
from nas.sweep.sweep_storage import RETRY_OF, SURPLUS, counts, fail_stale_trials, is_surplus, open_storage, repeated_trial
from ops import ADABERT_OPS, OP_NAMES
from searchspace.genotype import Genotype

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GENOTYPE = "v1;K=2;H=16;M=2;cell=cnn3~0,max_pool~1|cnn5~2,identity~0|cnn7~3,avg_pool~2"

optuna.logging.set_verbosity(optuna.logging.ERROR)


# ---------------------------------------------------------------- Pareto fronts


def test_pareto_front_of_hand_made_points():
    points = [
        (0.80, 10.0),  # 0: front (fastest)
        (0.90, 20.0),  # 1: front (best metric)
        (0.85, 15.0),  # 2: front (in between)
        (0.70, 12.0),  # 3: dominated by 0
        (0.90, 25.0),  # 4: dominated by 1 (same metric, slower)
        (0.85, 15.0),  # 5: equal to 2, so neither dominates the other: both on the front
    ]
    assert pareto_front(points) == [0, 2, 5, 1]
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 3.0)]) == [0]
    assert dominates((0.9, 20.0), (0.9, 25.0)) and not dominates((0.85, 15.0), (0.85, 15.0))
    assert not dominates((0.9, 20.0), (0.8, 10.0)) and not dominates((0.8, 10.0), (0.9, 20.0))


def test_dominated_share_counts_the_points_that_beat_both_objectives():
    others = [(0.9, 1.0), (0.9, 5.0), (0.5, 1.0), (0.8, 2.0)]
    assert dominated_share((0.8, 2.0), others) == 0.25  # only (0.9, 1.0); an equal point does not dominate
    assert dominated_share((0.4, 9.0), others) == 1.0
    assert dominated_share((0.4, 9.0), []) == 0.0


# ---------------------------------------------------------------- search space and settings


def test_sampled_settings_stay_in_the_space_and_fixed_ranges_are_not_sampled():
    config = SweepConfig(beta_range=(1.0, 8.0), gamma_range=(0.8, 0.8), hidden_sizes=(16, 32), max_cells_choices=(2, 3))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"hidden_size": set(), "max_cells": set(), "latency_budget_ms": set()}
    for _ in range(40):
        trial = study.ask()
        sampled = sample_settings(trial, config, (2.0, 5.0))
        assert 1.0 <= sampled["beta"] <= 8.0 and 1.0 <= sampled["tau_start"] <= 10.0
        assert 3e-4 <= sampled["arch_lr"] <= 1e-2
        assert sampled["gamma"] == 0.8 and "gamma" not in trial.params
        for key in seen:
            seen[key].add(sampled[key])
        study.tell(trial, [0.5, 1.0])
    assert seen == {"hidden_size": {16, 32}, "max_cells": {2, 3}, "latency_budget_ms": {2.0, 5.0}}


def test_a_trial_searches_with_latency_efficiency_its_budget_and_the_sweep_table():
    from nas.train.search import SearchConfig

    sampled = {"beta": 2.0, "gamma": 0.7, "tau_start": 3.0, "arch_lr": 1e-3, "hidden_size": 32, "max_cells": 3,
               "latency_budget_ms": 4.5}
    config = trial_search_config(SearchConfig(batch_size=16), sampled, SweepConfig(latency_batch_size=32), "/t.json")
    assert (config.beta, config.gamma, config.hidden_size, config.max_cells, config.latency_budget_ms) == (2.0, 0.7, 32, 3, 4.5)
    assert (config.efficiency, config.latency_table, config.latency_batch_size, config.latency_seq_len) == (
        "latency", "/t.json", 32, 64)
    assert config.batch_size == 16  # a fixed setting of the sweep reaches every trial


def test_settings_are_routed_to_the_sweep_the_search_and_the_finetune():
    sweep, search, finetune = sweep_settings(
        None, ["beta_range=1,2", "hidden_sizes=16,32", "search.batch_size=16", "finetune.lr=0.01", "finetune_epochs=2"],
        epochs=3, seed=7, budgets="5,10")
    assert sweep.beta_range == (1.0, 2.0) and sweep.hidden_sizes == (16, 32) and sweep.budgets == (5.0, 10.0)
    assert (search.batch_size, search.epochs, search.seed) == (16, 3, 7)
    assert (finetune.lr, finetune.epochs, finetune.seed) == (0.01, 2, 7)


@pytest.mark.parametrize("sets, fragment", [
    (["search.beta=2"], "beta_range"),
    (["search.latency_budget_ms=3"], "--budgets"),
    (["search.efficiency=cost"], "sets efficiency itself"),
    (["teacher.epochs=2"], "unknown stage"),
    (["beta_range=4,1"], "beta_range"),
    (["latency_batch_size=4"], "latency_batch_size"),
    (["hidden_sizes=0"], "hidden_sizes"),
    (["grace_seconds=1", "heartbeat_seconds=1"], "grace_seconds"),
])
def test_bad_settings_are_refused_naming_the_setting(sets, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        sweep_settings(None, sets)


def test_baselines_file_is_checked_entry_by_entry(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"name": "vanilla", "latency_ms": 2, "metric": 0.8, "params": 5}]))
    assert load_baselines(good) == [{"name": "vanilla", "latency_ms": 2.0, "metric": 0.8}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "vanilla", "latency_ms": 2, "metric": 0.8}, {"name": "x", "metric": 0.7}]))
    with pytest.raises(UserError, match=r"bad.json: \[1\].latency_ms"):
        load_baselines(bad)


# ---------------------------------------------------------------- reports and figures


def hand_made_study(storage=None):
    """Five trials: four complete (two on the Pareto front) and one pruned, with the user
    attributes a sweep stores."""
    distributions = {"beta": optuna.distributions.FloatDistribution(0.5, 16, log=True),
                     "hidden_size": optuna.distributions.CategoricalDistribution([16]),
                     "latency_budget_ms": optuna.distributions.CategoricalDistribution([2.0, 4.0])}
    study = optuna.create_study(directions=["maximize", "minimize"], storage=storage)
    study.set_user_attr("budgets", [2.0, 4.0])
    study.set_user_attr("settings", {"task": "sst2", "latency_seq_len": 64})
    rng = torch.Generator().manual_seed(0)
    for number, (metric, latency) in enumerate([(0.80, 1.5), (0.90, 3.5), (0.70, 2.0), (0.85, 3.9), (None, None)]):
        epochs = {f"epoch_{e:03d}": {"dev": 0.5 + 0.1 * e, "predicted_ms": 1.0, "genotype": GENOTYPE, "ops": list(ADABERT_OPS),
                                     "op_probabilities": torch.softmax(torch.randn(9, 10, generator=rng), -1).tolist()}
                  for e in (1, 2, 3)}
        attrs = {"worker": "test:1", **epochs}
        if metric is not None:
            attrs["result"] = {"metric": metric, "latency_ms": latency, "predicted_ms": latency * 0.9, "params": 1000 + number,
                               "flops": 5000, "genotype": GENOTYPE, "genotype_text": str(Genotype.from_string(GENOTYPE))}
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE if metric is not None else TrialState.PRUNED,
            values=[metric, latency] if metric is not None else None,
            params={"beta": 1.0 + number, "hidden_size": 16, "latency_budget_ms": 2.0 if latency and latency < 2 else 4.0},
            distributions=distributions, user_attrs=attrs))
    return study


def assert_png(path: Path):
    assert path.read_bytes()[:8] == PNG_MAGIC, path


@pytest.mark.parametrize("dot", [True, False], ids=["graphviz", "networkx"])
def test_reports_and_figures_are_written_from_the_study(tmp_path, monkeypatch, dot):
    import shutil

    import nas.sweep.sweep_figures

    if dot and shutil.which("dot") is None:
        pytest.skip("graphviz `dot` is not installed")
    if not dot:
        monkeypatch.setattr(nas.sweep.sweep_figures.shutil, "which", lambda name: None)
    baselines = [{"name": "vanilla", "latency_ms": 2.5, "metric": 0.75}]
    summary = write_reports(hand_made_study(), tmp_path, metric_name="accuracy", batch_size=1, baselines=baselines)
    assert summary == {"complete": 4, "front": [0, 1]}
    pareto = (tmp_path / "pareto.md").read_text()
    table = [line for line in pareto.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split("|")[1].strip() for line in table] == ["0", "1"]
    assert "4 complete, 1 pruned" in pareto and "cnn7(3)" in pareto
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[5].startswith("4,pruned")
    for name in ("pareto", "op_probabilities", "pareto_cells"):
        assert_png(tmp_path / f"{name}.png")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------- pruning


def test_a_trial_dominated_at_an_epoch_by_most_complete_trials_is_pruned():
    from nas.sweep.sweep import epoch_reporter, hopeless_share

    study = hand_made_study()  # four complete trials, each at (0.7, 1.0 ms) after search epoch 2
    assert hopeless_share(study, 2, (0.1, 5.0), min_trials=4) == (1.0, 4)
    assert hopeless_share(study, 2, (0.1, 5.0), min_trials=5) == (0.0, 4)  # too few to judge
    assert hopeless_share(study, 2, (0.75, 5.0), min_trials=1) == (0.0, 4)  # slower but better: kept
    config = SweepConfig(prune_from_epoch=2, prune_min_trials=4, prune_dominated_share=0.5)
    trial = study.ask()
    report = epoch_reporter(trial, study, config, "accuracy", predicted=lambda genotype: 5.0)
    probabilities = [[0.1] * 10] * 9

    def record(epoch, dev):
        return {"epoch": epoch, "metrics": {"accuracy": dev}, "genotype": GENOTYPE, "op_probabilities": probabilities,
                "depth_probabilities": [0.5, 0.5]}

    report(record(1, 0.1))  # before prune_from_epoch: only stored
    assert trial.user_attrs["epoch_001"]["predicted_ms"] == 5.0
    report(record(2, 0.75))
    with pytest.raises(optuna.TrialPruned, match="dominated by 100% of 4"):
        report(record(3, 0.1))
    assert trial.user_attrs["pruned_at_epoch"] == 3


# ---------------------------------------------------------------- storage


@pytest.mark.parametrize("url, fragment", [
    ("not a url", "not a database URL"),
    ("sqlite:////no/such/folder/study.db", "cannot open the database"),
    ("postgresql://user:secret@127.0.0.1:1/db", "postgresql"),
])
def test_a_storage_that_cannot_be_used_is_one_line_and_exit_2(url, fragment, tmp_path, run_cli):
    code, _, err = run_cli("sweep", "--task", "sst2", "--teacher", tmp_path / "none", "--knowledge", tmp_path / "none",
                           "--out", tmp_path / "sweep", "--trials", 2, "--storage", url)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err and "Traceback" not in err, err
    assert "secret" not in err


def test_surplus_trials_are_those_after_enough_finished_or_running_ones(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", 60, 120)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trials = [study.ask() for _ in range(3)]
    assert not is_surplus(study, trials[1].number, 2) and is_surplus(study, trials[2].number, 2)
    study.tell(trials[0], state=TrialState.FAIL)  # a failed trial leaves room for another
    assert not is_surplus(study, trials[2].number, 2)
    trials[2].set_user_attr(SURPLUS, True)
    study.tell(trials[2], state=TrialState.FAIL)
    assert counts(study) == {"finished": 0, "running": 1, "waiting": 0, "failed": 1}


def test_a_trial_without_heartbeat_is_failed_and_queued_again_with_its_settings(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", 1, 1)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    beta = trial.suggest_float("beta", 0.5, 16, log=True)
    storage.record_heartbeat(trial._trial_id)  # ... and then its worker dies
    time.sleep(2.1)  # SQLite's clock counts whole seconds: 1 s of grace can take up to 2
    fail_stale_trials(study)
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.params == {"beta": beta} and repeated_trial(study, retry.number) == first.number


# ---------------------------------------------------------------- end to end


def write_latency_table(path: Path) -> Path:
    """A hand-made table for hidden size 16 at batch 1 and 64 tokens on this CPU, in the format
    of nas/deploy/latency_table.py (measuring one takes longer than these tests should)."""
    from nas.deploy.latency_table import describe_device

    device = describe_device(torch.device("cpu"))  # one thread (conftest), as the workers run
    ops = {op: 0.01 if op in ("avg_pool", "max_pool", "identity", "zero") else 0.1 + 0.02 * int(op[-1]) for op in ADABERT_OPS}
    path.write_text(json.dumps({
        "schema_version": 1, "kind": "adabert-latency-table", "hidden_size": 16, "device": device,
        "entries": [{"batch_size": 1, "seq_len": 64, "frame_ms": 0.5, "frame_pair_ms": 0.7, "embedding_ms": 0.1,
                     "head_ms": 0.1, "cell_ms": 0.05, "ops_ms": ops}]}))
    return path


def sweep_args(prepared, tiny_glue, out, trials, *extra):
    teacher, knowledge = prepared["sst2"]
    return ["sweep", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
            "--out", out, "--trials", trials, "--device", "cpu", "--latency-table", write_latency_table(out.parent / "table.json"),
            "--budgets", "1.5,3", "--set", "hidden_sizes=16", "--set", "max_cells_choices=2",
            "--set", "finetune.latency_repeats=1", "--set", "search.warmup_epochs=0",
            "--set", "heartbeat_seconds=1", "--set", "grace_seconds=2", *extra]


def worker(args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nas", *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def load_study(out: Path):
    return optuna.load_study(study_name="adabert-sst2", storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.slow
def test_two_workers_share_one_study_and_run_each_trial_once(prepared, tiny_glue, tmp_path):
    out = tmp_path / "sweep"
    args = sweep_args(prepared, tiny_glue, out, 3, "--epochs", 1)
    workers = [worker(args), worker(args)]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs

    study = load_study(out)
    counted = [t for t in study.get_trials() if not t.user_attrs.get(SURPLUS)]
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    # Each counted trial was started and finished by exactly one worker, in its own folder.
    started = [int(n) for log in logs for n in re.findall(r"^trial (\d+): beta=", log, re.M)]
    finished = [int(n) for log in logs for n in re.findall(r"^trial (\d+): dev ", log, re.M)]
    assert sorted(started) == sorted(finished) == sorted(t.number for t in counted)
    for t in counted:
        record = json.loads((out / "trials" / f"{t.number:04d}" / "trial.json").read_text())
        assert record["worker"] == t.user_attrs["worker"]
        assert (out / "trials" / f"{t.number:04d}" / "student" / "metrics.json").is_file()
    assert {p.name for p in (out / "trials").iterdir()} == {f"{t.number:04d}" for t in counted}
    for name in ("pareto", "op_probabilities", "pareto_cells"):
        assert_png(out / f"{name}.png")
    assert "| trial |" in (out / "pareto.md").read_text()


@pytest.mark.slow
def test_a_killed_worker_is_resumed_by_rerunning_the_command(prepared, tiny_glue, tmp_path, run_cli):
    out = tmp_path / "sweep"
    args = sweep_args(prepared, tiny_glue, out, 1, "--epochs", 2)
    first = worker(args)
    checkpoint = out / "trials" / "0000" / "search" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no chance to clean up: the trial stays RUNNING
    first.communicate()
    assert checkpoint.is_file()
    assert [t.state for t in load_study(out).get_trials()] == [TrialState.RUNNING]

    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "resuming trial 0" in stdout
    trials = load_study(out).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert repeated_trial(load_study(out), 1) == 0 and trials[1].params == trials[0].params
    history = json.loads((out / "trials" / "0001" / "search" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]


def test_a_trial_stopped_by_ctrl_c_is_queued_again_and_resumed(prepared, tiny_glue, tmp_path, run_cli, monkeypatch):
    import nas.sweep.sweep

    out = tmp_path / "sweep"
    args = sweep_args(prepared, tiny_glue, out, 1, "--epochs", 1)

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(nas.sweep.sweep, "run_finetune", interrupted)  # the name the sweep calls
        code, _, err = run_cli(*args)
    assert code == 130, err
    first, queued = load_study(out).get_trials()
    assert first.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.user_attrs[RETRY_OF] == 0 and queued.user_attrs["epoch_001"] == first.user_attrs["epoch_001"]

    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "resuming trial 0" in stdout
    assert [t.state for t in load_study(out).get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "| 1 |" in (out / "pareto.md").read_text()

