"""The search space definition: what the supernet is built from and what can be chosen."""

from __future__ import annotations

from dataclasses import dataclass

from ops import OP_NAMES


@dataclass(frozen=True)
class SearchSpace:
    hidden_size: int = 128
    max_cells: int = 8  # Kmax: the searched depth K is in 1..max_cells
    ops: tuple[str, ...] = OP_NAMES
    shared_cells: bool = True  # one set of op logits for every cell (AdaBERT); False: one per cell
    dropout: float = 0.1
