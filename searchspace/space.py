"""The search space definition: what the supernet is built from and what can be chosen."""

from __future__ import annotations

from dataclasses import dataclass

from ops import OP_NAMES
from searchspace.genotype import DEFAULT_EMBEDDINGS


@dataclass(frozen=True)
class SearchSpace:
    hidden_size: int = 128
    max_cells: int = 8  # Kmax: the searched depth K is in 1..max_cells
    ops: tuple[str, ...] = OP_NAMES
    shared_cells: bool = True  # one set of op logits for every cell (AdaBERT); False: one per cell
    dropout: float = 0.1
    # Hidden sizes the search chooses among (searchspace/width.py); empty: hidden_size only, no
    # width choice. The supernet is built at hidden_size, the widest of them; a narrower width
    # runs on the leading channels of the shared weights.
    widths: tuple[int, ...] = ()
    # The word-vector variant (searchspace/embedding_variants.py) the supernet trains and the
    # derived student records in arch.json: the student inherits what the search trained.
    embeddings: str = DEFAULT_EMBEDDINGS

    @property
    def width_choices(self) -> tuple[int, ...]:
        """The widths a searched student can have, narrowest first."""
        return tuple(sorted(self.widths)) if self.widths else (self.hidden_size,)

    @property
    def searches_width(self) -> bool:
        return len(self.width_choices) > 1
