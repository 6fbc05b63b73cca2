"""Drawing: the networkx check, the DOT source, and rendering without the `dot` binary."""

import random
import re
import shutil
from pathlib import Path

import graphviz
import networkx as nx
import pytest

from nas.base.errors import UserError
from searchspace import drawing
from searchspace.derive import derive_cell
from searchspace.drawing import cell_graph, check_graph, op_family, render, to_dot
from searchspace.genotype import DEFAULT_OPS, Genotype

MINIMAL = Path(__file__).parent / "fixtures" / "arch" / "valid" / "minimal.json"
NODES = {"in0", "in1", "n2", "n3", "n4", "out"}


@pytest.fixture
def genotype() -> Genotype:
    return Genotype.load(MINIMAL)


def random_genotypes(count=20, seed=0):
    rng = random.Random(seed)
    for _ in range(count):
        rows = [[rng.gauss(0, 2) for _ in DEFAULT_OPS] for _ in range(9)]
        yield Genotype(num_cells=rng.randint(1, 8), hidden_size=64, cell=derive_cell(rows))


def test_cell_graph_nodes_and_edges(genotype):
    graph = cell_graph(genotype)
    assert set(graph) == NODES
    assert graph.nodes["in0"]["kind"] == "input" and graph.nodes["out"]["kind"] == "output"
    assert graph.edges["in0", "n2"]["ops"] == ("cnn3",)
    assert graph.edges["n3", "n4"]["label"] == "cnn7"
    assert graph.edges["n2", "n3"]["ops"] == ("dilated_cnn5",)
    assert all(graph.has_edge(n, "out") for n in ("n2", "n3", "n4"))
    assert graph.number_of_edges() == 6 + 3


def test_a_node_reading_one_input_twice_keeps_both_ops(genotype):
    cell = [[["cnn3", 0], ["max_pool", 0]], *[list(map(list, node)) for node in genotype.cell[1:]]]
    graph = cell_graph(Genotype(num_cells=1, hidden_size=8, cell=cell))
    assert graph.edges["in0", "n2"]["ops"] == ("cnn3", "max_pool")
    assert graph.edges["in0", "n2"]["label"] == "cnn3 + max_pool"


def test_check_graph_passes_for_valid_cells(genotype):
    check_graph(cell_graph(genotype))
    for g in random_genotypes():
        check_graph(cell_graph(g))


def _bad_graph(change):
    graph = nx.DiGraph()
    graph.add_edges_from([("in0", "n2"), ("in1", "n2"), ("n2", "n3"), ("in0", "n3"),
                          ("n3", "n4"), ("in1", "n4"), ("n2", "out"), ("n3", "out"), ("n4", "out")])
    check_graph(graph)  # the base graph is fine: each case breaks it one way
    change(graph)
    return graph


@pytest.mark.parametrize("change, fragment", [
    (lambda g: g.add_edge("n4", "n2"), "has a cycle"),
    (lambda g: g.remove_node("out"), "missing node out"),
    (lambda g: g.remove_edges_from([("n4", "out")]), "node n4 does not reach the output"),
    (lambda g: g.add_edge("n5", "out"), "node n5 is not fed by any input"),
], ids=["cycle", "no_output", "dead_end", "unfed"])
def test_check_graph_rejects_bad_graphs(change, fragment):
    with pytest.raises(UserError) as excinfo:
        check_graph(_bad_graph(change), source="arch.json")
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("arch.json: ") and fragment in message


def test_op_family():
    assert [op_family(op) for op in ("cnn7", "dilated_cnn3", "avg_pool", "max_pool", "identity")] \
        == ["cnn", "dilated_cnn", "pool", "pool", "identity"]


def test_dot_source_has_every_node_and_labelled_edge(genotype):
    source = to_dot(genotype)
    for node in NODES:
        assert re.search(rf"^\s*{node} \[", source, re.M), node
    for node, edge in genotype.edges():
        source_node = f"in{edge.input}" if edge.input < 2 else f"n{edge.input}"
        assert re.search(rf"^\s*{source_node} -> n{node} \[label={edge.op} ", source, re.M), edge
    for node in ("n2", "n3", "n4"):
        assert re.search(rf"^\s*{node} -> out ", source, re.M)
    assert "subgraph cluster_cell" in source and "subgraph cluster_stack" in source


def test_dot_source_shows_the_stack_of_k_cells(genotype):
    source = to_dot(genotype)  # K = 3
    chain = ["stack_embedding", "stack_cell1", "stack_cell2", "stack_cell3", "stack_classifier"]
    for a, b in zip(chain, chain[1:]):
        assert f"{a} -> {b}" in source
    assert "stack_cell4" not in source


def test_edges_are_coloured_by_op_family(genotype):
    colour = dict(re.findall(r"label=(\w+) color=\"(#\w+)\"", to_dot(genotype)))
    assert colour["cnn3"] == colour["cnn7"] != colour["dilated_cnn5"]
    assert colour["max_pool"] == colour["avg_pool"] != colour["cnn3"]


def test_render_dot_needs_no_binary(genotype, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = render(genotype, tmp_path / "draw" / "cell.dot")
    assert out.read_text() == to_dot(genotype)


def test_render_svg_without_binary_writes_the_source_and_says_so(genotype, tmp_path, monkeypatch):
    def pipe(self, format):
        raise AssertionError("must not try to run graphviz without the binary")

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(graphviz.Source, "pipe", pipe)
    with pytest.raises(UserError) as excinfo:
        render(genotype, tmp_path / "cell.svg")
    message = str(excinfo.value)
    assert "\n" not in message and "`dot` binary" in message and str(tmp_path / "cell.dot") in message
    assert (tmp_path / "cell.dot").read_text() == to_dot(genotype)
    assert not (tmp_path / "cell.svg").exists()


def test_render_svg_with_binary_writes_what_graphviz_returns(genotype, tmp_path, monkeypatch):
    calls = []

    def pipe(self, format):
        calls.append((self.source, format))
        return b"<svg/>"

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(graphviz.Source, "pipe", pipe)
    out = render(genotype, tmp_path / "cell.svg")
    assert out.read_bytes() == b"<svg/>"
    assert calls == [(to_dot(genotype), "svg")]


def test_render_rejects_unknown_suffixes(genotype, tmp_path):
    with pytest.raises(UserError, match=r"\.jpg"):
        render(genotype, tmp_path / "cell.jpg")
    assert list(tmp_path.iterdir()) == []


def test_drawing_module_looks_up_the_binary_at_call_time():
    # The tests above patch shutil.which; a `from shutil import which` would dodge them.
    assert drawing.shutil is shutil
