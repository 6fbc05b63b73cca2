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


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, H): the mean over real tokens only, so padding never shifts it (a row
    with no real token gives zeros, not NaN). The one definition for the student's head, the KD
    records, the teacher pass and the adaptor, which must all agree to the last bit."""
    weights = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
