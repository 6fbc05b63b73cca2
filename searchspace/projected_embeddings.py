"""Word vectors kept at a width of their own and projected into the cells' width.

`StudentEmbeddings` (embeddings.py) stores the student's tables at the cells' width `hidden`,
PCA-projected from the teacher's once. This module stores them at another width `width` and
learns a linear projection `width -> hidden` applied to every token:

* width = the teacher's, tables frozen: the teacher's own word vectors, only a projection learned;
* width = the teacher's, tables trainable: as wide as the teacher's, all learned;
* width = r, tables trainable: ALBERT's factorised embedding (Lan et al. 2020, arXiv 1909.11942),
  a (vocab, r) table and an r x hidden projection.

Positions are treated as words are: a table at `width` (the teacher's, or its PCA projection),
frozen or trainable alike, added to the word vectors before the one shared projection, as
`StudentEmbeddings` adds them after its one shared PCA projection. So each variant sees what
the teacher's embedding layer sees, and the projection's input stays a sum it was fitted for.

`init_from_teacher` starts the projection at the teacher's top `hidden` principal directions,
so a variant at least as wide as `hidden` starts out computing exactly what the PCA student
computes; the variants then differ only in what training may change (and in their costs).

At inference the projection need not run: it is linear and bias-free, so projecting the sum of a
word's and a position's vectors is the sum of the two projected tables' rows. `folded` hands
back that (vocab, hidden) form, which is the PCA student's module: the per-token matmul becomes
a lookup (19% of frozen_projection's K=1 H=64 SST-2 student's batch-32 time on this project's CPU,
experiments/results/folded_embeddings.md) and the stored tables shrink to the cells' width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from searchspace.embeddings import StudentEmbeddings, principal_projection


class ProjectedEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, max_positions: int, hidden: int, width: int, dropout: float = 0.1,
                 frozen: bool = False):
        super().__init__()
        self.words = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(max_positions, width)
        self.projection = nn.Linear(width, hidden, bias=False)  # LayerNorm follows: its shift is the bias
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        # Frozen tables stay parameters (saved once, counted in `params`) that no gradient reaches,
        # so AdamW neither moves nor decays them. `requires_grad` says so to whoever counts or
        # filters parameters, but `from_pretrained` makes fresh parameters that forget it: the
        # forward's `detach` is what keeps them frozen.
        self.frozen = frozen
        for table in (self.words, self.positions):
            table.weight.requires_grad_(not frozen)

    @torch.no_grad()
    def init_from_teacher(self, words: torch.Tensor, positions: torch.Tensor) -> None:
        """Tables: the teacher's (at its width) or their projection onto its top `width` principal
        directions; the projection: from there onto the top `hidden` directions."""
        width, teacher_width = self.words.embedding_dim, words.shape[1]
        to_hidden = principal_projection(words, self.projection.out_features)  # (D, hidden)
        # (D, width): the teacher's own coordinates, or its top `width` principal directions.
        basis = None if width == teacher_width else principal_projection(words, width)
        into = (lambda table: table.float()) if basis is None else (lambda table: table.float() @ basis)
        self.words.weight.copy_(into(words))
        self.projection.weight.copy_((to_hidden if basis is None else basis.T @ to_hidden).T)  # (hidden, width)
        if positions.shape[1] == teacher_width:  # else (no teacher positions) keep the student's own
            rows = min(positions.shape[0], self.positions.num_embeddings)
            self.positions.weight[:rows].copy_(into(positions[:rows]))

    def forward(self, input_ids: torch.Tensor, hidden: int | None = None, table_width: int | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, H), or (B, T, hidden) from the leading `hidden` outputs of the
        projection and the LayerNorm and the leading `table_width` columns of the tables: the supernet's
        width search (searchspace/width.py), where a narrower student of a variant whose tables
        narrow with it (factorised) reads its share of the widest one's."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if hidden is None or hidden == self.projection.out_features:
            x = self.words(input_ids) + self.positions(positions)[None]  # (B, T, width)
            if self.frozen:
                x = x.detach()
            return self.dropout(self.norm(self.projection(x)))  # (B, T, H)
        width = table_width or self.words.embedding_dim
        x = F.embedding(input_ids, self.words.weight[:, :width]) + self.positions.weight[positions, :width][None]
        if self.frozen:
            x = x.detach()
        x = F.linear(x, self.projection.weight[:hidden, :width])  # (B, T, hidden)
        x = F.layer_norm(x, (hidden,), self.norm.weight[:hidden], self.norm.bias[:hidden], self.norm.eps)
        return self.dropout(x)

    @torch.no_grad()
    def folded(self) -> StudentEmbeddings:
        """The same function in eval mode as one (vocab, H) word table and one (positions, H)
        position table under this LayerNorm: each table projected once. What it trains is no
        longer this variant's (its tables train as pca's do), so a folded student is for serving."""
        hidden = self.projection.out_features
        weight = self.words.weight
        out = StudentEmbeddings(self.words.num_embeddings, self.positions.num_embeddings, hidden, self.dropout.p)
        out.to(device=weight.device, dtype=weight.dtype)
        projection = self.projection.weight.float().T  # (width, hidden)
        out.words.weight.copy_(weight.float() @ projection)
        out.positions.weight.copy_(self.positions.weight.float() @ projection)
        out.norm.load_state_dict(self.norm.state_dict())
        return out
