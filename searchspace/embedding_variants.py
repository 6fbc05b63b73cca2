"""The student's word-vector variants, by stable name: how wide its tables are and what trains.

A genotype names its variant in arch.json (`embeddings`, absent meaning `pca`); the compiled
student builds it through `build_embeddings`, and its config records the table width, so a
saved student rebuilds the same module from its folder alone. Every variant has the same
interface: `words` (the token table, `nn.Embedding`, what `get_input_embeddings()` returns),
`positions`, `norm`, `init_from_teacher(words, positions)`, `forward(input_ids) -> (B, T, H)` and
`folded()`, the module that computes the same in eval mode as served (the student's
`for_inference`): a projected variant's tables pre-multiplied by its projection, pca's own.

| name | token table | trained | per token in training | served (folded) |
| --- | --- | --- | --- | --- |
| pca | (vocab, H), the teacher's PCA-projected | all | a lookup | the same |
| frozen_projection | (vocab, D), the teacher's own | the projection D->H only | a lookup, a D x H matmul | a (vocab, H) lookup |
| wide_projection | (vocab, D), the teacher's own | all | a lookup, a D x H matmul | a (vocab, H) lookup |
| factorised | (vocab, r), r = H // 2, the teacher's PCA-projected | all | a lookup, an r x H matmul | a (vocab, H) lookup |

(D: the teacher's width; H: the student's.) experiments/results/word_vectors.md measures them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from searchspace.embeddings import StudentEmbeddings
from searchspace.genotype import EMBEDDING_VARIANTS
from searchspace.projected_embeddings import ProjectedEmbeddings


@dataclass(frozen=True)
class EmbeddingVariant:
    name: str
    # (hidden, teacher width or None) -> width of the word and position tables
    width: Callable[[int, int | None], int]
    # (vocab, max positions, hidden, width, dropout) -> the module
    build: Callable[[int, int, int, int, float], nn.Module]
    teacher_wide: bool = False  # its tables are as wide as the teacher's, whatever the student's width


def _teacher_wide(name: str, build: Callable[[int, int, int, int, float], nn.Module]) -> EmbeddingVariant:
    """A variant whose tables are as wide as the teacher's word vectors, whatever the student's width."""
    def width(hidden: int, teacher_width: int | None) -> int:
        if teacher_width is None:  # a caller's omission, not user input
            raise ValueError(f"embeddings {name!r} are as wide as the teacher's: pass teacher_width")
        return teacher_width

    return EmbeddingVariant(name, width, build, teacher_wide=True)


def factorised_rank(hidden: int) -> int:
    """ALBERT keeps its table narrower than its layers (128 against 768 and up); half of the
    student's width halves the table that dominates its size (30522 x 128 = 3.9M of the K=4 student's 4.8M)."""
    return max(1, hidden // 2)


EMBEDDINGS: dict[str, EmbeddingVariant] = {
    "pca": EmbeddingVariant(
        "pca", lambda hidden, teacher: hidden,
        lambda vocab, positions, hidden, width, dropout: StudentEmbeddings(vocab, positions, hidden, dropout)),
    "frozen_projection": _teacher_wide(
        "frozen_projection",
        lambda vocab, positions, hidden, width, dropout: ProjectedEmbeddings(vocab, positions, hidden, width, dropout,
                                                                             frozen=True)),
    "wide_projection": _teacher_wide(
        "wide_projection",
        lambda vocab, positions, hidden, width, dropout: ProjectedEmbeddings(vocab, positions, hidden, width, dropout)),
    "factorised": EmbeddingVariant(
        "factorised", lambda hidden, teacher: factorised_rank(hidden),
        lambda vocab, positions, hidden, width, dropout: ProjectedEmbeddings(vocab, positions, hidden, width, dropout)),
}

# arch.json validation names the variants without importing torch (searchspace/genotype.py);
# a variant registered here but unknown there could never be chosen, and the reverse never built.
if tuple(EMBEDDINGS) != EMBEDDING_VARIANTS:
    raise RuntimeError(f"embedding variants {tuple(EMBEDDINGS)} differ from genotype.EMBEDDING_VARIANTS {EMBEDDING_VARIANTS}")


# The variants whose tables are as wide as the teacher's: building one needs that width.
TEACHER_WIDE = tuple(name for name, variant in EMBEDDINGS.items() if variant.teacher_wide)


def table_width(name: str, hidden: int, teacher_width: int | None = None) -> int:
    """The width of variant `name`'s tables for a student `hidden` wide and a teacher `teacher_width` wide."""
    return EMBEDDINGS[name].width(hidden, teacher_width)


def build_embeddings(name: str, vocab_size: int, max_positions: int, hidden: int, width: int,
                     dropout: float = 0.1) -> nn.Module:
    return EMBEDDINGS[name].build(vocab_size, max_positions, hidden, width, dropout)
