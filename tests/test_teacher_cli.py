"""`nas teacher` end to end on tiny data: the saved folder, metrics.json, seeds, settings, and Ctrl-C."""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nas.commands.cli import main
import nas.train.teacher




def teacher_args(data_dir, model, out, *extra, task="sst2"):
    return ["teacher", "--task", task, "--data-dir", data_dir, "--model", model, "--out", out, "--device", "cpu", *extra]


def train(data_dir, model, out, *extra, task="sst2") -> dict:
    assert main([str(a) for a in teacher_args(data_dir, model, out, *extra, task=task)]) == 0
    return json.loads((Path(out) / "metrics.json").read_text())


def weights(folder) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dev_rows(data_dir: Path):
    lines = (data_dir / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    fields = [line.split("\t") for line in lines]
    return [text.strip() for text, _ in fields], torch.tensor([int(label) for _, label in fields])


@pytest.fixture(scope="module")
def sst2(tiny_glue, tiny_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher_sst2") / "out"
    started = time.perf_counter()
    metrics = train(tiny_glue, tiny_teacher, out, "--epochs", 1)
    return out, metrics, time.perf_counter() - started


def test_writes_a_folder_transformers_can_load(sst2, tiny_glue, tiny_teacher):
    out, metrics, wall_seconds = sst2
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    # The teacher's own word-level vocabulary came along (an empty tokenizer would give [UNK]s).
    source = AutoTokenizer.from_pretrained(str(tiny_teacher))
    assert tokenizer("good movie")["input_ids"] == source("good movie")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("good movie")["input_ids"]) == ["[CLS]", "good", "movie", "[SEP]"]
    assert model.config.num_labels == 2
    assert not same_weights(weights(out), weights(tiny_teacher)), "one epoch of training changed nothing"

    assert metrics["task"] == "sst2"
    assert set(metrics["metrics"]) == {"accuracy"}
    # Rounded to 0.1 s, so a tiny run may record 0.0; it can never exceed the whole command's time.
    assert 0.0 <= metrics["train_seconds"] <= round(wall_seconds, 1) + 0.1
    assert metrics["params"] == sum(p.numel() for p in model.parameters())
    assert metrics["train_rows"] == 96 and metrics["dev_rows"] == {"dev": 32}
    assert metrics["best_epoch"] == 1 and len(metrics["history"]) == 1

    # The recorded accuracy is the saved model's own on dev.
    texts, labels = dev_rows(tiny_glue)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")).logits
    assert metrics["metrics"]["accuracy"] == pytest.approx((logits.argmax(-1) == labels).float().mean().item())


def test_tensorboard_events_are_written(sst2):
    out, _, _ = sst2
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    assert any(b"dev/accuracy" in event.read_bytes() for event in events)


def test_mrpc_reports_f1_and_accuracy(tiny_glue, tiny_teacher, tmp_path):
    metrics = train(tiny_glue, tiny_teacher, tmp_path / "mrpc", "--epochs", 1, "--max-train", 32, task="mrpc")
    assert metrics["task"] == "mrpc"
    assert set(metrics["metrics"]) == {"f1", "accuracy"}
    assert all(0.0 <= value <= 1.0 for value in metrics["metrics"].values())
    assert metrics["primary_metric"] == "f1"
    assert metrics["max_length"] == 128  # the default for sentence pairs


def test_max_train_limits_the_training_rows(tiny_glue, tiny_teacher, tmp_path):
    metrics = train(tiny_glue, tiny_teacher, tmp_path / "out", "--epochs", 1, "--max-train", 10)
    assert metrics["train_rows"] == 10
    assert metrics["dev_rows"] == {"dev": 32}


def test_the_same_seed_gives_the_same_teacher(tiny_glue, tiny_teacher, tmp_path):
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        metrics = train(tiny_glue, tiny_teacher, tmp_path / name, "--epochs", 1, "--max-train", 32, "--seed", seed)
        runs[name] = (metrics, weights(tmp_path / name))
    (first, first_weights), (again, again_weights), (_, other_weights) = runs["a"], runs["b"], runs["c"]
    assert first["config"]["seed"] == 7
    assert first["metrics"] == again["metrics"] and first["history"] == again["history"]
    assert same_weights(first_weights, again_weights)
    # Guards the comparison: another seed (dropout masks, batch order) lands elsewhere.
    assert not same_weights(first_weights, other_weights)


def test_config_file_and_set_are_applied(tiny_glue, tiny_teacher, tmp_path):
    config = tmp_path / "teacher.yaml"
    config.write_text("teacher:\n  epochs: 3\n  max_length: 16\n  batch_size: 8\n  lr: 0.01\n")
    # The --epochs flag beats the file, and --set beats both: a zero learning rate leaves every weight as loaded.
    metrics = train(tiny_glue, tiny_teacher, tmp_path / "out", "--max-train", 16, "--config", config, "--epochs", 2,
                    "--set", "lr=0")
    assert metrics["config"]["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["config"]["max_length"] == 16 and metrics["max_length"] == 16
    assert metrics["config"]["batch_size"] == 8
    assert metrics["config"]["lr"] == 0.0
    assert same_weights(weights(tmp_path / "out"), weights(tiny_teacher))


def interrupt_after_saving(parent: Path, seen: list):
    """A stand-in for the training loop: save the model as a new best, note what lies under `parent`, then Ctrl-C."""

    def fake_train_loop(*, hooks, **_):
        hooks.on_best(None, {})
        seen.extend(sorted(p.name for p in parent.rglob("*")))
        raise KeyboardInterrupt

    return fake_train_loop


def test_an_interrupted_run_leaves_nothing(run_cli, tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(nas.train.teacher, "train_loop", interrupt_after_saving(tmp_path, seen))
    out = tmp_path / "runs" / "teacher"
    code, _, err = run_cli(*teacher_args(tiny_glue, tiny_teacher, out, "--epochs", 1))
    assert code == 130
    assert "interrupted" in err
    assert "model.safetensors" in seen, "the fake loop wrote nothing, so there was nothing to clean up"
    assert list((tmp_path / "runs").iterdir()) == []  # neither the folder nor a .partial one


def test_an_interrupted_rerun_keeps_the_finished_folder(run_cli, sst2, tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    out = tmp_path / "teacher"
    shutil.copytree(sst2[0], out)
    before = snapshot(out)
    seen = []
    monkeypatch.setattr(nas.train.teacher, "train_loop", interrupt_after_saving(tmp_path, seen))
    code, _, _ = run_cli(*teacher_args(tiny_glue, tiny_teacher, out, "--epochs", 1))
    assert code == 130
    assert seen.count("model.safetensors") == 2  # the finished folder's and the interrupted run's
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]


def test_a_stopped_run_resumes_from_its_epoch_checkpoint(run_cli, tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    from test_stage_resume import stop_once_after_epoch

    whole = train(tiny_glue, tiny_teacher, tmp_path / "whole", "--epochs", 2, "--max-train", 32)
    out = tmp_path / "stopped"
    checkpoint = tmp_path / "stopped.checkpoint.pt"
    fired = stop_once_after_epoch(monkeypatch, checkpoint.name, 1)
    code, _, _ = run_cli(*teacher_args(tiny_glue, tiny_teacher, out, "--epochs", 2, "--max-train", 32))
    assert code == 130 and fired and checkpoint.is_file() and not out.exists()
    starts = []
    real = nas.train.teacher.train_loop
    monkeypatch.setattr(nas.train.teacher, "train_loop", lambda **kw: (starts.append(kw["state"] and kw["state"].epoch), real(**kw))[1])
    resumed = train(tiny_glue, tiny_teacher, out, "--epochs", 2, "--max-train", 32, "--resume")
    assert starts == [1]  # continued after epoch 1 (a fresh start would pass None)
    assert resumed["history"] == whole["history"]
    assert same_weights(weights(tmp_path / "whole"), weights(out))
    assert not checkpoint.exists()  # a finished run removes its checkpoint


def test_without_resume_an_old_checkpoint_is_not_used(tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    out = tmp_path / "teacher"
    (tmp_path / "teacher.checkpoint.pt").write_bytes(b"left by an older run")
    starts = []
    real = nas.train.teacher.train_loop
    monkeypatch.setattr(nas.train.teacher, "train_loop", lambda **kw: (starts.append(kw["state"]), real(**kw))[1])
    train(tiny_glue, tiny_teacher, out, "--epochs", 1, "--max-train", 16)
    assert starts == [None] and not (tmp_path / "teacher.checkpoint.pt").exists()


def test_resume_from_a_garbage_checkpoint_is_one_line(run_cli, tiny_glue, tiny_teacher, tmp_path):
    (tmp_path / "teacher.checkpoint.pt").write_bytes(b"left by an older run")
    code, _, err = run_cli(*teacher_args(tiny_glue, tiny_teacher, tmp_path / "teacher", "--epochs", 1, "--max-train", 16,
                                         "--resume"))
    assert code == 2 and "teacher.checkpoint.pt: not a readable checkpoint" in err and "Traceback" not in err
