"""Pooling over the sequence, width 3, stride 1: `avg_pool` and `max_pool`. No parameters.

Both pool only over the real tokens of each window, so a sentence's output never depends on
the padding beside it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ops.masking import fill_padding, zero_padding
from ops.registry import register_op

WIDTH = 3


# Pooling is not counted as FLOPs (see ops.registry).
@register_op("avg_pool", parameter_free=True, params=lambda h: 0, flops=lambda h, t: 0)
class MaskedAvgPool(nn.Module):
    """Mean over the real tokens of each width-3 window (like `count_include_pad=False`)."""

    def __init__(self, hidden: int):
        super().__init__()  # hidden is unused; taken for the registry's one factory signature

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        # Both pools divide by WIDTH, which cancels in the ratio: masked sum / masked count.
        # The pool's own zero padding adds nothing to either, like padded tokens.
        x = zero_padding(x, mask).transpose(1, 2)  # (B, H, T)
        total = F.avg_pool1d(x, WIDTH, 1, WIDTH // 2)  # (B, H, T)
        count = F.avg_pool1d(m, WIDTH, 1, WIDTH // 2)  # (B, 1, T)
        # A real token's window holds at least itself; only padded positions can count 0.
        y = (total / count.clamp_min(1.0 / WIDTH)).transpose(1, 2)  # (B, H, T) -> (B, T, H)
        return zero_padding(y, mask)


@register_op("max_pool", parameter_free=True, params=lambda h: 0, flops=lambda h, t: 0)
class MaskedMaxPool(nn.Module):
    """Max over the real tokens of each width-3 window."""

    def __init__(self, hidden: int):
        super().__init__()  # hidden is unused; taken for the registry's one factory signature

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # -inf at padded tokens so they never win, matching max_pool1d's own -inf padding.
        x = fill_padding(x, mask, float("-inf")).transpose(1, 2)  # (B, H, T)
        y = F.max_pool1d(x, WIDTH, 1, WIDTH // 2).transpose(1, 2)  # (B, T, H)
        return zero_padding(y, mask)  # padded windows may be all -inf: overwrite, not multiply

