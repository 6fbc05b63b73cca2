"""`nas search` end to end on the tiny GLUE folder: artifacts, exact resume after Ctrl-C, the
NaN guard, resume checks, soft mode, and drawing the result."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from nas.commands.cli import main
from nas.data.glue_io import load_task_data
from nas.data.tasks import get_task
from nas.train.search import CHECKPOINT, Search
from ops import ADABERT_OPS
from searchspace.genotype import Genotype
from searchspace.student import compile_genotype

SETTINGS = ("--epochs", "2", "--set", "hidden_size=16", "--set", "max_cells=3", "--set", "warmup_epochs=0")
# 96 training rows, 9 held out for architecture steps, batches of 64: 2 steps per epoch.
# Steps are counted after the weight update, so the architecture step of step 3 is the middle
# of epoch 2 and that of step 1 the middle of epoch 1.
STEPS_PER_EPOCH = 2


def search_args(prepared, tiny_glue, task, out, *extra):
    teacher, knowledge = prepared[task]
    return ["search", "--task", task, "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
            "--out", out, "--device", "cpu", *SETTINGS, *extra]


@pytest.fixture(scope="module")
def finished(prepared, tiny_glue, tmp_path_factory):
    """{task: out folder} of an uninterrupted 2-epoch search (run A of the resume tests)."""
    root = tmp_path_factory.mktemp("search")
    folders = {}
    for task in ("sst2", "mrpc"):
        assert main(search_args(prepared, tiny_glue, task, root / task)) == 0
        folders[task] = root / task
    return folders


def head_commit() -> str | None:
    """The checkout's commit as git reports it, or None outside a git checkout."""
    checkout = Path(__file__).resolve().parent.parent
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    assert re.fullmatch(r"[0-9a-f]{40}", done.stdout.strip()), done.stdout
    return done.stdout.strip()


def load_checkpoint(folder: Path) -> dict:
    return torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------- artifacts


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_search_writes_a_valid_arch_json_and_its_artifacts(finished, task, run_cli):
    out = finished[task]
    arch = out / "arch.json"
    code, stdout, _ = run_cli("validate", arch)
    assert code == 0 and "valid" in stdout

    genotype = Genotype.load(arch)
    assert len(genotype.op_logits) == 9 and all(len(row) == len(ADABERT_OPS) for row in genotype.op_logits)
    assert len(genotype.depth_logits) == 3
    assert genotype.max_cells == 3 and 1 <= genotype.num_cells <= 3 and genotype.hidden_size == 16

    assert genotype.costs["params"] > 0 and genotype.costs["flops"] > 0
    teacher_task = get_task(task)
    # The default word vectors are `auto`: the tiny teacher's own (32 wide) for single sentences, pca for pairs.
    assert genotype.embedding_variant == ("pca" if teacher_task.is_pair else "frozen_projection")
    student = compile_genotype(genotype, vocab_size=29, max_positions=128, num_labels=2, pair=teacher_task.is_pair,
                               teacher_width=32)
    # The costs are the student's as served: its word vectors folded into one table as wide as the cells.
    assert genotype.costs["params"] == sum(p.numel() for p in student.for_inference().parameters())

    provenance = genotype.provenance
    assert provenance["task"] == task and provenance["seed"] == 42
    assert provenance["git_commit"] == head_commit()
    config = provenance["config"]
    assert (config["hidden_size"], config["max_cells"], config["warmup_epochs"], config["epochs"]) == (16, 3, 0, 2)
    assert teacher_task.primary_metric in genotype.extra["dev_metric"]
    assert len(genotype.extra["history"]) == 2

    assert load_checkpoint(out)["loop"]["epoch"] == 2
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    for epoch in (1, 2):
        assert (out / "cells" / f"epoch_{epoch:03d}.dot").read_text().lstrip().startswith(("digraph", "strict digraph"))


