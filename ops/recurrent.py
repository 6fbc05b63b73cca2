"""`bigru`: a bidirectional GRU over the sequence, the one op whose context is the whole sentence.

Not one of AdaBERT's ten ops, so no search offers it unless asked (`--set ops=...,bigru`,
nas/train/search.py). Its context is the whole sentence, where a convolution's is its kernel's
reach; under a tight budget (20x the teacher's speed: one cell of width 64-96) that is what a
convolutional cell lacks most. experiments/results/recurrent_op.md measures it in such a cell on
SST-2: in place of a max-pool it lifted the cell trained on the task's own rows (0.8589 against
0.8452, two seeds), but on the 5-copy transfer set the two scored the same (0.8601 and 0.8624,
seeds 42 and 43), and the `bigru` student ran at 19-20x the teacher's batch-32 speed where the
max-pool one ran at 27-29x. It pays where it does the cell's work and the other edges are
identities and max-pools: such a cell scored 0.8704 and 0.8750 at width 128 (21-24x, two seeds)
and 0.8819 at 256 (11x).

Each direction has half the channels (the backward one the odd channel when H is odd), and
the two outputs side by side are the op's (B, T, H). The backward direction must start at a
sentence's own last token, not at the batch's last position, or a sentence's output would
depend on how much padding its batch brings: each row's real tokens are reversed in place
(padding stays behind them), run forward, and put back. The forward direction reads padding
only after a sentence's last token, where the output is masked.

A narrower width (the supernet's width search, searchspace/width.py) runs on the leading
units of each gate and the leading input channels: exactly the op built at that width with
those slices as its weights, as for the convolutions.
"""

import torch
from torch import nn

from ops.registry import register_op

GATES = 3  # a GRU's reset, update and candidate gates, stacked in its weights in that order


def _units(hidden: int) -> tuple[int, int]:
    """The forward and backward directions' units at width `hidden`."""
    return hidden // 2, hidden - hidden // 2


class BiGRU(nn.Module):
    """Forward GRU and backward GRU, each over a sentence's real tokens, outputs concatenated."""

    def __init__(self, hidden: int):
        super().__init__()
        forward_units, backward_units = _units(hidden)
        self.forward_gru = nn.GRU(hidden, forward_units, batch_first=True)
        self.backward_gru = nn.GRU(hidden, backward_units, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        real = mask.unsqueeze(-1)  # (B, T, 1)
        x = torch.where(real, x, 0.0)  # nothing at a padded position (not even NaN) gets in
        lengths = mask.sum(1, keepdim=True)  # (B, 1)
        positions = torch.arange(length, device=x.device).unsqueeze(0)  # (1, T)
        # Position t of a reversed row holds token length-1-t; padding keeps its place. The
        # permutation is its own inverse, so the same gather puts the outputs back.
        reversed_at = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, T)
        forward_units, backward_units = _units(hidden)
        ahead = _run(self.forward_gru, x, forward_units)  # (B, T, h_f)
        flipped = x.gather(1, reversed_at.unsqueeze(-1).expand(-1, -1, hidden))
        behind = _run(self.backward_gru, flipped, backward_units)  # (B, T, h_b), reversed order
        behind = behind.gather(1, reversed_at.unsqueeze(-1).expand(-1, -1, backward_units))
        return torch.where(real, torch.cat([ahead, behind], -1), 0.0)  # (B, T, H)


def _run(gru: nn.GRU, x: torch.Tensor, units: int) -> torch.Tensor:
    """`gru` over x (B, T, w) from a zero state; narrower than it was built, on its leading
    `units` units per gate and `w` input channels."""
    width, built = x.shape[-1], gru.hidden_size
    if units == built and width == gru.input_size:
        return gru(x)[0]
    weights = [gru.weight_ih_l0.view(GATES, built, -1)[:, :units, :width].reshape(GATES * units, width),
               gru.weight_hh_l0.view(GATES, built, built)[:, :units, :units].reshape(GATES * units, units),
               gru.bias_ih_l0.view(GATES, built)[:, :units].reshape(-1),
               gru.bias_hh_l0.view(GATES, built)[:, :units].reshape(-1)]
    start = x.new_zeros(1, x.shape[0], units)  # (layers, B, units)
    return torch.gru(x, start, weights, True, 1, 0.0, gru.training, False, True)[0]


def _gru_params(hidden: int) -> int:
    # Per direction of u units: input and recurrent weights of three gates, and two biases each.
    return sum(GATES * (u * hidden + u * u + 2 * u) for u in _units(hidden))


def _gru_flops(hidden: int, seq_len: int) -> int:
    # Every token's step multiplies the input (H) and the state (u) into three gates of u units.
    # (One recurrence for both directions, their weights block-diagonal, was tried: on this
    # project's CPU it was faster at batch 1 only, and 0.6x as fast at batch 256 with H=128.)
    return sum(2 * seq_len * GATES * (u * hidden + u * u) for u in _units(hidden))


register_op("bigru", parameter_free=False, params=_gru_params, flops=_gru_flops)(BiGRU)
