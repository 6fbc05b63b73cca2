"""The KD baselines train on the same transfer set as the searched student: `nas distill` joins
the knowledge's augmented rows (every method), `use_augmented=false` leaves them out, and
metrics.json says which (issue 11)."""

from __future__ import annotations

import json

import pytest
from test_distill_cli import ARCH
from tiny_students import TINY

from kd.methods import METHODS

ROWS, N, BATCH = 16, 2, 16


@pytest.fixture(scope="module")
def augmented_knowledge(prepared, tiny_glue, tmp_path_factory):
    """The sst2 teacher's knowledge with the adabert preset at 2 variants per row."""
    from nas.commands.cli import main

    teacher, _ = prepared["sst2"]
    out = tmp_path_factory.mktemp("augmented") / "knowledge"
    assert main(["knowledge", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher),
                 "--out", str(out), "--device", "cpu", "--augment-preset", "adabert", "--augment", str(N)]) == 0
    return teacher, out


def distill(run_cli, teacher, knowledge, tiny_glue, method, out, *extra):
    student = ("--student", TINY[method]) if method in TINY else ()
    code, stdout, err = run_cli(
        "distill", "--method", method, *student, "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher,
        "--knowledge", knowledge, "--out", out, "--epochs", 1, "--max-train", ROWS, "--max-dev", 8, "--device", "cpu",
        "--set", "latency_repeats=1", "--set", f"batch_size={BATCH}", *extra)
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text()), stdout


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_on_the_augmented_rows(run_cli, augmented_knowledge, tiny_glue, tmp_path, method):
    teacher, knowledge = augmented_knowledge
    metrics, stdout = distill(run_cli, teacher, knowledge, tiny_glue, method, tmp_path / "out")
    assert metrics["train_rows"] == ROWS * (1 + N) and metrics["augmented_rows"] == ROWS * N
    assert metrics["augmentation"]["preset"] == "adabert" and metrics["augmentation"]["n"] == N
    # The loop went over all of them: one step per batch of the joined rows, in every stage.
    assert all(stage["steps"] == -(-ROWS * (1 + N) // BATCH) for stage in metrics["stages"])
    assert f"{ROWS * (1 + N)} rows ({ROWS * N} augmented)" in stdout


def test_use_augmented_false_trains_on_the_task_rows_only(run_cli, augmented_knowledge, tiny_glue, tmp_path):
    teacher, knowledge = augmented_knowledge
    metrics, _ = distill(run_cli, teacher, knowledge, tiny_glue, "vanilla", tmp_path / "out", "--set", "use_augmented=false")
    assert metrics["train_rows"] == ROWS and metrics["augmented_rows"] == 0 and metrics["augmentation"] is None
    assert [stage["steps"] for stage in metrics["stages"]] == [-(-ROWS // BATCH)]


@pytest.mark.parametrize("searched", [False, True])  # a KD baseline, and a searched student (`nas finetune`'s loop)
def test_augmented_copies_takes_fewer_copies_per_row(run_cli, augmented_knowledge, tiny_glue, tmp_path, searched):
    teacher, knowledge = augmented_knowledge
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    method, student = ("probes", ("--student", f"arch:{arch}")) if searched else ("vanilla", ())
    metrics, _ = distill(run_cli, teacher, knowledge, tiny_glue, method, tmp_path / "out", *student,
                         "--set", "augmented_copies=1")
    assert metrics["train_rows"] == ROWS * 2 and metrics["augmented_rows"] == ROWS


def test_knowledge_without_augmented_rows_records_none(run_cli, prepared, tiny_glue, tmp_path):
    teacher, knowledge = prepared["sst2"]
    metrics, stdout = distill(run_cli, teacher, knowledge, tiny_glue, "vanilla", tmp_path / "out")
    assert metrics["train_rows"] == ROWS and metrics["augmented_rows"] == 0
    assert "augmented)" not in stdout
