"""A teacher checkpoint stored in float16 or bfloat16 (common on the hub) trains and runs in float32.

Loaded in its own dtype, a float16 checkpoint trains to NaN within a step or two (AdamW's
update underflows in float16); the loader gives float32 master weights instead.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_teacher
from tiny_students import TINY
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from kd.knowledge import Knowledge
from kd.methods import METHODS
from nas.commands.cli import main
from nas.data.models import load_classifier
from nas.data.tasks import get_task


def write_half_teacher(folder: Path, dtype: torch.dtype) -> Path:
    write_tiny_teacher(folder)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    model.to(dtype).save_pretrained(folder)  # the stored tensors and config.dtype say `dtype`
    assert all(t.dtype == dtype for t in load_file(str(folder / "model.safetensors")).values())
    return folder


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_checkpoint_loads_in_float32(tmp_path, dtype):
    folder = write_half_teacher(tmp_path / "half", dtype)
    model = load_classifier(str(folder), get_task("sst2"), new_head=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_a_float16_teacher_trains_without_nan_and_gives_finite_knowledge(tiny_glue, tmp_path):
    half = write_half_teacher(tmp_path / "half", torch.float16)
    teacher, knowledge = tmp_path / "teacher", tmp_path / "knowledge"
    common = ["--task", "sst2", "--data-dir", str(tiny_glue), "--device", "cpu"]
    assert main(["teacher", *common, "--model", str(half), "--epochs", "1", "--set", "lr=1e-3",
                 "--out", str(teacher)]) == 0
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert all(np.isfinite(v) for v in metrics["metrics"].values())
    trained = load_file(str(teacher / "model.safetensors"))
    assert all(torch.isfinite(t.float()).all() for t in trained.values())
    before = load_file(str(half / "model.safetensors"))
    assert any(not torch.equal(before[k].float(), trained[k].float()) for k in before), "the teacher did not train"

    assert main(["knowledge", *common, "--teacher", str(teacher), "--augment", "1", "--out", str(knowledge)]) == 0
    for split in ("train", "dev", "augmented"):
        part = Knowledge(knowledge).split(split)
        assert np.isfinite(np.asarray(part.logits, dtype=np.float32)).all()
        assert np.isfinite(np.asarray(part.probe_logits, dtype=np.float32)).all()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_kd_methods_run_a_float16_teacher(tiny_glue, tmp_path, method):
    """The stored float16 checkpoint itself as the KD teacher; the methods that copy teacher layers into
    the student (pkd, theseus) failed on it before (a float16 student fed float32 activations)."""
    half = write_half_teacher(tmp_path / "half", torch.float16)
    knowledge, out = tmp_path / "knowledge", tmp_path / "out"
    common = ["--task", "sst2", "--data-dir", str(tiny_glue), "--device", "cpu", "--max-train", "32", "--max-dev", "16"]
    assert main(["knowledge", *common, "--teacher", str(half), "--out", str(knowledge)]) == 0
    student = ["--student", TINY[method]] if method in TINY else []
    assert main(["distill", "--method", method, *student, *common, "--teacher", str(half), "--knowledge", str(knowledge),
                 "--out", str(out), "--epochs", "1", "--set", "latency_repeats=2", "--set", "batch_size=16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(np.isfinite(v) for v in metrics["metrics"].values())
