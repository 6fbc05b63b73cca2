"""The compiled student's per-cell heads for AdaBERT's probe KD, kept outside the student.

AdaBERT distils every depth, not only the final logits: after cell i a head turns that cell's
output into logits, which learn from the teacher's probe of the matching layer
(`kd.losses.probes_kd`). The supernet has such a head per depth (`SuperNet.heads`); the compiled
student keeps only its own classifier, the head of its last cell. The heads of the cells below
it are this module: built the same way as the supernet's (`ClassifierHead`, masked mean over
real tokens), so a finetune from the search's weights starts them where the search left them,
and trained beside the student but never part of it, so no saved or exported model holds them.

They pool by the mean over real tokens whatever pooling the knowledge's probes used ([CLS] or
mean), as the search's heads and the student's own classifier do: the last head is that
classifier, and a head per cell that pooled otherwise could not start from the search's.
"""

from __future__ import annotations

import torch
from torch import nn

from searchspace.cell import ClassifierHead, predates_pair_head
from searchspace.width import leading_slice


class CellHeads(nn.Module):
    """K - 1 heads for a student of K cells: head i reads cell i's output (1 <= i < K)."""

    def __init__(self, hidden: int, num_labels: int, depth: int, dropout: float = 0.1, pair: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(ClassifierHead(hidden, num_labels, dropout, pair) for _ in range(depth - 1))

    @classmethod
    def for_student(cls, student) -> "CellHeads":
        """Fresh heads that fit `student` (an `AdaBertStudentForSequenceClassification`)."""
        config = student.config
        return cls(config.arch.hidden_size, config.num_labels, config.arch.num_cells, config.dropout, config.pair_head)

    def forward(self, per_cell: tuple[torch.Tensor, ...], mask: torch.Tensor, pair=None) -> list[torch.Tensor]:
        """per_cell: the student's K cell outputs (B, T, H) (`CellOutputs.per_cell`), mask (B, T),
        pair: what a pair head reads besides (`CellOutputs.pair`).
        Returns K - 1 logits (B, C), for cells 1..K-1; the last cell's are the student's own."""
        return [head(out, mask, pair) for head, out in zip(self.heads, per_cell)]

    @torch.no_grad()
    def inherit_from_supernet(self, supernet) -> None:
        """Copy the supernet's depth-i heads (`heads.{i-1}`), from the module or its state dict. A
        student narrower than the supernet (a searched width) takes each weight's leading channels,
        as the student itself does (searchspace/width.py)."""
        source = supernet if isinstance(supernet, dict) else supernet.state_dict()
        for name, tensor in self.state_dict().items():
            if predates_pair_head(name, source):
                continue
            tensor.copy_(leading_slice(source[name], tensor.shape))  # "heads.{i}.dense.weight" is the supernet's own name
