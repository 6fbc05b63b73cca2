"""Relaxations of the discrete choices (op per edge, depth), passed into the supernet.

A sampler turns logits into weights `y` of the same shape:
  * `HardGumbel` — Gumbel-softmax with a straight-through one-hot (GDAS style): the forward
    value is exactly one-hot, so only the sampled op of each edge (and the sampled depth) is
    computed, while gradients flow through the soft probabilities to the logits.
  * `SoftMax` — plain softmax (DARTS style): every op is computed and weighted; kept for
    comparison and benchmarks.
Noise comes from an explicit `torch.Generator`, so a resumed search draws the same samples.
"""

from __future__ import annotations

import math

import torch


def gumbel_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    uniform = torch.rand(shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7).to(device)
    return -torch.log(-torch.log(uniform))


class HardGumbel:
    hard = True

    def __call__(self, logits: torch.Tensor, tau: float, generator=None) -> torch.Tensor:
        soft = torch.softmax((logits + gumbel_noise(logits.shape, generator, logits.device)) / tau, dim=-1)
        index = soft.argmax(-1, keepdim=True)
        one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
        return one_hot - soft.detach() + soft  # value: one-hot; gradient: d soft


class SoftMax:
    hard = False

    def __call__(self, logits: torch.Tensor, tau: float, generator=None) -> torch.Tensor:
        return torch.softmax(logits / tau, dim=-1)


SAMPLERS = {"hard": HardGumbel, "soft": SoftMax}


def temperature(step: int, total_steps: int, start: float, floor: float) -> float:
    """Exponential anneal from `start` at step 0 to `floor` at the last step, never below `floor`."""
    if total_steps <= 1 or start <= floor:
        return max(start, floor)
    progress = min(1.0, step / (total_steps - 1))
    return max(floor, start * math.exp(progress * math.log(floor / start)))
