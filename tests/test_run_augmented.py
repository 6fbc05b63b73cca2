"""`nas run --augment N`: every stage on the augmented transfer set, and a stopped run that continues."""

import json

import kd.knowledge
import nas.distill_data
from kd.knowledge import Knowledge


def test_nas_run_with_augment_resumes_a_stopped_knowledge_stage(tiny_glue, tiny_teacher, tmp_path, run_cli, monkeypatch):
    out = tmp_path / "run"
    args = ("run", "--task", "sst2", "--data-dir", tiny_glue, "--out", out, "--augment", 2, "--device", "cpu",
            "--set", f"model={tiny_teacher}", "--set", "knowledge.shard_rows=64",
            "--set", "teacher.epochs=1", "--set", "search.epochs=1", "--set", "search.hidden_size=16",
            "--set", "search.max_cells=2", "--set", "finetune.epochs=1", "--set", "finetune.latency_repeats=2")

    def ctrl_c(done):
        raise KeyboardInterrupt

    monkeypatch.setattr(kd.knowledge, "after_shard", ctrl_c)
    code, _, _ = run_cli(*args)
    assert code == 130
    progress = json.loads((out / "knowledge.partial" / "progress.json").read_text())
    assert progress["augmented_shards"] == 1 and not (out / "knowledge").exists()
    teacher_written = (out / "teacher" / "model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(kd.knowledge, "after_shard", lambda done: None)
    rows = []  # the training rows that search and finetune were given
    real = nas.distill_data.prepare
    monkeypatch.setattr(nas.distill_data, "prepare", lambda *a, **k: (data := real(*a, **k), rows.append(len(data.train)))[0])
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert (out / "teacher" / "model.safetensors").stat().st_mtime_ns == teacher_written  # not trained again
    assert Knowledge(out / "knowledge").manifest["splits"]["augmented"] == 192
    assert rows == [96 + 192, 96 + 192]  # search, then finetune: the task's rows and the augmented ones
    assert json.loads((out / "student" / "metrics.json").read_text())["train_rows"] == 96 + 192
