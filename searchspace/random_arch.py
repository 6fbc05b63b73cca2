"""Random valid genotypes: baselines for the search (does it beat chance?) and test inputs."""

from __future__ import annotations

import random

from searchspace.genotype import DEFAULT_OPS, ZERO_OP, Edge, Genotype
from searchspace.topology import NODES, NUM_INPUTS


def random_cell(rng: random.Random, ops=DEFAULT_OPS) -> tuple[tuple[Edge, Edge], ...]:
    """Each intermediate node gets two different in-edges, each a random non-`zero` op on a random earlier node."""
    choosable = [op for op in ops if op != ZERO_OP]
    cell = []
    for node in NODES:
        first = Edge(rng.choice(choosable), rng.randrange(node))
        second = first
        while second == first:
            second = Edge(rng.choice(choosable), rng.randrange(node))
        cell.append((first, second))
    return tuple(cell)


def random_genotype(rng: random.Random, *, hidden_size: int, num_cells: int | None = None, max_cells: int = 8,
                    ops=DEFAULT_OPS) -> Genotype:
    """A random cell; the depth is random in 1..max_cells unless given."""
    depth = num_cells if num_cells is not None else rng.randint(1, max_cells)
    return Genotype(num_cells=depth, hidden_size=hidden_size, cell=random_cell(rng, ops), max_cells=max_cells,
                    ops=tuple(ops))


def random_genotypes(seed: int, count: int, *, hidden_size: int, max_depth: int, max_cells: int) -> list[Genotype]:
    """`count` random genotypes with depths in 1..max_depth, reproducible from `seed`."""
    rng = random.Random(seed)
    return [random_genotype(rng, hidden_size=hidden_size, num_cells=rng.randint(1, max_depth), max_cells=max_cells)
            for _ in range(count)]
