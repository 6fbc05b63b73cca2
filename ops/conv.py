"""1-D convolutions over the sequence: `cnn3/5/7` (dilation 1), `dilated_cnn3/5/7` (dilation 2).

Each op is ReLU -> Conv1d -> LayerNorm, DARTS' ReLU-Conv-BN with the BatchNorm replaced by a
per-token LayerNorm: BatchNorm's statistics would mix tokens across the batch, padding
included, so a sentence's output would depend on its neighbours and on how much padding they
bring. LayerNorm normalises each token over H on its own.
"""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ops.masking import zero_padding
from ops.registry import register_op


class SeqConv(nn.Module):
    """ReLU -> 'same' Conv1d over T (kernel `kernel`, dilation `dilation`) -> LayerNorm(H)."""

    def __init__(self, hidden: int, kernel: int, dilation: int):
        super().__init__()
        # Odd kernels only, so the 'same' padding is symmetric and output length equals T.
        assert kernel % 2 == 1, kernel
        self.conv = nn.Conv1d(
            hidden, hidden, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2
        )
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Zeroing the padded inputs makes them equal to the conv's own zero padding, so a
        # sentence sees the same zeros past its end whether it is alone or padded in a batch.
        x = F.relu(zero_padding(x, mask))  # (B, T, H); relu(0) = 0 keeps padding at zero
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, H, T) for Conv1d -> (B, T, H)
        return zero_padding(self.norm(y), mask)  # (B, T, H)


def _conv_params(hidden: int, kernel: int) -> int:
    weight, bias, norm = kernel * hidden * hidden, hidden, 2 * hidden
    return weight + bias + norm


def _conv_flops(hidden: int, seq_len: int, kernel: int) -> int:
    # Every output (token, channel) takes kernel * hidden multiply-adds; dilation only spaces
    # the taps out. Bias, ReLU and LayerNorm are not counted (see ops.registry).
    return 2 * seq_len * hidden * hidden * kernel


for _prefix, _dilation in (("cnn", 1), ("dilated_cnn", 2)):
    for _kernel in (3, 5, 7):
        register_op(
            f"{_prefix}{_kernel}",
            parameter_free=False,
            params=partial(_conv_params, kernel=_kernel),
            flops=partial(_conv_flops, kernel=_kernel),
        )(partial(SeqConv, kernel=_kernel, dilation=_dilation))
