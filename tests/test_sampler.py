"""The relaxations of the discrete choices (searchspace.sampler) and the temperature schedule."""

from __future__ import annotations

import math

import pytest
import torch

from searchspace.sampler import SAMPLERS, HardGumbel, SoftMax, temperature


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- HardGumbel


@pytest.mark.parametrize("shape", [(5,), (4, 7), (3, 9, 10)])
def test_hard_gumbel_values_are_exactly_one_hot(shape):
    logits = torch.randn(shape, generator=_generator(0))
    y = HardGumbel()(logits, 0.7, _generator(1))
    assert y.shape == logits.shape
    # Exactly 0 or 1, not merely close: the supernet skips ops whose weight is exactly zero.
    assert torch.all((y == 0) | (y == 1))
    assert torch.equal(y.sum(-1), torch.ones(shape[:-1]))


def test_hard_gumbel_gradient_reaches_every_logit():
    logits = torch.randn(4, 6, generator=_generator(0), requires_grad=True)
    y = HardGumbel()(logits, 1.0, _generator(1))
    # A different weight per entry, so the softmax Jacobian cannot cancel to zero on a row.
    (y * torch.arange(24.0).reshape(4, 6)).sum().backward()
    assert logits.grad is not None
    assert torch.all(logits.grad.abs().sum(-1) > 0), logits.grad


def test_hard_gumbel_same_seed_same_samples_other_seed_other_samples():
    logits = torch.zeros(50, 10)
    first = HardGumbel()(logits, 1.0, _generator(3))
    again = HardGumbel()(logits, 1.0, _generator(3))
    other = HardGumbel()(logits, 1.0, _generator(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_hard_gumbel_generator_state_advances_between_draws():
    # A resumed search restores the generator; consecutive draws must still differ.
    generator = _generator(5)
    logits = torch.zeros(50, 10)
    assert not torch.equal(HardGumbel()(logits, 1.0, generator), HardGumbel()(logits, 1.0, generator))


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_hard_gumbel_sampling_frequency_follows_softmax(tau):
    # Gumbel-max: argmax(logits + g) is distributed as softmax(logits), whatever tau is.
    probs = torch.tensor([0.7, 0.2, 0.1])
    draws = 4000
    logits = probs.log().expand(draws, 3)  # one independent draw per row
    y = HardGumbel()(logits, tau, _generator(11))
    freq = y.sum(0) / draws
    # One standard deviation of a frequency is at most sqrt(0.25 / 4000) = 0.008; 0.05 is > 6 sigma.
    assert torch.allclose(freq, probs, atol=0.05), freq


# ---------------------------------------------------------------- SoftMax


def test_softmax_golden_values():
    # logits [0, ln 3]: softmax = [1, 3] / 4; at tau 0.5 the logits double: [1, 9] / 10.
    logits = torch.tensor([0.0, math.log(3.0)])
    assert torch.allclose(SoftMax()(logits, 1.0), torch.tensor([0.25, 0.75]), atol=1e-7)
    assert torch.allclose(SoftMax()(logits, 0.5), torch.tensor([0.1, 0.9]), atol=1e-7)


def test_softmax_equals_torch_softmax_over_last_dim():
    logits = torch.randn(3, 9, 10, generator=_generator(0))
    for tau in (0.2, 1.0, 5.0):
        assert torch.allclose(SoftMax()(logits, tau, _generator(1)), torch.softmax(logits / tau, dim=-1), atol=1e-7)


def test_softmax_ignores_the_generator():
    logits = torch.randn(9, 10, generator=_generator(0))
    assert torch.equal(SoftMax()(logits, 1.0, _generator(1)), SoftMax()(logits, 1.0, _generator(2)))


def test_sampler_registry():
    assert SAMPLERS == {"hard": HardGumbel, "soft": SoftMax}
    assert HardGumbel.hard and not SoftMax.hard


# ---------------------------------------------------------------- temperature


@pytest.mark.parametrize("total, start, floor", [(100, 5.0, 0.2), (7, 1.0, 0.5), (2, 3.0, 0.1)])
def test_temperature_schedule(total, start, floor):
    values = [temperature(step, total, start, floor) for step in range(total + 5)]
    assert values[0] == pytest.approx(start, rel=1e-12)
    assert values[total - 1] == pytest.approx(floor, rel=1e-12)
    assert all(b <= a for a, b in zip(values, values[1:])), values
    assert all(v >= floor for v in values), values
    assert values[-1] == pytest.approx(floor, rel=1e-12)  # past the end: stays at the floor


def test_temperature_is_exponential_halfway():
    # From 4 to 1 over steps 0..2: the middle is the geometric mean, sqrt(4 * 1) = 2.
    assert temperature(1, 3, 4.0, 1.0) == pytest.approx(2.0, rel=1e-12)


def test_temperature_degenerate_schedules():
    assert temperature(0, 1, 5.0, 0.2) == 5.0  # a single step: no annealing
    assert temperature(3, 10, 0.1, 0.2) == 0.2  # start below the floor: the floor