def test_the_ops_setting_is_the_space_the_search_offers_and_records(prepared, tiny_glue, tmp_path):
    ops = ("cnn3", "identity", "zero", "bigru")
    out = tmp_path / "ops"
    assert main(search_args(prepared, tiny_glue, "sst2", out, "--set", f"ops={','.join(ops)}")) == 0
    genotype = Genotype.load(out / "arch.json")
    assert genotype.ops == ops and all(len(row) == len(ops) for row in genotype.op_logits)
    assert {edge.op for _, edge in genotype.edges()} <= set(ops) - {"zero"}
    assert tuple(genotype.provenance["config"]["ops"]) == ops
    compile_genotype(genotype, vocab_size=29, max_positions=128, num_labels=2, pair=False, teacher_width=32)


def test_plot_draws_every_op_of_the_genotype(finished, tmp_path, run_cli):
    arch = finished["sst2"] / "arch.json"
    code, _, err = run_cli("plot", arch, "--out", tmp_path / "x.dot")
    assert code == 0, err
    dot = (tmp_path / "x.dot").read_text()
    assert "digraph" in dot
    for _, edge in Genotype.load(arch).edges():
        assert edge.op in dot


def test_soft_mode_search_completes(prepared, tiny_glue, tmp_path, run_cli):
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "sst2", tmp_path, "--set", "mode=soft", "--epochs", "1"))
    assert code == 0, err
    genotype = Genotype.load(tmp_path / "arch.json")
    assert genotype.provenance["config"]["mode"] == "soft"
    assert load_checkpoint(tmp_path)["loop"]["epoch"] == 1


def test_train_rows_searches_on_the_first_rows_only(prepared, tiny_glue, tmp_path, run_cli, monkeypatch):
    import nas.train.search as search_module

    seen = []

    def spy(data, *args, **kwargs):
        seen.append([example.text_a for example in data.train])
        return prepare(data, *args, **kwargs)

    prepare = search_module.prepare
    monkeypatch.setattr(search_module, "prepare", spy)
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "sst2", tmp_path, "--set", "train_rows=40", "--epochs", "1"))
    assert code == 0, err
    every_row = load_task_data(get_task("sst2"), tiny_glue).train
    assert len(every_row) > 40 and seen == [[example.text_a for example in every_row[:40]]]
    assert Genotype.load(tmp_path / "arch.json").provenance["config"]["train_rows"] == 40


# ---------------------------------------------------------------- Ctrl-C and exact resume


def interrupt_architecture_step(monkeypatch, step: int, when: str) -> None:
    """Ctrl-C during the step numbered `step`: `before` its architecture update (a real SIGINT,
    so a loop that defers signals to step boundaries is simulated faithfully), or `after` it."""
    original = Search.architecture_step

    def wrapper(self, state, batch):
        if when == "before" and state.step == step:
            signal.raise_signal(signal.SIGINT)
        result = original(self, state, batch)
        if when == "after" and state.step == step:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(Search, "architecture_step", wrapper)


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, which it installs only when its parent did not ignore SIGINT
    (a job started with nohup or `&` from a script does): the simulated Ctrl-C needs it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("step, when", [(3, "after"), (1, "after"), (3, "before"), (1, "before")],
                         ids=["epoch2-boundary", "epoch1-boundary", "epoch2-mid-step", "epoch1-mid-step"])
def test_resume_after_interrupt_matches_an_uninterrupted_run(
    finished, prepared, tiny_glue, tmp_path, monkeypatch, run_cli, python_sigint, step, when
):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    args = search_args(prepared, tiny_glue, "sst2", tmp_path)
    with monkeypatch.context() as patch:
        interrupt_architecture_step(patch, step, when)
        code, _, err = run_cli(*args)
    assert code == 130, err
    assert "interrupted" in err
    assert not (tmp_path / "arch.json").exists()
    loop = load_checkpoint(tmp_path)["loop"]
    assert loop["epoch"] == (step - 1) // STEPS_PER_EPOCH  # saved in the middle of that epoch
    if when == "after":
        assert (loop["step"], loop["batch_in_epoch"]) == (step, (step - 1) % STEPS_PER_EPOCH + 1)

    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    a, b = Genotype.load(finished["sst2"] / "arch.json"), Genotype.load(tmp_path / "arch.json")
    assert b.op_logits == a.op_logits
    assert b.depth_logits == a.depth_logits
    assert b.architecture() == a.architecture()
    assert b.extra["history"] == a.extra["history"]
    weights_a, weights_b = load_checkpoint(finished["sst2"])["supernet"], load_checkpoint(tmp_path)["supernet"]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


