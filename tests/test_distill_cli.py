"""`nas distill` end to end on the tiny GLUE folder: every method writes a student and the metrics
`nas finetune` writes, and bad input is one line and exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kd.methods import METHODS
from kd.students import load_student
from tiny_students import TINY

# The keys of `nas finetune`'s metrics.json, so the baselines' results compare with the searched student's.
FINETUNE_KEYS = {
    "task", "primary_metric", "metrics", "teacher_metrics", "best_epoch", "history", "train_seconds", "train_rows",
    "init", "genotype", "flops_seq_len", "latency_device", "latency_threads", "student", "teacher", "speedup",
    "optimised", "compression", "config", "provenance",
}
ARCH = {"schema_version": 1, "num_cells": 2, "hidden_size": 16,
        "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]], [["cnn7", 3], ["avg_pool", 2]]]}
TEXTS = {"sst2": (["the film was good", "the plot was bad"],), "mrpc": (["a movie"] * 2, ["a movie", "the plot"])}


def distill(run_cli, prepared, tiny_glue, task, method, out, *extra):
    teacher, knowledge = prepared[task]
    student = ("--student", TINY[method]) if method in TINY else ()
    return run_cli("distill", "--method", method, *student, "--task", task, "--data-dir", tiny_glue,
                   "--teacher", teacher, "--knowledge", knowledge, "--out", out, "--epochs", 1, "--max-train", 32,
                   "--max-dev", 16, "--device", "cpu", "--set", "latency_repeats=2", "--set", "batch_size=16", *extra)


def check_run(out, task, method) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert FINETUNE_KEYS <= set(metrics)
    assert metrics["method"] == method and metrics["task"] == task
    assert [stage["name"] for stage in metrics["stages"]] == list(METHODS[method].stages)
    assert metrics["primary_metric"] in metrics["metrics"]
    for model in ("student", "teacher"):
        assert metrics[model]["params"] > 0 and metrics[model]["flops"] > 0 and metrics[model]["batch_32_ms"] > 0
    model = load_student(out).eval()
    assert sum(p.numel() for p in model.parameters()) == metrics["student"]["params"]
    inputs = AutoTokenizer.from_pretrained(out)(*TEXTS[task], return_tensors="pt", padding=True)
    if metrics["student_spec"].startswith("transformer"):
        model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        assert model(**inputs).logits.shape == (2, 2)
    return metrics


@pytest.mark.parametrize("method", list(METHODS))
def test_distill_writes_the_student_and_its_measurements(run_cli, prepared, tiny_glue, tmp_path, method):
    code, stdout, err = distill(run_cli, prepared, tiny_glue, "sst2", method, tmp_path / "out")
    assert code == 0, err
    assert f"distill {method} sst2" in stdout
    metrics = check_run(tmp_path / "out", "sst2", method)
    if method == "theseus":  # the successor alone is exported, at half the teacher's depth
        assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").config.num_hidden_layers == 1
    if method == "bilstm":  # nn.LSTM's matmuls are added to what the FLOP counter sees
        assert metrics["student"]["flops"] >= load_student(tmp_path / "out").recurrent_flops(metrics["flops_seq_len"])


@pytest.mark.parametrize("method", ["vanilla", "bilstm", "pkd-skip"])
def test_distill_on_sentence_pairs(run_cli, prepared, tiny_glue, tmp_path, method):
    code, _, err = distill(run_cli, prepared, tiny_glue, "mrpc", method, tmp_path / "out")
    assert code == 0, err
    assert {"f1", "accuracy"} <= set(check_run(tmp_path / "out", "mrpc", method)["metrics"])


def test_distill_into_a_searched_student(run_cli, prepared, tiny_glue, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    code, _, err = distill(run_cli, prepared, tiny_glue, "sst2", "probes", tmp_path / "out", "--student", f"arch:{arch}")
    assert code == 0, err
    metrics = check_run(tmp_path / "out", "sst2", "probes")
    assert metrics["genotype"] and (tmp_path / "out" / "arch.json").is_file()


@pytest.mark.parametrize("method", ["probes", "pkd-skip"])
def test_a_searched_student_is_saved_as_served(run_cli, prepared, tiny_glue, tmp_path, method):
    """Whichever loop trains it, a searched student of projected word vectors is saved and measured
    folded (`for_inference`): one token table as wide as its cells."""
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({**ARCH, "embeddings": "frozen_projection"}))
    code, _, err = distill(run_cli, prepared, tiny_glue, "sst2", method, tmp_path / "out", "--student", f"arch:{arch}")
    assert code == 0, err
    metrics = check_run(tmp_path / "out", "sst2", method)
    saved = load_student(tmp_path / "out")
    assert saved.config.folded_embeddings and saved.get_input_embeddings().weight.shape[1] == ARCH["hidden_size"]
    assert "embeddings: frozen_projection" in metrics["genotype"]


@pytest.mark.parametrize("args, fragment", [
    (("--method", "nope"), "unknown KD method 'nope'"),
    (("--student", "transformer:depth=2"), "unknown key 'depth'"),
    (("--method", "pkd-skip", "--student", "transformer:layers=2", "--set", "layer_map=1:9"),
     "teacher layer 9 is outside"),
    (("--method", "minilm", "--student", "bilstm:hidden=64"), "BiLSTMClassifier cannot give attention maps"),
    (("--set", "beta=2"), "'beta' is not used by method vanilla"),
])
def test_bad_distill_input_is_one_line_and_exit_2(run_cli, prepared, tiny_glue, tmp_path, args, fragment):
    teacher, knowledge = prepared["sst2"]
    code, _, err = run_cli("distill", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher,
                           "--knowledge", knowledge, "--out", tmp_path / "out", "--max-train", 8, "--device", "cpu", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "out").exists()
