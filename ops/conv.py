"""1-D convolutions over the sequence: `cnn3/5/7` (dilation 1), `dilated_cnn3/5/7` (dilation 2).

Each op is ReLU -> Conv1d -> LayerNorm, DARTS' ReLU-Conv-BN with the BatchNorm replaced by a
per-token LayerNorm: BatchNorm's statistics would mix tokens across the batch, padding
included, so a sentence's output would depend on its neighbours and on how much padding they
bring. LayerNorm normalises each token over H on its own.

The convolution is computed as one matrix product over the windows of each token (im2col),
in the (B, T, H) layout the cell keeps: `Conv1d` wants (B, H, T), and the two transposes it
needs cost a copy each way, forward and backward. With the mask fused into `torch.where`, an
op is five kernels (mask+ReLU, window copy, addmm, LayerNorm, mask) instead of about seven,
and on this project's CPU a training step of the K=4 student is ~25% faster for this op
(experiments/throughput.py). The weights stay an `nn.Conv1d`'s, so checkpoints are unchanged.
"""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ops.registry import register_op


class SeqConv(nn.Module):
    """ReLU -> 'same' Conv1d over T (kernel `kernel`, dilation `dilation`) -> LayerNorm(H)."""

    def __init__(self, hidden: int, kernel: int, dilation: int):
        super().__init__()
        # Odd kernels only, so the 'same' padding is symmetric and output length equals T.
        assert kernel % 2 == 1, kernel
        self.kernel, self.dilation = kernel, dilation
        self.conv = nn.Conv1d(
            hidden, hidden, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2
        )
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        real = mask.unsqueeze(-1)  # (B, T, 1)
        # Zeroing the padded inputs makes them equal to the conv's own zero padding, so a
        # sentence sees the same zeros past its end whether it is alone or padded in a batch.
        # `where` rather than a multiply: nothing at a padded position (not even NaN) gets through.
        x = torch.where(real, x, 0.0).relu()  # (B, T, H); relu(0) = 0 keeps padding at zero
        pad = self.conv.padding[0]
        padded = F.pad(x, (0, 0, pad, pad))  # (B, T + 2 pad, H)
        # Tap j of token t reads padded[t + j * dilation]. The k shifted views side by side are
        # the windows; `cat` backward is k slices, far cheaper than `unfold`'s scatter.
        taps = [padded[:, j * self.dilation : j * self.dilation + length] for j in range(self.kernel)]
        windows = torch.cat(taps, -1).view(batch * length, self.kernel * hidden)  # (B*T, k * H_in)
        conv_weight, bias, norm_weight, norm_bias = self.conv.weight, self.conv.bias, self.norm.weight, self.norm.bias
        if hidden != self.conv.out_channels:
            # A narrower input runs on the leading `hidden` channels of the weights, and the
            # LayerNorm normalises over those channels only: exactly the op built at width
            # `hidden` with these slices as its weights. The supernet's width search shares
            # weights this way (searchspace/width.py).
            conv_weight, bias = conv_weight[:hidden, :hidden], bias[:hidden]
            norm_weight, norm_bias = norm_weight[:hidden], norm_bias[:hidden]
        weight = conv_weight.permute(2, 1, 0).reshape(self.kernel * hidden, hidden)  # (k * H_in, H_out)
        y = torch.addmm(bias, windows, weight)  # (B*T, H_out)
        if hidden != self.conv.out_channels:
            y = F.layer_norm(y.view(batch, length, hidden), (hidden,), norm_weight, norm_bias, self.norm.eps)
        else:
            y = self.norm(y.view(batch, length, hidden))  # (B, T, H)
        return torch.where(real, y, 0.0)  # (B, T, H)


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
