"""Drawing a genotype: a networkx graph to check, DOT source and pictures for people.

The DOT source comes from the `graphviz` Python library, which needs no binary; only
rendering to .svg/.png/.pdf needs graphviz's `dot` program.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import graphviz
import networkx as nx

from nas.base.errors import UserError

from nas.base.atomic import write_bytes

from .genotype import Genotype
from .topology import NODES, NUM_INPUTS

OUTPUT = "out"
INPUTS = tuple(f"in{i}" for i in range(NUM_INPUTS))
INTERMEDIATES = tuple(f"n{k}" for k in NODES)
RENDERED_SUFFIXES = (".svg", ".png", ".pdf")
# One colour per op family, so convolutions, dilated convolutions and cheap ops stand apart.
FAMILY_COLOURS = {"cnn": "#1f77b4", "dilated_cnn": "#d62728", "pool": "#2ca02c",
                  "identity": "#7f7f7f", "bigru": "#9467bd"}
_OTHER_COLOUR = "#000000"


def node_name(index: int) -> str:
    """`in0`, `in1` for the cell inputs, `n2`.. for intermediate nodes."""
    return INPUTS[index] if index < NUM_INPUTS else f"n{index}"


def op_family(op: str) -> str:
    """`dilated_cnn5` -> `dilated_cnn`, `max_pool` -> `pool`, `identity` -> `identity`."""
    base = op.rstrip("0123456789")
    return "pool" if base.endswith("_pool") else base


def cell_graph(genotype: Genotype) -> nx.DiGraph:
    """The cell as a DiGraph: nodes in0, in1, n2, n3, n4, out (attribute `kind`); each kept
    edge carries `ops` (a tuple) and `label`; every intermediate node also feeds `out`."""
    graph = nx.DiGraph()
    graph.add_nodes_from(INPUTS, kind="input")
    graph.add_nodes_from(INTERMEDIATES, kind="intermediate")
    graph.add_node(OUTPUT, kind="output")
    for node, edge in genotype.edges():
        u, v = node_name(edge.input), node_name(node)
        # A DiGraph holds one edge per pair, so a node reading one input twice gets one
        # edge carrying both ops.
        ops = graph.edges[u, v]["ops"] + (edge.op,) if graph.has_edge(u, v) else (edge.op,)
        graph.add_edge(u, v, ops=ops, label=" + ".join(ops))
    for node in INTERMEDIATES:
        graph.add_edge(node, OUTPUT, ops=(), label="")
    return graph


def check_graph(graph: nx.DiGraph, source: str = "cell graph") -> None:
    """Raise UserError unless the graph is acyclic, has the inputs and the output, and every
    other node is fed by an input and reaches the output."""
    for node in INPUTS + (OUTPUT,):
        if node not in graph:
            raise UserError(f"{source}: missing node {node}")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [u for u, _ in nx.find_cycle(graph)]
        raise UserError(f"{source}: has a cycle {' -> '.join(cycle + cycle[:1])}")
    for node in graph:
        if node in INPUTS or node == OUTPUT:
            continue
        if not nx.has_path(graph, node, OUTPUT):
            raise UserError(f"{source}: node {node} does not reach the output")
        if not any(nx.has_path(graph, i, node) for i in INPUTS):
            raise UserError(f"{source}: node {node} is not fed by any input")


def to_dot(genotype: Genotype) -> str:
    """DOT source: a cluster for the cell (edges labelled and coloured by op family) and a
    row for the stack (embedding -> cell 1 .. cell K -> classifier)."""
    dot = graphviz.Digraph(
        "genotype",
        graph_attr={"rankdir": "LR", "label": str(genotype), "labelloc": "t",
                    "fontname": "Helvetica"},
        node_attr={"style": "filled", "shape": "box", "fontname": "Helvetica"},
        edge_attr={"fontname": "Helvetica", "fontsize": "11"})
    with dot.subgraph(name="cluster_cell") as cell:
        cell.attr(label=f"cell (stacked {genotype.num_cells}x)", style="rounded")
        for name in INPUTS:
            cell.node(name, fillcolor="darkseagreen2")
        for name in INTERMEDIATES:
            cell.node(name, fillcolor="lightblue", shape="ellipse")
        cell.node(OUTPUT, fillcolor="palegoldenrod")
        for node, edge in genotype.edges():
            colour = FAMILY_COLOURS.get(op_family(edge.op), _OTHER_COLOUR)
            cell.edge(node_name(edge.input), node_name(node), label=edge.op,
                      color=colour, fontcolor=colour)
        for name in INTERMEDIATES:
            cell.edge(name, OUTPUT, style="dashed")
    with dot.subgraph(name="cluster_stack") as stack:
        stack.attr(label=f"stack of K={genotype.num_cells} cells, H={genotype.hidden_size}",
                   style="rounded")
        chain = (["stack_embedding"] + [f"stack_cell{i}" for i in range(1, genotype.num_cells + 1)]
                 + ["stack_classifier"])
        labels = ["embedding"] + [f"cell {i}" for i in range(1, genotype.num_cells + 1)] + ["classifier"]
        for name, label in zip(chain, labels):
            stack.node(name, label=label, fillcolor="white")
        stack.edges(zip(chain, chain[1:]))
    return dot.source


def render(genotype: Genotype, out_path) -> Path:
    """Write a drawing chosen by suffix: `.dot` writes the source; `.svg`, `.png`, `.pdf`
    need the `dot` binary, and without it the source is written beside as `.dot` and a
    UserError says so."""
    out = Path(out_path)
    suffix = out.suffix.lower()
    source = to_dot(genotype)
    if suffix == ".dot":
        return write_bytes(out, source)
    if suffix not in RENDERED_SUFFIXES:
        raise UserError(f"{out}: cannot draw to {suffix or 'a file without suffix'} "
                        f"(use .dot, {', '.join(RENDERED_SUFFIXES)})")
    try:
        if shutil.which("dot") is None:
            raise graphviz.ExecutableNotFound(["dot"])
        data = graphviz.Source(source).pipe(format=suffix[1:])
    except graphviz.ExecutableNotFound:
        written = write_bytes(out.with_suffix(".dot"), source)
        raise UserError(f"{out}: cannot render {suffix}: the graphviz `dot` binary is not "
                        f"installed; wrote the DOT source to {written} instead") from None
    return write_bytes(out, data)
