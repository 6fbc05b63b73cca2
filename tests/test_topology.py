"""The cell's topology is defined once (searchspace/topology.py) and every reader agrees with it."""

from kd.losses import expected_latency
from nas.deploy.latency_measure import uniform_edges
from nas.deploy.latency_table import EDGES_PER_CELL
from searchspace import topology
from searchspace.cell import dag_edges
from searchspace.derive import edge_index
from searchspace.drawing import INTERMEDIATES
from searchspace.genotype import Edge, Genotype


def test_search_edges_are_every_earlier_node_of_each_intermediate_node():
    assert topology.SEARCH_EDGES == ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (4, 3))
    assert topology.NUM_SEARCH_EDGES == 9 and topology.KEPT_EDGES == 6


def test_every_reader_uses_the_one_topology():
    assert dag_edges() == edge_index() == topology.SEARCH_EDGES
    assert EDGES_PER_CELL == topology.KEPT_EDGES == len(topology.CHAIN_EDGES) == len(uniform_edges("cnn3"))
    assert set(uniform_edges("cnn3")) == set(topology.CHAIN_EDGES) <= set(topology.SEARCH_EDGES)
    assert INTERMEDIATES == tuple(f"n{node}" for node in topology.NODES)
    assert expected_latency.__defaults__[-1] == topology.KEPT_EDGES


def test_the_chain_cell_is_a_valid_genotype():
    cell = [[Edge("cnn3", source) for n, source in topology.CHAIN_EDGES if n == node] for node in topology.NODES]
    genotype = Genotype(cell=cell, num_cells=1, hidden_size=8)
    assert [(node, edge.input) for node, edge in genotype.edges()] == list(topology.CHAIN_EDGES)
