"""`nas finetune` and `nas run` end to end on the tiny GLUE folder."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nas.base.errors import UserError
from nas.commands.cli import main
from nas.train.finetune import initial_weights
from nas.train.student_training import FinetuneConfig
from searchspace.genotype import Genotype

ARCH = {"schema_version": 1, "num_cells": 2, "hidden_size": 16,
        "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]], [["cnn7", 3], ["avg_pool", 2]]]}


def finetune(prepared, tiny_glue, task, arch, out, *extra):
    teacher, knowledge = prepared[task]
    return main(["finetune", "--task", task, "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
                 "--arch", arch, "--out", out, "--epochs", 1, "--set", "latency_repeats=2", *extra])


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_finetune_from_the_search_writes_a_loadable_student_and_its_measurements(prepared, searched, tiny_glue, task, tmp_path):
    out = tmp_path / "student"
    assert finetune(prepared, tiny_glue, task, searched[task] / "arch.json", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == "search"
    assert set(metrics["metrics"]) >= {metrics["primary_metric"]}
    for model in ("student", "teacher"):
        assert metrics[model]["params"] > 0 and metrics[model]["flops"] > 0
        assert metrics[model]["batch_1_ms"] > 0 and metrics[model]["batch_32_ms"] > 0
    assert metrics["speedup"]["batch_32_speedup"] == pytest.approx(
        metrics["teacher"]["batch_32_ms"] / metrics["student"]["batch_32_ms"], rel=0.01)
    # A Hugging Face model folder at the top level, with the teacher's tokenizer.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = (["the film was good", "the plot was bad"],) if task == "sst2" else (["a movie"] * 2, ["a movie", "the plot"])
    inputs = tokenizer(*texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (2, 2)
    assert sum(p.numel() for p in model.parameters()) == metrics["student"]["params"]
    assert Genotype.load(out / "arch.json").canonical() == Genotype.load(searched[task] / "arch.json").canonical()
    # One meaning per name: the search's arch.json and finetune's metrics.json give the same sizes.
    costs = Genotype.load(searched[task] / "arch.json").costs
    assert metrics["flops_seq_len"] == costs["flops_seq_len"]
    for size in ("params", "params_without_embeddings", "flops"):
        assert metrics["student"][size] == costs[size], size
    assert metrics["student"]["params_without_embeddings"] < metrics["student"]["params"]


# ----- where the search's weights are: recorded in arch.json, the file name only for older files

def test_the_search_records_where_it_left_its_weights(searched, run_cli):
    arch = searched["sst2"] / "arch.json"
    recorded = Genotype.load(arch).search_weights
    assert recorded == "supernet_best.pt" and (arch.parent / recorded).is_file()
    code, out, err = run_cli("validate", arch)
    assert code == 0, err


def _arch(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    return Genotype.from_json(json.dumps({**ARCH, **fields})).save(folder / "arch.json")


@pytest.mark.parametrize("init", ["auto", "search"])
def test_recorded_weights_are_found_by_the_record_not_the_file_name(init, tmp_path):
    arch = _arch(tmp_path, search_weights="weights/best.pt")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.pt").write_bytes(b"x")
    (tmp_path / "supernet_best.pt").write_bytes(b"x")  # another file under the old name: not what is recorded
    config = FinetuneConfig(init=init)
    assert initial_weights(config, arch, Genotype.load(arch)) == tmp_path / "weights" / "best.pt"
    assert initial_weights(FinetuneConfig(init="scratch"), arch, Genotype.load(arch)) is None


def test_an_arch_json_from_before_the_record_finds_supernet_best_beside_it(tmp_path):
    arch = _arch(tmp_path)
    assert "search_weights" not in json.loads(arch.read_text())
    assert initial_weights(FinetuneConfig(), arch, Genotype.load(arch)) is None  # nothing beside it: scratch
    (tmp_path / "supernet_best.pt").write_bytes(b"x")
    assert initial_weights(FinetuneConfig(init="search"), arch, Genotype.load(arch)) == tmp_path / "supernet_best.pt"


def test_recorded_weights_that_are_gone_start_from_scratch_or_fail_under_init_search(tmp_path):
    arch = _arch(tmp_path, search_weights="weights/best.pt")
    (tmp_path / "supernet_best.pt").write_bytes(b"x")  # not a fallback when arch.json records a location
    assert initial_weights(FinetuneConfig(), arch, Genotype.load(arch)) is None
    with pytest.raises(UserError, match="records the search's weights at .*weights/best.pt, not a file"):
        initial_weights(FinetuneConfig(init="search"), arch, Genotype.load(arch))


def test_finetune_starts_from_moved_weights_the_arch_json_records(prepared, searched, tiny_glue, tmp_path):
    search = tmp_path / "search"
    (search / "kept").mkdir(parents=True)
    (search / "kept" / "best.pt").write_bytes((searched["sst2"] / "supernet_best.pt").read_bytes())
    arch = dataclasses.replace(Genotype.load(searched["sst2"] / "arch.json"), search_weights="kept/best.pt")
    arch.save(search / "arch.json")
    out = tmp_path / "student"
    assert finetune(prepared, tiny_glue, "sst2", search / "arch.json", out, "--set", "init=search") == 0
    assert json.loads((out / "metrics.json").read_text())["init"] == "search"
    # The student's folder holds no search weights, so neither its arch.json nor its config points at any.
    assert Genotype.load(out / "arch.json").search_weights is None
    assert "search_weights" not in json.loads((out / "config.json").read_text())["genotype"]


def test_a_hand_written_arch_trains_from_scratch(prepared, tiny_glue, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    assert finetune(prepared, tiny_glue, "sst2", arch, tmp_path / "student") == 0
    assert json.loads((tmp_path / "student" / "metrics.json").read_text())["init"] == "scratch"


def test_init_search_without_search_weights_is_a_one_line_error(prepared, tiny_glue, tmp_path, run_cli):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    teacher, knowledge = prepared["sst2"]
    code, _, err = run_cli("finetune", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge",
                           knowledge, "--arch", arch, "--out", tmp_path / "x", "--set", "init=search")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "supernet_best.pt" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("weights", [b"garbage", b"", b"PK\x03\x04 not a zip"], ids=["garbage", "empty", "broken_zip"])
def test_search_weights_that_are_not_weights_are_a_one_line_error(weights, prepared, tiny_glue, tmp_path, run_cli):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    (tmp_path / "supernet_best.pt").write_bytes(weights)
    teacher, knowledge = prepared["sst2"]
    code, _, err = run_cli("finetune", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge",
                           knowledge, "--arch", arch, "--out", tmp_path / "x")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'supernet_best.pt'}: not a weights file" in lines[0], err
    assert not (tmp_path / "x").exists()


def test_nas_run_goes_from_data_to_report(tiny_glue, tiny_teacher, tmp_path, run_cli):
    out = tmp_path / "run"
    args = ("run", "--task", "sst2", "--data-dir", tiny_glue, "--out", out, "--set", f"model={tiny_teacher}",
            "--set", "teacher.epochs=1", "--set", "search.epochs=1", "--set", "search.warmup_epochs=0", "--set", "search.hidden_size=16",
            "--set", "search.max_cells=2", "--set", "finetune.epochs=1", "--set", "finetune.latency_repeats=2")
    code, out_text, _ = run_cli(*args)
    assert code == 0
    for path in ("teacher/metrics.json", "knowledge/manifest.json", "search/arch.json", "student/metrics.json", "report.md"):
        assert (out / path).is_file(), path
    report = (out / "report.md").read_text()
    assert "| teacher |" in report and "| student |" in report
    # A second run finds every stage finished and only redraws and reports.
    before = (out / "student" / "metrics.json").stat().st_mtime_ns
    assert run_cli(*args)[0] == 0
    assert (out / "student" / "metrics.json").stat().st_mtime_ns == before


def test_nas_run_rejects_an_unknown_stage(tiny_glue, tmp_path, run_cli):
    code, _, err = run_cli("run", "--task", "sst2", "--data-dir", tiny_glue, "--out", tmp_path / "r", "--set", "serach.epochs=1")
    assert code == 2 and "serach" in err


# ----- the word-vector variant (searchspace/embedding_variants.py)

def test_set_embeddings_overrides_the_arch_and_the_student_records_it(prepared, searched, tiny_glue, tmp_path):
    from searchspace.embeddings import StudentEmbeddings

    out = tmp_path / "student"
    assert finetune(prepared, tiny_glue, "sst2", searched["sst2"] / "arch.json", out, "--set", "embeddings=factorised") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == "search"  # cells and head from the search, the factorised tables from the teacher
    written = Genotype.load(out / "arch.json")
    assert written.embeddings == "factorised" and "embeddings: factorised" in metrics["genotype"]
    # The search's size figures were for pca: dropped, the rest of its costs kept.
    searched_costs = Genotype.load(searched["sst2"] / "arch.json").costs
    assert set(written.costs) == set(searched_costs) - {"params", "params_without_embeddings", "flops"}
    model = AutoModelForSequenceClassification.from_pretrained(out)
    # Saved as served: the factorised tables and their projection folded into one table per kind.
    assert isinstance(model.embeddings, StudentEmbeddings) and model.config.folded_embeddings
    assert model.config.arch.embedding_variant == "factorised"
    assert sum(p.numel() for p in model.parameters()) == metrics["student"]["params"]


def test_the_arch_fields_variant_is_used_and_kept(prepared, tiny_glue, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({**ARCH, "embeddings": "frozen_projection"}))
    assert finetune(prepared, tiny_glue, "sst2", arch, tmp_path / "student") == 0
    assert Genotype.load(tmp_path / "student" / "arch.json").embeddings == "frozen_projection"
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    # Trained on the teacher's own (wider) table, served from one folded at the cells' width.
    teacher_width = AutoModelForSequenceClassification.from_pretrained(prepared["sst2"][0]).config.hidden_size
    assert teacher_width != ARCH["hidden_size"]
    assert model.get_input_embeddings().weight.shape[1] == ARCH["hidden_size"] and model.config.folded_embeddings


def test_an_arch_without_the_field_records_pca(prepared, tiny_glue, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    assert finetune(prepared, tiny_glue, "sst2", arch, tmp_path / "student") == 0
    assert json.loads((tmp_path / "student" / "arch.json").read_text())["embeddings"] == "pca"


def test_an_unknown_variant_is_a_one_line_error(prepared, tiny_glue, tmp_path, run_cli):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    teacher, knowledge = prepared["sst2"]
    code, _, err = run_cli("finetune", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge",
                           knowledge, "--arch", arch, "--out", tmp_path / "x", "--set", "embeddings=glove")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "embeddings" in err and "'glove'" in err and "known: pca, frozen_projection, wide_projection, factorised" in err
    assert not (tmp_path / "x").exists()


def test_chosen_embeddings_keeps_or_replaces_the_variant():
    from nas.train.finetune import chosen_embeddings

    plain = Genotype.from_json(json.dumps({**ARCH, "costs": {"params": 5, "flops": 7, "predicted_latency_ms": 1.5}}))
    kept = chosen_embeddings(plain, "")
    assert kept.embeddings == "pca" and dict(kept.costs) == dict(plain.costs)
    assert chosen_embeddings(plain, "pca") == kept
    changed = chosen_embeddings(plain, "wide_projection")
    assert changed.embeddings == "wide_projection" and dict(changed.costs) == {"predicted_latency_ms": 1.5}
    assert chosen_embeddings(changed, "").embeddings == "wide_projection"


def test_a_stopped_finetune_resumes_from_its_epoch_checkpoint(prepared, tiny_glue, tmp_path, run_cli, monkeypatch):
    from safetensors.torch import load_file
    from test_stage_resume import stop_once_after_epoch

    import nas.train.student_training

    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    teacher, knowledge = prepared["sst2"]
    args = ["finetune", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
            "--arch", arch, "--epochs", 2, "--set", "latency_repeats=2"]
    assert run_cli(*args, "--out", tmp_path / "whole")[0] == 0
    out, checkpoint = tmp_path / "stopped", tmp_path / "stopped.checkpoint.pt"
    fired = stop_once_after_epoch(monkeypatch, checkpoint.name, 1)
    code, _, _ = run_cli(*args, "--out", out)
    assert code == 130 and fired and checkpoint.is_file() and not out.exists()
    starts = []
    real = nas.train.student_training.train_loop
    monkeypatch.setattr(nas.train.student_training, "train_loop",
                        lambda **kw: (starts.append(kw["state"] and kw["state"].epoch), real(**kw))[1])
    assert run_cli(*args, "--out", out, "--resume")[0] == 0
    assert starts == [1]  # continued after epoch 1 (a fresh start passes None)
    whole, resumed = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("whole", "stopped"))
    assert resumed["history"] == whole["history"]
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoint.exists()  # a finished run removes its checkpoint
