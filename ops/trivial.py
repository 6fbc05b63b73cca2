"""The trivial ops: `identity` (a skip connection) and `zero` (no edge). No parameters."""

import torch
from torch import nn

from ops.masking import zero_padding
from ops.registry import register_op


@register_op("identity", parameter_free=True, params=lambda h: 0, flops=lambda h, t: 0)
class Identity(nn.Module):
    """`x` with padded positions zeroed, so the op obeys the same contract as the others."""

    def __init__(self, hidden: int):
        super().__init__()  # hidden is unused; taken for the registry's one factory signature

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return zero_padding(x, mask)  # (B, T, H)


@register_op("zero", parameter_free=True, params=lambda h: 0, flops=lambda h, t: 0)
class Zero(nn.Module):
    """All zeros: the search's way of dropping an edge."""

    def __init__(self, hidden: int):
        super().__init__()  # hidden is unused; taken for the registry's one factory signature

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Fresh zeros rather than `x * 0`: no NaN or inf in x can reach them. The output is
        # cut off from autograd, which is harmless beside the other ops of a mixed edge.
        return torch.zeros_like(x)  # (B, T, H)