# ---------------------------------------------------------------- NaN guard


def _nan_loss(monkeypatch, when):
    original = Search.loss

    def wrapper(self, rows):
        loss, terms = original(self, rows)
        return (loss * float("nan"), terms) if when(self, rows) else (loss, terms)

    monkeypatch.setattr(Search, "loss", wrapper)


def _assert_epoch_one_checkpoint_intact(folder: Path) -> None:
    saved = load_checkpoint(folder)
    assert (saved["loop"]["epoch"], saved["loop"]["step"], saved["loop"]["batch_in_epoch"]) == (1, STEPS_PER_EPOCH, 0)
    assert all(torch.isfinite(t).all() for t in saved["supernet"].values() if t.is_floating_point())
    assert not (folder / "arch.json").exists()


def test_nan_loss_stops_with_exit_2_and_keeps_the_last_good_checkpoint(prepared, tiny_glue, tmp_path, monkeypatch, run_cli):
    # The first loss of epoch 2 (a weight step) becomes NaN.
    _nan_loss(monkeypatch, lambda self, rows: self.state.epoch >= 1)
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "sst2", tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "loss" in lines[0] and "nan" in lines[0].lower(), err
    assert "Traceback" not in err
    _assert_epoch_one_checkpoint_intact(tmp_path)


def test_nan_in_an_architecture_step_also_stops_before_a_bad_checkpoint(prepared, tiny_glue, tmp_path, monkeypatch, run_cli):
    # The architecture loss of step 3 (middle of epoch 2) becomes NaN: its NaN gradients would
    # poison the architecture logits, so the run must stop before saving anything from them.
    _nan_loss(monkeypatch, lambda self, rows: self.state.step == 3 and set(rows) <= set(self.arch_rows))
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "sst2", tmp_path))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    _assert_epoch_one_checkpoint_intact(tmp_path)


# ---------------------------------------------------------------- resume checks


def test_resume_with_other_settings_is_refused(finished, prepared, tiny_glue, tmp_path, run_cli):
    out = tmp_path / "run"
    shutil.copytree(finished["sst2"], out)
    checkpoint = (out / CHECKPOINT).read_bytes()
    arch = (out / "arch.json").read_text()
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "sst2", out, "--set", "gamma=0.5", "--resume"))
    assert code == 2
    assert "gamma" in err and len(err.strip().splitlines()) == 1, err
    assert (out / CHECKPOINT).read_bytes() == checkpoint
    assert (out / "arch.json").read_text() == arch


@pytest.mark.parametrize("variant, accepted", [("pca", True), ("frozen_projection", False)])
def test_a_checkpoint_from_before_auto_word_vectors_resumes_as_pca(finished, prepared, tiny_glue, tmp_path, run_cli,
                                                                  variant, accepted):
    # Before `auto`, a search's record left its word vectors out at their default then, pca.
    out = tmp_path / "run"
    shutil.copytree(finished["mrpc"], out)
    saved = load_checkpoint(out)
    assert saved["config"].pop("embeddings") == "pca"  # `auto` on sentence pairs
    torch.save(saved, out / CHECKPOINT)
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "mrpc", out, "--set", f"embeddings={variant}", "--resume"))
    assert (code == 0) is accepted, err
    assert accepted or "embeddings" in err


def test_refused_resume_keeps_the_run_record(finished, prepared, tiny_glue, tmp_path, run_cli):
    # config.json records how the run in the folder was made; a refused resume must not rewrite it.
    out = tmp_path / "run"
    shutil.copytree(finished["sst2"], out)
    record = (out / "config.json").read_text()
    code, _, _ = run_cli(*search_args(prepared, tiny_glue, "sst2", out, "--seed", "7", "--resume"))
    assert code == 2
    assert (out / "config.json").read_text() == record


def test_resume_without_a_checkpoint_is_refused(prepared, tiny_glue, tmp_path, run_cli):
    code, _, err = run_cli(*search_args(prepared, tiny_glue, "sst2", tmp_path / "empty", "--resume"))
    assert code == 2
    assert "checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "empty" / "arch.json").exists()
