"""AdaBERT's probe KD in `nas finetune`: the loss the training step computes, the per-cell heads
(fresh, inherited from the supernet, never exported), the student's public API that KD reads,
and `nas finetune` and `nas distill --student arch:` training the searched student the same way."""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import nas.train.student_training as student_training
from kd.adaptor import adapt
from kd.losses import probes_kd
from nas.base.errors import UserError
from nas.compute.acceleration import Captured
from nas.data.batching import EncodedSplit, device_batch, model_inputs
from nas.data.tasks import get_task
from nas.train.distill_data import Targets
from nas.train.loop import LoopState
from nas.train.student_training import FinetuneConfig, probes_forward, train_with_kd
from searchspace.cell import pair_inputs, run_cells
from searchspace.cell_heads import CellHeads
from searchspace.genotype import Genotype
from searchspace.random_arch import random_genotype
from searchspace.space import SearchSpace
from searchspace.student import compile_genotype
from searchspace.supernet import SuperNet

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, VOCAB, POSITIONS, LABELS = 16, 40, 32, 2
GENOTYPE = random_genotype(random.Random(3), hidden_size=HIDDEN, num_cells=3, max_cells=4)
PROBE_LOSSES = [0.69, 0.5, 0.3]  # a teacher of two layers: the embedding output, then layers 1 and 2


def _student(pair=False, dropout=0.0, genotype=GENOTYPE, seed=0):
    torch.manual_seed(seed)
    return compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=pair,
                            dropout=dropout)


