"""The AdaBERT search space: the genotype, its derivation from logits, and its drawing."""

from .derive import derive_cell, derive_depth, derive_genotype, edge_index
from .drawing import cell_graph, check_graph, render, to_dot
from .genotype import DEFAULT_OPS, PARAMETER_FREE_OPS, Edge, Genotype, InvalidGenotype

__all__ = [
    "DEFAULT_OPS", "PARAMETER_FREE_OPS", "Edge", "Genotype", "InvalidGenotype",
    "derive_cell", "derive_depth", "derive_genotype", "edge_index",
    "cell_graph", "check_graph", "render", "to_dot",
]
