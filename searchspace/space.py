"""The search space definition: what the supernet is built from and what can be chosen."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ops import ADABERT_OPS
from searchspace.genotype import DEFAULT_EMBEDDINGS

# The word vectors a search trains unless its settings name them: "auto" takes the variant measured
# best for the task's kind of input (experiments/results/gap.md). Single sentences: the teacher's
# table frozen under a learned projection, whose SST-2 students scored 4-5 points above pca's (the
# 5x searches' on the 8,000-row transfer set, 0.8486 against 0.7970-0.8016; one K=1 H=64 cell
# finetuned on every training row, 0.8452 against 0.8050). Sentence pairs: pca, since on MRPC the
# frozen table did not help (F1 0.8316 against 0.8367, one seed each) and its training stores 2.7x
# the parameters (served, folded, the two are one size).
AUTO_EMBEDDINGS = "auto"


def embeddings_for(pair: bool) -> str:
    """The variant `auto` stands for on single sentences (pair False) or sentence pairs."""
    return "pca" if pair else "frozen_projection"


@dataclass(frozen=True)
class SearchSpace:
    hidden_size: int = 128
    max_cells: int = 8  # Kmax: the searched depth K is in 1..max_cells
    ops: tuple[str, ...] = ADABERT_OPS  # the ops every edge chooses among
    shared_cells: bool = True  # one set of op logits for every cell (AdaBERT); False: one per cell
    dropout: float = 0.1
    # Hidden sizes the search chooses among (searchspace/width.py); empty: hidden_size only, no
    # width choice. The supernet is built at hidden_size, the widest of them; a narrower width
    # runs on the leading channels of the shared weights.
    widths: tuple[int, ...] = ()
    # The word-vector variant (searchspace/embedding_variants.py) the supernet trains and the
    # derived student records in arch.json: the student inherits what the search trained.
    # A search's settings default to AUTO_EMBEDDINGS (nas/train/search.py), resolved for the task
    # by `for_inputs` before the supernet is built.
    embeddings: str = DEFAULT_EMBEDDINGS

    def for_inputs(self, pair: bool) -> SearchSpace:
        """This space with `auto` word vectors resolved for single sentences or sentence pairs."""
        return replace(self, embeddings=embeddings_for(pair)) if self.embeddings == AUTO_EMBEDDINGS else self

    @property
    def width_choices(self) -> tuple[int, ...]:
        """The widths a searched student can have, narrowest first."""
        return tuple(sorted(self.widths)) if self.widths else (self.hidden_size,)

    @property
    def searches_width(self) -> bool:
        return len(self.width_choices) > 1
