"""Golden values for the distillation losses (kd.losses), worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from kd.losses import efficiency_loss, probes_kd, soft_cross_entropy, teacher_layer_for

LN3 = math.log(3.0)
# The reference example used below: teacher logits [0, ln 3] -> p = [1/4, 3/4];
# student logits [0, 0] -> q = [1/2, 1/2].
# KL(p || q) = 1/4 · ln((1/4)/(1/2)) + 3/4 · ln((3/4)/(1/2))
#            = 0.25 · (-0.6931472) + 0.75 · 0.4054651
#            = -0.1732868 + 0.3040988 = 0.1308120
KL_REFERENCE = 0.13081203594113697


# ---------------------------------------------------------------- soft_cross_entropy


def test_soft_cross_entropy_is_zero_for_equal_logits():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 3.0]])
    for t in (1.0, 2.0, 4.0):
        assert soft_cross_entropy(logits, logits.clone(), t).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_cross_entropy_golden_two_classes():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[0.0, LN3]])
    assert soft_cross_entropy(student, teacher, 1.0).item() == pytest.approx(0.1308120, abs=1e-6)


def test_soft_cross_entropy_golden_with_temperature_and_batch_mean():
    # T = 2: teacher [0, 2 ln 3] / 2 = [0, ln 3] -> p = [1/4, 3/4]; student [0, 0] -> [1/2, 1/2].
    # Row 1: T² · KL = 4 · 0.1308120 = 0.5232481. Row 2: equal logits, 0.
    # Batch mean: 0.5232481 / 2 = 0.2616240.
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    teacher = torch.tensor([[0.0, 2 * LN3], [1.0, -1.0]])
    assert soft_cross_entropy(student[:1], teacher[:1], 2.0).item() == pytest.approx(0.5232481, abs=1e-6)
    assert soft_cross_entropy(student, teacher, 2.0).item() == pytest.approx(0.2616240, abs=1e-6)


def test_soft_cross_entropy_direction_is_teacher_to_student():
    # KL(q || p) with the roles swapped: 1/2 · ln((1/2)/(1/4)) + 1/2 · ln((1/2)/(3/4))
    # = 0.5 · 0.6931472 + 0.5 · (-0.4054651) = 0.1438410, not 0.1308120.
    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[0.0, LN3]])
    assert soft_cross_entropy(student, teacher, 1.0).item() == pytest.approx(0.1438410, abs=1e-6)


def test_soft_cross_entropy_invariant_to_shifting_teacher_logits():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    base = soft_cross_entropy(student, teacher, 2.0)
    assert soft_cross_entropy(student, teacher + 7.5, 2.0).item() == pytest.approx(base.item(), abs=1e-5)
    assert soft_cross_entropy(student - 3.0, teacher, 2.0).item() == pytest.approx(base.item(), abs=1e-5)


def test_soft_cross_entropy_gradient_reaches_the_student():
    student = torch.zeros(1, 2, requires_grad=True)
    soft_cross_entropy(student, torch.tensor([[0.0, LN3]])).backward()
    # d KL / d s = q - p = [1/2 - 1/4, 1/2 - 3/4] = [0.25, -0.25]
    assert torch.allclose(student.grad, torch.tensor([[0.25, -0.25]]), atol=1e-6)


# ---------------------------------------------------------------- teacher_layer_for


@pytest.mark.parametrize(
    "depth, layers, expected",
    [
        (3, 6, [2, 4, 6]),  # 6/3 = 2 per student layer
        (4, 6, [2, 3, 5, 6]),  # ceil(1.5), ceil(3), ceil(4.5), ceil(6)
        (1, 12, [12]),
        (6, 6, [1, 2, 3, 4, 5, 6]),
        (8, 6, [1, 2, 3, 3, 4, 5, 6, 6]),  # deeper student than teacher: layers repeat
    ],
)
def test_teacher_layer_for(depth, layers, expected):
    assert [teacher_layer_for(i, depth, layers) for i in range(1, depth + 1)] == expected


# ---------------------------------------------------------------- probes_kd


def _probe_example():
    """K = 2 student heads, L = 4 teacher layers -> heads learn from probes 2 and 4.

    Head 1 is [0, 0] against probe 2 = [0, ln 3]: soft CE 0.1308120.
    Head 2 equals probe 4: soft CE 0.
    The other probe layers (0, 1, 3) hold values that would give other losses if read by mistake.
    """
    heads = [torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, -1.0]])]
    probes = torch.tensor([[[5.0, -5.0], [-5.0, 5.0], [0.0, LN3], [9.0, 0.0], [2.0, -1.0]]])  # (B=1, L+1=5, C=2)
    return heads, probes


def test_probes_kd_equal_weights_when_probe_losses_are_equal():
    heads, probes = _probe_example()
    # w = softmax([-1, -1]) = [1/2, 1/2]: 0.5 · 0.1308120 + 0.5 · 0 = 0.0654060
    value = probes_kd(heads, probes, [1.0] * 5)
    assert value.item() == pytest.approx(0.0654060, abs=1e-6)


def test_probes_kd_weighs_the_better_probe_more():
    heads, probes = _probe_example()
    # Probe 2 has dev loss 0, probe 4 has ln 3: w = softmax([-0, -ln 3]) = [1, 1/3] / (4/3) = [3/4, 1/4].
    # L = 3/4 · 0.1308120 + 1/4 · 0 = 0.0981090. Layers 0, 1, 3 get huge losses: unused.
    better_first = probes_kd(heads, probes, [50.0, 50.0, 0.0, 50.0, LN3])
    assert better_first.item() == pytest.approx(0.0981090, abs=1e-6)
    # Swapped: w = [1/4, 3/4] -> 1/4 · 0.1308120 = 0.0327030.
    better_last = probes_kd(heads, probes, [50.0, 50.0, LN3, 50.0, 0.0])
    assert better_last.item() == pytest.approx(0.0327030, abs=1e-6)


def test_probes_kd_uses_the_temperature():
    # K = 1, L = 1 -> probe 1 = [0, 2 ln 3] against head [0, 0] at T = 2: 4 · 0.1308120 = 0.5232481.
    probes = torch.tensor([[[0.0, 0.0], [0.0, 2 * LN3]]])
    value = probes_kd([torch.zeros(1, 2)], probes, [0.3, 0.3], temperature=2.0)
    assert value.item() == pytest.approx(0.5232481, abs=1e-6)


def test_probes_kd_regression_uses_mse():
    # K = 1, L = 2 -> probe 2. MSE([1, 2], [3, 2]) = (2² + 0²) / 2 = 2.
    head = torch.tensor([[1.0], [2.0]])
    probes = torch.tensor([[[0.0], [0.0], [3.0]], [[0.0], [0.0], [2.0]]])  # (B=2, L+1=3, 1)
    assert probes_kd([head], probes, [0.0, 0.0, 0.0], regression=True).item() == pytest.approx(2.0)


# ---------------------------------------------------------------- efficiency_loss


def test_efficiency_loss_one_hot_path_golden():
    # Kmax = 4, K = 2 -> K / Kmax = 1/2. Op costs 0.0, 0.1, ..., 0.9.
    # Cell 1 picks op e on edge e (costs 0.0..0.8, mean 0.4); cell 2 picks op 9 everywhere (0.9).
    # Mean over cells and edges: (0.4 + 0.9) / 2 = 0.65.  L_E = 0.5 · 0.65 = 0.325.
    costs = torch.arange(10.0) / 10
    op_weights = torch.zeros(2, 9, 10)
    op_weights[0, torch.arange(9), torch.arange(9)] = 1.0
    op_weights[1, :, 9] = 1.0
    depth = torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert efficiency_loss(op_weights, depth, costs).item() == pytest.approx(0.325, abs=1e-6)


def test_efficiency_loss_full_depth_cheapest_op_is_zero():
    costs = torch.arange(10.0) / 10
    op_weights = torch.zeros(3, 9, 10)
    op_weights[..., 0] = 1.0  # cost 0 everywhere
    assert efficiency_loss(op_weights, torch.tensor([0.0, 0.0, 1.0]), costs).item() == 0.0
    op_weights = torch.zeros(3, 9, 10)
    op_weights[..., 5] = 1.0  # K = Kmax = 3, cost 0.5 everywhere: 1 · 0.5
    assert efficiency_loss(op_weights, torch.tensor([0.0, 0.0, 1.0]), costs).item() == pytest.approx(0.5)


def test_efficiency_loss_gradient_reaches_both_choices():
    op_weights = torch.full((1, 9, 10), 0.1, requires_grad=True)
    depth = torch.tensor([0.5, 0.5], requires_grad=True)
    efficiency_loss(op_weights, depth, torch.arange(10.0) / 10).backward()
    # d/d depth_k = k / Kmax · mean cost; mean cost of a uniform row = 0.45. -> [0.225, 0.45]
    assert torch.allclose(depth.grad, torch.tensor([0.225, 0.45]), atol=1e-6)
    assert op_weights.grad.abs().sum() > 0
