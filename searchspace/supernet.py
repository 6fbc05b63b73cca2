"""The supernet: Kmax stacked cells holding every op on every edge, and a classifier per depth.

The architecture (op logits per edge, shared by every cell or one set per cell, and depth
logits) is made of ordinary parameters, split from the weights by `arch_parameters()` and
`weight_parameters()`. A forward pass takes a `Path`: the weights of each op on each edge and
of each depth, as produced by a sampler (hard Gumbel computes one op per edge and one depth;
soft computes everything) or fixed from a genotype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from searchspace.cell import Cell, ClassifierHead, dag_edges, pair_inputs, run_cells
from searchspace.embedding_variants import build_embeddings, table_width
from searchspace.space import SearchSpace
from searchspace.width import mix_widths, width_one_hot


@dataclass
class Path:
    """One architecture for one forward pass.

    op_weights: (cells, edges, ops) — zero entries are skipped, so a one-hot row computes one op.
    depth_weights: (Kmax,) — the deepest non-zero entry decides how many cells run.
    """

    op_weights: torch.Tensor
    depth_weights: torch.Tensor
    # (W,) over the space's width choices, narrowest first; None when the width is not searched.
    width_weights: torch.Tensor | None = None

    @property
    def depth(self) -> int:
        return int(torch.nonzero(self.depth_weights.detach()).max()) + 1


class SuperNet(nn.Module):
    def __init__(self, space: SearchSpace, vocab_size: int, max_positions: int, num_labels: int, pair: bool,
                 teacher_width: int | None = None):
        """`teacher_width`: the width of the teacher's word vectors, which the variants that keep
        them at that width need (searchspace/embedding_variants.py)."""
        super().__init__()
        self.space, self.pair = space, pair
        self.teacher_width = teacher_width
        self.edges = dag_edges()
        every_op = {edge: space.ops for edge in self.edges}
        self.embeddings = build_embeddings(space.embeddings, vocab_size, max_positions, space.hidden_size,
                                           table_width(space.embeddings, space.hidden_size, teacher_width), space.dropout)
        self.cells = nn.ModuleList(Cell(space.hidden_size, every_op) for _ in range(space.max_cells))
        self.heads = nn.ModuleList(
            ClassifierHead(space.hidden_size, num_labels, space.dropout, pair=pair) for _ in range(space.max_cells)
        )
        logit_sets = 1 if space.shared_cells else space.max_cells
        self.op_logits = nn.Parameter(1e-3 * torch.randn(logit_sets, len(self.edges), len(space.ops)))
        self.depth_logits = nn.Parameter(torch.zeros(space.max_cells))
        # The width choice exists only when searched, so a search without one draws the same
        # Gumbel noise and holds the same parameters as before widths were searchable.
        self.widths = space.width_choices if space.searches_width else ()
        if self.widths:
            self.width_logits = nn.Parameter(torch.zeros(len(self.widths)))

    # ---- parameter groups
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.op_logits, self.depth_logits, *([self.width_logits] if self.widths else [])]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # ---- paths
    def sample_path(self, sampler, tau: float, generator=None) -> Path:
        op_weights = sampler(self.op_logits, tau, generator)  # (sets, E, O)
        if op_weights.shape[0] == 1:
            op_weights = op_weights.expand(self.space.max_cells, -1, -1)
        depth_weights = sampler(self.depth_logits, tau, generator)
        width_weights = sampler(self.width_logits, tau, generator) if self.widths else None
        return Path(op_weights, depth_weights, width_weights)

    def genotype_path(self, genotype) -> Path:
        """The fixed path of a genotype: its edges and ops with weight 1, its depth."""
        device = self.op_logits.device
        op_weights = torch.zeros(self.space.max_cells, len(self.edges), len(self.space.ops), device=device)
        for node, edge in genotype.edges():
            op_weights[:, self.edges.index((node, edge.input)), self.space.ops.index(edge.op)] = 1.0
        depth_weights = torch.zeros(self.space.max_cells, device=device)
        depth_weights[genotype.num_cells - 1] = 1.0
        return Path(op_weights, depth_weights, width_one_hot(self.widths, genotype.hidden_size, device))

    # ---- forward
    def forward(self, input_ids, attention_mask, token_type_ids=None, *, path: Path):
        """Returns (final logits (B, C), per-depth logits [(B, C)] for depths 1..K).

        With a width choice, the network runs once per width of non-zero weight and the
        outputs are mixed by those weights (searchspace/width.py)."""
        if path.width_weights is None:
            return self._forward_at(None, input_ids, attention_mask, token_type_ids, path)
        runs = [(weight, self._forward_at(width, input_ids, attention_mask, token_type_ids, path))
                for width, weight in zip(self.widths, path.width_weights) if weight.detach() != 0]
        return mix_widths(runs)

    def _forward_at(self, width, input_ids, attention_mask, token_type_ids, path: Path):
        """The forward pass at one width (None: the full hidden size)."""
        depth = path.depth
        ops = self.space.ops

        def cell_choices(index):
            weights = path.op_weights[index]  # (E, O)
            nonzero = weights.detach() != 0

            def choices(edge):
                row = self.edges.index(edge)
                return [(ops[o], weights[row, o]) for o in torch.nonzero(nonzero[row]).flatten().tolist()]

            return choices

        # (B, T, width or H); the cells and heads follow its width. A narrower student's tables
        # may be narrower too (factorised): it reads their leading columns, as it does every weight's.
        tables = None if width is None else table_width(self.space.embeddings, width, self.teacher_width)
        embedded = self.embeddings(input_ids, width, tables)
        outputs, mask = run_cells(self.cells, embedded, attention_mask, token_type_ids, self.pair, cell_choices, depth)
        pair = pair_inputs(mask, token_type_ids, embedded) if self.pair else None
        per_depth = [self.heads[k](out, mask, pair) for k, out in enumerate(outputs)]
        # A one-hot depth makes this the chosen head's logits, with a gradient to the depth logits.
        final = sum(path.depth_weights[k] * logits for k, logits in enumerate(per_depth) if path.depth_weights[k] != 0)
        return final, per_depth
