"""`nas run --augment N`: every stage on the augmented transfer set, and a run stopped in the middle
of a stage (knowledge, then finetune) that continues where it stopped when run again."""

import json

from kd.knowledge import Knowledge
import kd.knowledge
import nas.train.distill_data
import nas.train.finetune
import nas.train.search
import nas.train.student_training
from test_stage_resume import stop_once_after_epoch


def test_nas_run_with_augment_resumes_each_stopped_stage(tiny_glue, tiny_teacher, tmp_path, run_cli, monkeypatch):
    out = tmp_path / "run"
    args = ("run", "--task", "sst2", "--data-dir", tiny_glue, "--out", out, "--augment", 2, "--device", "cpu",
            "--set", f"model={tiny_teacher}", "--set", "knowledge.shard_rows=64",
            "--set", "teacher.epochs=1", "--set", "search.epochs=1", "--set", "search.warmup_epochs=0", "--set", "search.hidden_size=16",
            "--set", "search.max_cells=2", "--set", "finetune.epochs=2", "--set", "finetune.latency_repeats=2")

    # ---- stopped in the knowledge stage, after its first shard of augmented rows
    def ctrl_c(done):
        raise KeyboardInterrupt

    monkeypatch.setattr(kd.knowledge, "after_shard", ctrl_c)
    assert run_cli(*args)[0] == 130
    progress = json.loads((out / "knowledge.partial" / "progress.json").read_text())
    assert progress["augmented_shards"] == 1 and not (out / "knowledge").exists()
    teacher_written = (out / "teacher" / "model.safetensors").stat().st_mtime_ns

    # ---- run again: knowledge continues, search runs, finetune is stopped after its first epoch
    monkeypatch.setattr(kd.knowledge, "after_shard", lambda done: None)
    rows = []  # the training rows that search and finetune were given
    real_prepare = nas.train.distill_data.prepare
    for stage in (nas.train.search, nas.train.finetune):  # each stage's own name for `prepare`
        monkeypatch.setattr(stage, "prepare", lambda *a, **k: (data := real_prepare(*a, **k), rows.append(len(data.train)))[0])
    stop_once_after_epoch(monkeypatch, "finetune.pt", 1)
    assert run_cli(*args)[0] == 130
    assert (out / "teacher" / "model.safetensors").stat().st_mtime_ns == teacher_written  # not trained again
    assert Knowledge(out / "knowledge").manifest.splits["augmented"] == 192
    assert (out / "search" / "arch.json").is_file() and (out / ".resume" / "finetune.pt").is_file()
    assert not (out / "student").exists()

    # ---- and again: finetune continues from its first epoch
    starts = []
    real_loop = nas.train.student_training.train_loop
    monkeypatch.setattr(nas.train.student_training, "train_loop",
                        lambda **kw: (starts.append(kw["state"].epoch if kw["state"] else 0), real_loop(**kw))[1])
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert starts == [1]
    assert rows == [96 + 192] * 3  # search, finetune, finetune again: the task's rows and the augmented ones
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert metrics["train_rows"] == 96 + 192 and len(metrics["history"]) == 2
    assert (out / "student" / "model.safetensors").is_file() and not (out / ".resume" / "finetune.pt").exists()
    assert not (out / ".settings").exists()  # the stages got their settings in memory, three runs over
