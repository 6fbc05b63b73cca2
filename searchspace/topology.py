"""The cell's topology, defined once: its nodes, their in-edges and the edge index.

A cell is a DAG over two inputs (nodes 0 and 1: the outputs of the two previous cells) and three
intermediate nodes (2, 3, 4). During the search each intermediate node has an edge from every
earlier node (9 edges, the rows of `op_logits` in `SEARCH_EDGES` order); a derived cell keeps
two of them per node (6 edges). The genotype, the cell, derivation, drawing, the latency model
and the latency loss all read these names, so a different topology is a change here alone.
"""

from __future__ import annotations

NUM_INPUTS = 2  # nodes 0 and 1
NUM_NODES = 3  # intermediate nodes 2, 3, 4
IN_EDGES = 2  # kept in-edges per intermediate node

NODES = tuple(range(NUM_INPUTS, NUM_INPUTS + NUM_NODES))
# (node, input) of each search edge, in the row order of `op_logits`:
# node 2 from 0, 1; node 3 from 0, 1, 2; node 4 from 0, 1, 2, 3.
SEARCH_EDGES = tuple((node, source) for node in NODES for source in range(node))
NUM_SEARCH_EDGES = len(SEARCH_EDGES)  # 2 + 3 + 4 = 9
KEPT_EDGES = NUM_NODES * IN_EDGES  # edges of a derived cell: 6
# A derived cell of the plainest shape: each node fed by the IN_EDGES nodes just before it
# (2 <- 0, 1; 3 <- 1, 2; 4 <- 2, 3). Latency measurement times ops on it.
CHAIN_EDGES = tuple((node, node - IN_EDGES + k) for node in NODES for k in range(IN_EDGES))
