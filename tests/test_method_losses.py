"""KD method losses: golden values worked out by hand (tests/fixtures/golden/*.json, one file per
function, each case with its derivation), and properties every loss must keep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kd import method_losses
from kd.layer_map import Projection
from kd.losses import regression_distillation, soft_cross_entropy
from kd.method_losses import (
    attention_mse,
    cosine_hidden_loss,
    hidden_mse,
    logit_mse,
    minilm_attention_kl,
    minilm_value_kl,
    pkd_hidden_loss,
    theseus_replacing_probability,
    vanilla_kd_loss,
)

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
DTYPE = torch.float64


# ----- golden values -----

def _decode(name: str, value):
    """A JSON argument as the function takes it, by argument name."""
    if name == "mask":
        return torch.tensor(value, dtype=torch.bool)
    if name == "labels":
        return torch.tensor(value, dtype=torch.long)
    if name in ("student_cls", "teacher_cls"):
        return [torch.tensor(layer, dtype=DTYPE) for layer in value]
    if name == "projection":
        weight = torch.tensor(value["weight"], dtype=DTYPE)  # (out, in)
        projection = Projection(weight.shape[1], weight.shape[0]).to(DTYPE)
        with torch.no_grad():
            projection.linear.weight.copy_(weight)
            projection.linear.bias.copy_(torch.tensor(value["bias"], dtype=DTYPE))
        return projection
    if isinstance(value, list):
        return torch.tensor(value, dtype=DTYPE)
    return value


def _golden_cases():
    for path in sorted(GOLDEN.glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        for case in spec["cases"]:
            yield pytest.param(spec["function"], case, id=f"{spec['function']}-{case['name']}")


@pytest.mark.parametrize("function, case", list(_golden_cases()))
def test_golden_value(function, case):
    args = {name: _decode(name, value) for name, value in case["args"].items()}
    result = getattr(method_losses, function)(**args)
    result = result.detach().item() if isinstance(result, torch.Tensor) else result
    assert result == pytest.approx(case["expected"], rel=1e-9, abs=1e-12), case["derivation"]


def test_every_loss_has_golden_values():
    covered = {json.loads(p.read_text(encoding="utf-8"))["function"] for p in GOLDEN.glob("*.json")}
    assert set(method_losses.__all__) <= covered


# ----- properties of the token-level losses -----

B, T, H, HEADS, D = 3, 5, 4, 2, 3
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)


def _hidden(g):
    return torch.randn(B, T, H, generator=g, dtype=DTYPE)


def _attention(g):
    """Softmax rows with padded keys at probability 0, as Hugging Face returns them."""
    scores = torch.randn(B, HEADS, T, T, generator=g, dtype=DTYPE)
    return scores.masked_fill(~MASK[:, None, None, :], float("-inf")).softmax(-1)


def _values(g):
    return torch.randn(B, HEADS, T, D, generator=g, dtype=DTYPE)


# name: (loss, make one input, which dims are token dims)
TOKEN_LOSSES = {
    "cosine_hidden_loss": (cosine_hidden_loss, _hidden, (1,)),
    "hidden_mse": (hidden_mse, _hidden, (1,)),
    "attention_mse": (attention_mse, _attention, (2, 3)),
    "minilm_attention_kl": (minilm_attention_kl, _attention, (2, 3)),
    "minilm_value_kl": (minilm_value_kl, _values, (2,)),
}


def _padded(token_dims, shape) -> torch.Tensor:
    """Bool tensor of `shape`: True where any token dim is a padded position."""
    out = torch.zeros(shape, dtype=torch.bool)
    for dim in token_dims:
        view = [B] + [1] * (len(shape) - 1)
        view[dim] = T
        out = out | ~MASK.view(view)
    return out


@pytest.mark.parametrize("name", TOKEN_LOSSES)
def test_zero_when_student_is_teacher(name):
    loss, make, _ = TOKEN_LOSSES[name]
    x = make(torch.Generator().manual_seed(0))
    assert float(loss(x, x.clone(), MASK)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", TOKEN_LOSSES)
def test_padded_positions_change_nothing(name):
    loss, make, token_dims = TOKEN_LOSSES[name]
    g = torch.Generator().manual_seed(1)
    student, teacher = make(g), make(g)
    padded = _padded(token_dims, student.shape)
    noisy_student = torch.where(padded, 100 * torch.rand(student.shape, generator=g, dtype=DTYPE), student)
    noisy_teacher = torch.where(padded, 100 * torch.rand(teacher.shape, generator=g, dtype=DTYPE), teacher)
    before = loss(student, teacher, MASK)
    assert float(before) > 0
    assert float(loss(noisy_student, noisy_teacher, MASK)) == pytest.approx(float(before), rel=1e-12)


@pytest.mark.parametrize("name", TOKEN_LOSSES)
def test_gradients_are_finite_with_padding(name):
    loss, make, _ = TOKEN_LOSSES[name]
    g = torch.Generator().manual_seed(2)
    student = make(g).requires_grad_()
    loss(student, make(g), MASK).backward()
    assert torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


def test_kl_direction_is_teacher_to_student():
    mask = torch.ones(1, 2, dtype=torch.bool)
    confident = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=DTYPE)
    uniform = torch.full((1, 1, 2, 2), 0.5, dtype=DTYPE)
    # KL(confident teacher ‖ uniform student) = ln 2; the other way the student ignores a key
    # the teacher attends to, which costs without bound.
    assert float(minilm_attention_kl(uniform, confident, mask)) == pytest.approx(math.log(2))
    assert float(minilm_attention_kl(confident, uniform, mask)) > 10


def test_value_relation_allows_any_width_but_not_other_head_counts():
    g = torch.Generator().manual_seed(3)
    student = torch.randn(B, HEADS, T, 7, generator=g, dtype=DTYPE)
    teacher = torch.randn(B, HEADS, T, 2, generator=g, dtype=DTYPE)
    assert math.isfinite(float(minilm_value_kl(student, teacher, MASK)))
    with pytest.raises(ValueError, match="heads"):
        minilm_value_kl(torch.randn(B, 1, T, 6, dtype=DTYPE), teacher, MASK)
    with pytest.raises(ValueError, match="heads"):
        attention_mse(_attention(g)[:, :1], _attention(g), MASK)


def test_hidden_mse_without_padding_is_plain_mse():
    g = torch.Generator().manual_seed(4)
    student, teacher = _hidden(g), _hidden(g)
    full = torch.ones(B, T, dtype=torch.bool)
    assert float(hidden_mse(student, teacher, full)) == pytest.approx(float(F.mse_loss(student, teacher)))


def test_cosine_loss_ignores_scale():
    g = torch.Generator().manual_seed(5)
    student, teacher = _hidden(g), _hidden(g)
    scale = torch.rand(B, T, 1, generator=g, dtype=DTYPE) + 0.1
    assert float(cosine_hidden_loss(student * scale, teacher, MASK)) == pytest.approx(
        float(cosine_hidden_loss(student, teacher, MASK)))


# ----- PKD -----

def test_pkd_is_zero_for_equal_vectors_and_ignores_scale():
    g = torch.Generator().manual_seed(6)
    student = [torch.randn(B, H, generator=g, dtype=DTYPE) for _ in range(3)]
    teacher = [torch.randn(B, H, generator=g, dtype=DTYPE) for _ in range(3)]
    assert float(pkd_hidden_loss(student, [s.clone() for s in student])) == pytest.approx(0.0, abs=1e-12)
    scaled = [s * (torch.rand(B, 1, generator=g, dtype=DTYPE) + 0.1) for s in student]
    assert float(pkd_hidden_loss(scaled, teacher)) == pytest.approx(float(pkd_hidden_loss(student, teacher)))
    assert 0 <= float(pkd_hidden_loss(student, teacher)) <= 4


def test_pkd_projects_and_rejects_mismatches():
    g = torch.Generator().manual_seed(7)
    projection = Projection(3, H).to(DTYPE)
    student = [torch.randn(B, 3, generator=g, dtype=DTYPE)]
    teacher = [torch.randn(B, H, generator=g, dtype=DTYPE)]
    assert torch.isfinite(pkd_hidden_loss(student, teacher, projection=projection))
    with pytest.raises(ValueError, match="shape"):
        pkd_hidden_loss(student, teacher)
    with pytest.raises(ValueError, match="equally many"):
        pkd_hidden_loss(student, teacher * 2)


# ----- logits -----

def test_vanilla_kd_endpoints():
    g = torch.Generator().manual_seed(8)
    student, teacher = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    labels = torch.tensor([0, 2, 1, 2])
    assert float(vanilla_kd_loss(student, teacher, labels, 0.0, 3.0)) == pytest.approx(
        float(F.cross_entropy(student, labels)))
    assert float(vanilla_kd_loss(student, teacher, labels, 1.0, 3.0)) == pytest.approx(
        float(soft_cross_entropy(student, teacher, 3.0)))


def test_logit_mse_for_one_output_is_regression_distillation():
    g = torch.Generator().manual_seed(9)
    student, teacher = torch.randn(5, 1, generator=g), torch.randn(5, 1, generator=g)
    assert float(logit_mse(student, teacher)) == pytest.approx(float(regression_distillation(student, teacher)))
    assert float(logit_mse(student, student)) == 0.0


# ----- BERT-of-Theseus schedule -----

def test_theseus_schedule_rises_to_one_and_stays():
    values = [theseus_replacing_probability(step, total_steps=100, base=0.2) for step in range(0, 200, 10)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(0.2) and values[-1] == 1.0
    assert theseus_replacing_probability(100, total_steps=100, base=0.2) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [
    {"step": 1, "rate": 0.1, "k": 0.1},
    {"step": 1},
    {"step": -1, "rate": 0.1},
    {"step": 1, "base": 1.5, "rate": 0.1},
])
def test_theseus_schedule_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        theseus_replacing_probability(**kwargs)
