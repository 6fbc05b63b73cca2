"""Mask helpers shared by the ops: how padded positions are neutralised.

`mask` is `(B, T)` bool with True at real tokens. `masked_fill` is used rather than
multiplying by the mask because `-inf * 0` is NaN, and the max pool fills with `-inf`.
"""

import torch


def fill_padding(x: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    """`x` (B, T, H) with every padded position set to `value`."""
    return x.masked_fill(~mask.unsqueeze(-1), value)  # mask (B, T) -> (B, T, 1)


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`x` (B, T, H) with every padded position set to exactly zero."""
    return fill_padding(x, mask, 0.0)
