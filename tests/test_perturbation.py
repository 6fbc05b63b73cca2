"""Perturbation-based selection (DARTS-PT): on a hand-built loss where one op per edge is
clearly needed, it keeps that op although the mixture's weights favour another; the search's
`selection=perturbation` records its scores in arch.json."""

from __future__ import annotations

import pytest
import torch

from ops import OP_NAMES
from searchspace.derive import derive_cell
from searchspace.perturbation import select_by_perturbation
from searchspace.topology import NODES, SEARCH_EDGES

O = len(OP_NAMES)
# The op each edge needs, and how much each edge matters (the two largest per node are kept).
NEEDED = ["cnn3", "max_pool", "cnn5", "dilated_cnn3", "cnn7", "avg_pool", "cnn3", "dilated_cnn7", "cnn5"]
IMPORTANCE = [1.0, 3.0, 2.0, 0.5, 4.0, 1.0, 0.2, 5.0, 3.0]  # node 2: edges 0, 1; node 3: 2..4; node 4: 5..8


def hand_loss(weights: torch.Tensor) -> float:
    """Σ_e importance_e · (1 - w[e, needed_e])²: only the needed op of each edge lowers the loss."""
    w = weights[0]  # (E, O)
    return sum(IMPORTANCE[e] * (1 - float(w[e, OP_NAMES.index(NEEDED[e])])) ** 2 for e in range(len(SEARCH_EDGES)))


def favouring_other_ops() -> torch.Tensor:
    """(1, E, O) mixture whose largest weight on every edge is an op the loss ignores (identity)."""
    logits = torch.zeros(1, len(SEARCH_EDGES), O)
    logits[..., OP_NAMES.index("identity")] = 2.0
    return torch.softmax(logits, -1)


def test_the_needed_op_is_kept_where_argmax_keeps_another():
    mixture = favouring_other_ops()
    cell, record = select_by_perturbation(hand_loss, mixture, OP_NAMES)
    kept = {(node, edge.input): edge.op for node, edges in zip(NODES, cell) for edge in edges}
    for (node, source), op in kept.items():
        assert op == NEEDED[SEARCH_EDGES.index((node, source))]
    # The topology: each node keeps its two most important in-edges.
    assert set(kept) == {(2, 0), (2, 1), (3, 2), (3, 0), (4, 2), (4, 3)}
    assert record["edge_scores"][SEARCH_EDGES.index((4, 3))] == pytest.approx(3.0)
    # Argmax on the same weights keeps identity everywhere: the rules differ here.
    argmax_ops = {edge.op for edges in derive_cell(mixture.log()[0], OP_NAMES) for edge in edges}
    assert argmax_ops == {"identity"}
    for e, scores in enumerate(record["op_scores"]):  # only the needed op's removal costs anything
        assert max(scores, key=scores.get) == NEEDED[e] and scores["identity"] == pytest.approx(0.0)


def test_the_parameter_free_cap_swaps_the_least_needed():
    # Every edge needs a parameter-free op, most of all max_pool; with a cap of 1 the others give
    # way to the parameterised op whose removal hurt most (all score 0 here: the first, cnn3).
    mixture = favouring_other_ops()
    cell, _ = select_by_perturbation(hand_loss, mixture, OP_NAMES, max_parameter_free=1)
    free = [edge for edges in cell for edge in edges if edge.op in ("avg_pool", "max_pool", "identity")]
    assert len(free) <= 1


def test_every_edge_needs_an_op_besides_zero():
    weights = torch.zeros(1, len(SEARCH_EDGES), O)
    weights[..., OP_NAMES.index("zero")] = 1.0
    with pytest.raises(ValueError, match="no op other than 'zero'"):
        select_by_perturbation(hand_loss, weights, OP_NAMES)


def test_a_tiny_search_selects_by_perturbation(prepared, tiny_glue, tmp_path):
    from nas.commands.cli import main
    from searchspace.genotype import Genotype

    teacher, knowledge = prepared["sst2"]
    out = tmp_path / "search"
    assert main(["search", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher),
                 "--knowledge", str(knowledge), "--out", str(out), "--device", "cpu", "--epochs", "1", "--seed", "0",
                 "--set", "hidden_size=16", "--set", "max_cells=2", "--set", "warmup_epochs=0",
                 "--set", "selection=perturbation", "--set", "perturbation_rows=16", "--set", "max_parameter_free=6"]) == 0
    arch = Genotype.load(out / "arch.json")
    record = arch.extra["selection"]
    assert record["rule"] == "perturbation" and len(record["op_scores"]) == len(SEARCH_EDGES)
    for node, edges in zip(NODES, arch.cell):  # uncapped: each kept edge holds its highest-scoring op
        for edge in edges:
            scores = record["op_scores"][SEARCH_EDGES.index((node, edge.input))]
            assert scores[edge.op] == max(scores.values())
    assert "argmax_dev_metric" in record and arch.extra["dev_metric"]
