"""The AdaBERT cell, shared by the supernet and the compiled student.

A cell has two input nodes (0, 1), three intermediate nodes (2, 3, 4) and an output node.
Intermediate node k sums op(node i) over its in-edges (i < k). The output node is an
attentive sum of the intermediate nodes: softmax-normalised learned weights, one per node, so
the cell output stays at the width of its inputs without a projection.

The same `Cell` class serves both networks. The supernet builds every edge of the DAG with
every candidate op; the compiled student builds only the edges and ops of its genotype. What
runs in a forward pass is decided by `choices`, one entry per edge: a list of `(op name,
weight)` pairs to compute and add, the weight being a 0-d tensor (a relaxation's sample) or
None (a fixed architecture). An edge with an empty list is not computed at all.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ops import build_op
from ops.masking import masked_mean
from searchspace.alignment import unmatched
from searchspace.topology import NODES, NUM_INPUTS, NUM_NODES, SEARCH_EDGES


def dag_edges() -> tuple[tuple[int, int], ...]:
    """Every (node, input) pair of the full cell DAG, in the order architecture logits use."""
    return SEARCH_EDGES


class Cell(nn.Module):
    def __init__(self, hidden: int, edge_ops: dict[tuple[int, int], tuple[str, ...]]):
        """`edge_ops` maps each (node, input) edge that exists to the op names built on it."""
        super().__init__()
        self.edge_keys = tuple(sorted(edge_ops))
        self.edges = nn.ModuleDict(
            {self._key(e): nn.ModuleDict({op: build_op(op, hidden) for op in edge_ops[e]}) for e in self.edge_keys}
        )
        self.node_weights = nn.Parameter(torch.zeros(NUM_NODES))

    @staticmethod
    def _key(edge: tuple[int, int]) -> str:
        return f"{edge[0]}_{edge[1]}"

    def forward(self, s0, s1, mask0, mask1, mask, choices) -> torch.Tensor:
        """s0, s1: (B, T, H) inputs with their masks (B, T); `mask` is the union, used downstream.

        `choices(edge) -> [(op, weight | None), ...]` says what to compute on each edge.
        """
        states, masks = [s0, s1], [mask0, mask1]
        for node in NODES:
            # The sum starts at the first term, not at zeros: the same values (0 + x == x) for
            # two kernels fewer per node, forward and backward; the step is launch-bound.
            total = None
            for edge in self.edge_keys:
                if edge[0] != node:
                    continue
                ops = self.edges[self._key(edge)]
                for op, weight in choices(edge):
                    out = ops[op](states[edge[1]], masks[edge[1]])  # (B, T, H)
                    out = out if weight is None else out * weight
                    total = out if total is None else total + out
            states.append(torch.zeros_like(s1) if total is None else total)
            masks.append(mask)
        weights = torch.softmax(self.node_weights, 0)
        nodes = states[NUM_INPUTS:]
        out = weights[0] * nodes[0]
        for w, s in zip(weights[1:], nodes[1:]):
            out = out + w * s
        return out * mask.unsqueeze(-1).to(out.dtype)


class ClassifierHead(nn.Module):
    """Masked mean over real tokens, a tanh layer, then the task's logits.

    For a sentence pair (`pair=True`) the head compares the two sentences rather than pooling
    them together: u and v are the means over each sentence's tokens, and the tanh layer reads
    [u, v, |u - v|, u * v] (the features of InferSent, Conneau et al. 2017, which Tang et al.
    2019 give their distilled BiLSTM) and what each sentence's tokens leave unmatched in the
    other (searchspace/alignment.py). A CNN student sees across the sentence boundary only as
    far as its kernels reach, and one mean over both sentences cannot tell a paraphrase from
    two unrelated sentences on the same topic, nor score (STS-B) how far apart the two are.
    The tanh layer is `dense` on u plus one `compare` layer per other feature: the single
    layer over the concatenation, split by input block, so that a narrower width (the
    supernet's width search, searchspace/width.py) keeps each block's leading channels.
    """

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1, pair: bool = False):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.compare = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(4)) if pair else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pair: PairInputs | None = None) -> torch.Tensor:
        """x (B, T, w) the last cell's output, mask (B, T); `pair`: what a pair head reads besides
        (`pair_inputs`), None for a single sentence."""
        width = x.shape[-1]
        if self.compare is None:
            hidden = _leading(self.dense, masked_mean(x, mask), width)  # (B, w)
        else:
            first, second, gap = pair if pair is not None else (mask, mask, unmatched(x, mask, mask))
            u, v = masked_mean(x, first), masked_mean(x, second)  # (B, w) each
            hidden = _leading(self.dense, u, width)
            for layer, feature in zip(self.compare, (v, (u - v).abs(), u * v, gap)):
                hidden = hidden + _leading(layer, feature, width)
        hidden = self.dropout(torch.tanh(hidden))
        if width == self.out.in_features:
            return self.out(hidden)  # (B, C)
        return F.linear(hidden, self.out.weight[:, :width], self.out.bias)  # (B, C)


def _leading(layer: nn.Linear, x: torch.Tensor, width: int) -> torch.Tensor:
    """`layer` applied to x (B, w): at a narrower width than it was built for (the supernet's
    width search) the layer of that width whose weights are its leading slices."""
    if width == layer.in_features:
        return layer(x)
    bias = None if layer.bias is None else layer.bias[:width]
    return F.linear(x, layer.weight[:width, :width], bias)


class PairInputs(NamedTuple):
    """What a pair head reads besides the last cell's output."""

    first: torch.Tensor  # (B, T) bool: the first sentence's tokens
    second: torch.Tensor  # (B, T) bool: the second sentence's
    # (B, w) what the sentences' word vectors leave unmatched in each other (alignment.py). On the
    # word vectors, where a word and its repeat or synonym in the other sentence are close
    # whatever their contexts; it depends on no cell, so every head of a network shares it.
    unmatched: torch.Tensor


def pair_inputs(mask: torch.Tensor, token_type_ids, embedded: torch.Tensor) -> PairInputs:
    """The `PairInputs` of a batch: mask (B, T) bool, the batch's token types, the embedding output."""
    first, second = segment_masks(mask, token_type_ids)
    return PairInputs(first, second, unmatched(embedded, first, second))


def predates_pair_head(key: str, source) -> bool:
    """Whether `key` is a pair head's `compare` weight that `source`, a pair task's supernet state
    saved before pair heads existed, lacks: a student or KD head inheriting from it starts it fresh."""
    return key not in source and ".compare." in key


def segment_masks(mask: torch.Tensor, token_type_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks (B, T) of a pair's first and second sentence, split by `token_type_ids`; without
    them both are the whole of `mask` (bool (B, T))."""
    if token_type_ids is None:
        return mask, mask
    second = mask & token_type_ids.bool()
    return mask & ~second, second


def cell_inputs(embedded: torch.Tensor, attention_mask: torch.Tensor, token_type_ids, pair: bool):
    """The first cell's two inputs with their masks.

    For a sentence pair the two sentences are the two inputs: the embedded sequence masked to
    segment A, and to segment B (token_type_ids split them), at their original positions.
    A single sentence feeds both inputs.
    """
    mask = attention_mask.bool()  # (B, T)
    if not pair or token_type_ids is None:
        return embedded, embedded, mask, mask
    first, second = segment_masks(mask, token_type_ids)
    return embedded * first.unsqueeze(-1), embedded * second.unsqueeze(-1), first, second


def run_cells(cells, embedded, attention_mask, token_type_ids, pair, cell_choices, depth):
    """Run the first `depth` cells; returns each cell's output (a list of (B, T, H)) and the mask.

    Cell 1 takes the two inputs of `cell_inputs`; cell 2 takes the whole embedded sequence and
    cell 1's output; from then on each cell takes the outputs of the two cells before it (DARTS).
    """
    s0, s1, m0, m1 = cell_inputs(embedded, attention_mask, token_type_ids, pair)
    mask = attention_mask.bool()
    outputs = []
    for index in range(depth):
        out = cells[index](s0, s1, m0, m1, mask, cell_choices(index))
        outputs.append(out)
        s0 = embedded * mask.unsqueeze(-1).to(embedded.dtype) if index == 0 else s1
        s1, m0, m1 = out, mask, mask
    return outputs, mask


def fixed_choices(edge_ops: dict[tuple[int, int], tuple[str, ...]]):
    """`cell_choices` for `run_cells` when the architecture is fixed, as in a compiled student:
    every cell computes every op built on each of its edges, unweighted. Latency measurement
    runs stacks of bare cells with it (nas/deploy/latency_measure.py)."""
    fixed = {edge: [(op, None) for op in ops] for edge, ops in edge_ops.items()}
    return lambda index: fixed.__getitem__
