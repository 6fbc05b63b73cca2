"""Student embeddings initialised from the teacher's and projected to the student's width.

AdaBERT initialises the student's word and position embeddings from the teacher. The teacher's
width (384 for MiniLM, 768 for BERT-base) is wider than the student's (128 by default), so the
teacher tables are projected once, at initialisation, onto their top principal directions. The
student keeps a (vocab, hidden) table rather than a (vocab, teacher width) one plus a projection:
that is 3x fewer embedding parameters and one matmul less per token at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def principal_projection(table: torch.Tensor, width: int) -> torch.Tensor:
    """(D, width) matrix onto the top `width` principal directions of `table` (N, D)."""
    centred = table.float() - table.float().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)  # v: (min(N, D), D)
    projection = v[:width].T  # (D, width)
    if projection.shape[1] < width:  # a teacher narrower than the student: pad with zeros
        projection = torch.cat([projection, projection.new_zeros(projection.shape[0], width - projection.shape[1])], 1)
    return projection


def teacher_tables(teacher) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The word (V, D) and learned position (P, D) embedding tables of a Hugging Face teacher,
    as detached copies (None for positions when it has no learned table, e.g. rotary ones).

    Every student initialised from the teacher reads them here: the searched student and the
    supernet (`nas search`, `nas finetune`) and the KD baselines (kd/students.py).
    """
    words = teacher.get_input_embeddings().weight.detach().clone()
    positions = getattr(getattr(teacher.base_model, "embeddings", None), "position_embeddings", None)
    return words, (positions.weight.detach().clone() if positions is not None else None)


class StudentEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, max_positions: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.words = nn.Embedding(vocab_size, hidden)
        self.positions = nn.Embedding(max_positions, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    @torch.no_grad()
    def init_from_teacher(self, words: torch.Tensor, positions: torch.Tensor) -> None:
        """Copy the teacher's tables, projected with one shared projection so their sum stays meaningful."""
        projection = principal_projection(words, self.words.embedding_dim)
        self.words.weight.copy_(words.float() @ projection)
        rows = min(positions.shape[0], self.positions.num_embeddings)
        self.positions.weight[:rows].copy_(positions[:rows].float() @ projection)

    def folded(self) -> StudentEmbeddings:
        """Its inference form (see ProjectedEmbeddings.folded): already one table per kind."""
        return self

    def forward(self, input_ids: torch.Tensor, width: int | None = None, table_width: int | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, H), or (B, T, width) from the leading `width` channels of the
        tables and the LayerNorm (the supernet's width search, searchspace/width.py). The tables
        are as wide as the output here, so `table_width` (ProjectedEmbeddings' own) is `width`."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if width is None or width == self.words.embedding_dim:
            x = self.words(input_ids) + self.positions(positions)[None]  # (B, T, H)
            return self.dropout(self.norm(x))
        x = F.embedding(input_ids, self.words.weight[:, :width]) + self.positions.weight[positions, :width][None]
        x = F.layer_norm(x, (width,), self.norm.weight[:width], self.norm.bias[:width], self.norm.eps)  # (B, T, w)
        return self.dropout(x)