def _data(rows=6, seed=0):
    """A hand-built DistillData: token rows of mixed lengths with teacher logits and probe logits."""
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(5, VOCAB, (n,), generator=g).tolist() for n in (7, 4, 9, 5, 3, 8)[:rows]]
    types = [[0] * (len(row) // 2) + [1] * (len(row) - len(row) // 2) for row in ids]
    split = EncodedSplit(ids, types, torch.tensor([i % 2 for i in range(rows)]), pad_id=0)
    targets = Targets(torch.randn(rows, LABELS, generator=g), torch.randn(rows, len(PROBE_LOSSES), LABELS, generator=g))
    return SimpleNamespace(train=split, train_targets=targets, dev={}, probe_losses=list(PROBE_LOSSES))


def _training_loss(monkeypatch, student, data, config, rows, heads=None):
    """The loss `train_with_kd` computes on the batch `rows`, read through its training hook."""
    seen = {}

    def one_batch(*, hooks, **unused):
        seen["loss"], seen["terms"] = hooks.loss(rows)
        return LoopState()

    monkeypatch.setattr(student_training, "train_loop", one_batch)
    train_with_kd(student, get_task("sst2"), data, config, torch.device("cpu"), heads=heads)
    return seen["loss"], seen["terms"]


# ----- the loss of one training step

@pytest.mark.parametrize("gamma, temperature", [(0.8, 1.0), (0.3, 2.0)])
def test_probe_kd_step_is_the_search_formula(monkeypatch, gamma, temperature):
    student, data, rows = _student(), _data(), [0, 2, 3, 5]
    heads = CellHeads(HIDDEN, LABELS, GENOTYPE.num_cells, dropout=0.0)
    config = FinetuneConfig(kd="probes", gamma=gamma, kd_temperature=temperature)
    loss, terms = _training_loss(monkeypatch, student, data, config, rows, heads)

    batch = device_batch(data.train, rows, "cpu")
    inputs = model_inputs(batch)
    logits = student(**inputs).logits
    states = student.cell_outputs(**inputs)
    per_cell = [heads.heads[i](states.per_cell[i], states.mask) for i in range(GENOTYPE.num_cells - 1)]
    kd = probes_kd(per_cell + [logits], data.train_targets.probe_logits[rows], PROBE_LOSSES, temperature)
    expected = (1 - gamma) * F.cross_entropy(logits, batch["labels"]) + gamma * kd
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(terms["kd"], kd.detach(), rtol=1e-6, atol=1e-6)
    # Every head takes part: the gradient reaches the heads of the cells below the last.
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.heads[0].out.parameters())


def test_probe_kd_loss_on_a_regression_task_uses_mse_throughout():
    g = torch.Generator().manual_seed(4)
    final, below = torch.randn(5, 1, generator=g), [torch.randn(5, 1, generator=g) for _ in range(2)]
    probes, labels = torch.randn(5, 4, 1, generator=g), torch.rand(5, generator=g) * 5
    losses = [1.2, 0.9, 0.7, 0.4]
    loss, _ = student_training.probes_kd_loss(final, below, probes, labels, losses, get_task("stsb"), 0.7, 1.0)
    weights = torch.softmax(-torch.tensor([losses[1], losses[2], losses[3]]), 0)  # m(i) = ⌈i·3/3⌉ = i
    kd = sum(w * F.mse_loss(s.reshape(-1), probes[:, i + 1].reshape(-1)) for i, (w, s) in enumerate(zip(weights, below + [final])))
    torch.testing.assert_close(loss, 0.3 * F.mse_loss(final.reshape(-1), labels) + 0.7 * kd)


def test_logits_kd_step_is_the_old_loss(monkeypatch):
    """kd=logits: (1 - γ) · CE + γ · T² · KL(teacher ‖ student) on the final logits, as before kd=probes existed."""
    student, data, rows = _student(), _data(), [1, 4, 0]
    config = FinetuneConfig(kd="logits", gamma=0.6, kd_temperature=2.0)
    loss, _ = _training_loss(monkeypatch, student, data, config, rows)
    batch = device_batch(data.train, rows, "cpu")
    logits = student(**model_inputs(batch)).logits
    teacher = data.train_targets.logits[rows]
    kl = F.kl_div(F.log_softmax(logits / 2.0, -1), F.softmax(teacher / 2.0, -1), reduction="batchmean") * 4.0
    expected = 0.4 * F.cross_entropy(logits, batch["labels"]) + 0.6 * kl
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_kd_mode_is_checked():
    with pytest.raises(UserError, match="'kd'"):
        FinetuneConfig(kd="hidden")
    assert FinetuneConfig().kd == "probes"


def test_the_compiled_probe_forward_equals_eager_on_cpu():
    """compile=default holds the heads in the captured graph: same logits and gradients as eager."""
    pytest.importorskip("torch._inductor")
    student, data = _student(pair=True), _data()
    heads = CellHeads(HIDDEN, LABELS, GENOTYPE.num_cells, dropout=0.0)
    inputs = model_inputs(device_batch(data.train, [0, 1, 2, 3], "cpu"))
    eager, captured = probes_forward(student, heads), Captured(probes_forward(student, heads), "default", "test")

    def step(forward):
        student.zero_grad(set_to_none=True)
        heads.zero_grad(set_to_none=True)
        logits, per_cell = forward(inputs)
        assert isinstance(per_cell, tuple) and len(per_cell) == GENOTYPE.num_cells - 1
        (logits.sum() + sum(x.pow(2).sum() for x in per_cell)).backward()
        named = [*student.named_parameters(), *heads.named_parameters(prefix="heads")]
        return logits.detach(), [x.detach() for x in per_cell], {n: p.grad.clone() for n, p in named if p.grad is not None}

    reference = step(eager)
    got = step(captured)
    if captured.failed is not None:
        pytest.skip(f"torch.compile does not work on this machine: {captured.failed}")
    torch.testing.assert_close(got[0], reference[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(got[1], reference[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for name, grad in reference[2].items():
        torch.testing.assert_close(got[2][name], grad, atol=1e-4, rtol=1e-4, msg=name)


# ----- the per-cell heads

@pytest.mark.parametrize("pair", [False, True])
def test_heads_inherited_from_the_supernet_give_its_per_depth_logits(pair):
    torch.manual_seed(1)
    supernet = SuperNet(SearchSpace(HIDDEN, 4, shared_cells=True, dropout=0.0), VOCAB, POSITIONS, LABELS, pair).eval()
    with torch.no_grad():
        for p in supernet.parameters():  # off the constructors' values (zero node weights, equal heads' biases)
            p.add_(0.3 * torch.randn_like(p))
    student = _student(pair, seed=5)
    heads = CellHeads.for_student(student)
    student.inherit_from_supernet(supernet.state_dict())
    heads.inherit_from_supernet(supernet.state_dict())
    student.eval(), heads.eval()
    inputs = model_inputs(device_batch(_data().train, [0, 1, 2, 3], "cpu"))
    with torch.no_grad():
        _, per_depth = supernet(**inputs, path=supernet.genotype_path(GENOTYPE))
        logits, per_cell = probes_forward(student, heads)(inputs)
    assert len(per_depth) == GENOTYPE.num_cells
    for ours, searched in zip([*per_cell, logits], per_depth):
        torch.testing.assert_close(ours, searched, atol=1e-5, rtol=1e-5)


def test_fresh_heads_fit_the_student_and_a_one_cell_student_has_none():
    heads = CellHeads.for_student(_student())
    assert len(heads.heads) == GENOTYPE.num_cells - 1 and heads.heads[0].out.out_features == LABELS
    one = random_genotype(random.Random(0), hidden_size=HIDDEN, num_cells=1, max_cells=4)
    assert len(CellHeads.for_student(_student(genotype=one)).heads) == 0


# ----- the student's public API

@pytest.mark.parametrize("pair", [False, True])
def test_forward_is_the_cells_then_the_head_exactly(pair):
    """The refactor of forward into cell_outputs + classify computes the same thing as running the
    cells of the genotype directly (what forward did before), bit for bit."""
    student = _student(pair, dropout=0.1, seed=2).eval()
    inputs = model_inputs(device_batch(_data().train, [0, 1, 2, 3, 4, 5], "cpu"))
    fixed = {edge: [(op, None) for op in ops] for edge, ops in student.edge_ops.items()}
    with torch.no_grad():
        embedded = student.embeddings(inputs["input_ids"])
        outputs, mask = run_cells(student.cells, embedded, inputs["attention_mask"], inputs["token_type_ids"], pair,
                                  lambda index: fixed.__getitem__, GENOTYPE.num_cells)
        pair_view = pair_inputs(mask, inputs["token_type_ids"], embedded) if pair else None
        direct = student.head(outputs[-1], mask, pair_view)
        states = student.cell_outputs(**inputs)
        assert torch.equal(student(**inputs).logits, direct)
        assert torch.equal(student.classify(states), direct)
    assert len(states.per_cell) == GENOTYPE.num_cells and torch.equal(states.embedded, embedded)
    assert all(torch.equal(a, b) for a, b in zip(states.per_cell, outputs)) and torch.equal(states.mask, mask)


def test_the_adaptor_reads_the_student_through_its_public_methods(monkeypatch):
    student = _student()
    calls = []
    for name in ("cell_outputs", "classify"):
        method = getattr(student, name)
        monkeypatch.setattr(student, name, lambda *a, _m=method, _n=name, **k: calls.append(_n) or _m(*a, **k))
    inputs = model_inputs(device_batch(_data().train, [0, 1], "cpu"))
    record = adapt(student.eval(), inputs, need={"hidden_states"})
    assert calls == ["cell_outputs", "classify"]
    assert record.num_layers == GENOTYPE.num_cells


# The compiled student's insides that KD once replayed its forward through; `cell_outputs` and
# `classify` are the API now. (`embeddings` stays: the teacher's tables are copied into it.)
STUDENT_INSIDES = {"_choices", "cells", "head", "edge_ops"}


@pytest.mark.parametrize("path", ["kd/adaptor.py", "nas/train/student_training.py", "nas/train/finetune.py",
                                  "nas/train/distill.py"])
def test_kd_code_touches_no_private_member_of_the_student(path):
    tree = ast.parse((ROOT / path).read_text())
    touched = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & STUDENT_INSIDES
    assert not touched, f"{path} reaches into the student: {sorted(touched)}"


def test_nothing_outside_the_student_calls_its_private_helpers():
    for folder in ("kd", "nas/train", "nas/data", "nas/run", "searchspace"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "student.py":
                continue
            attributes = {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
            assert "_choices" not in attributes, path


# ----- one recipe through both commands

ARCH = {"schema_version": 1, "num_cells": 2, "hidden_size": 16,
        "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]], [["cnn7", 3], ["avg_pool", 2]]]}
COMMON = ("--epochs", 2, "--seed", 3, "--max-train", 40, "--max-dev", 16, "--device", "cpu", "--set", "latency_repeats=2",
          "--set", "batch_size=16")


@pytest.mark.parametrize("method, finetune_settings", [
    ("probes", ()),  # both defaults: kd=probes, γ = α = 0.8, T = 1
    ("vanilla", ("--set", "kd=logits", "--set", "gamma=0.5", "--set", "kd_temperature=4")),  # vanilla's α and T
])
def test_finetune_and_distill_train_a_searched_student_identically(run_cli, prepared, tiny_glue, tmp_path, method,
                                                                   finetune_settings):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    teacher, knowledge = prepared["sst2"]
    common = ("--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge, *COMMON)
    code, _, err = run_cli("finetune", *common, "--arch", arch, "--out", tmp_path / "finetuned", *finetune_settings)
    assert code == 0, err
    code, _, err = run_cli("distill", *common, "--method", method, "--student", f"arch:{arch}", "--out",
                           tmp_path / "distilled")
    assert code == 0, err

    finetuned, distilled = (load_file(tmp_path / name / "model.safetensors") for name in ("finetuned", "distilled"))
    assert set(finetuned) == set(distilled)
    assert all(torch.equal(finetuned[name], distilled[name]) for name in finetuned)
    a, b = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("finetuned", "distilled"))
    assert a["history"] == b["history"] and a["metrics"] == b["metrics"]
    assert a["kd"] == b["kd"] == ("probes" if method == "probes" else "logits")
    assert b["method"] == method and b["finetune_config"] == a["config"]
    # The per-cell heads trained beside the student are not part of the saved model.
    fresh = compile_genotype(Genotype.load(arch), vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=False)
    assert set(finetuned) == set(fresh.state_dict())
