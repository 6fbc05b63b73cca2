"""Deriving genotypes from hand-made logits whose answer is known."""

import math

import pytest
import torch

from nas.base.errors import UserError
from searchspace.derive import derive_cell, derive_depth, derive_genotype, edge_index
from searchspace.genotype import DEFAULT_OPS, Edge, Genotype

N_OPS = len(DEFAULT_OPS)


def logits(spec: dict) -> list[list[float]]:
    """(9, n_ops) zeros, with `spec[(node, input)] = {op: logit}` set."""
    rows = [[0.0] * N_OPS for _ in range(9)]
    for (node, source), ops in spec.items():
        for op, value in ops.items():
            rows[edge_index().index((node, source))][DEFAULT_OPS.index(op)] = value
    return rows


KNOWN = {
    (2, 0): {"cnn5": 3.0}, (2, 1): {"max_pool": 2.0},
    (3, 0): {"cnn3": 0.5}, (3, 1): {"dilated_cnn7": 4.0}, (3, 2): {"identity": 1.5},
    (4, 0): {"cnn7": 1.0}, (4, 1): {"avg_pool": 0.2}, (4, 2): {"dilated_cnn3": 5.0},
    (4, 3): {"cnn5": 2.5},
}
KNOWN_CELL = (
    (Edge("cnn5", 0), Edge("max_pool", 1)),
    (Edge("dilated_cnn7", 1), Edge("identity", 2)),
    (Edge("dilated_cnn3", 2), Edge("cnn5", 3)),
)


def test_edge_index_order():
    assert edge_index() == ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2),
                            (4, 0), (4, 1), (4, 2), (4, 3))


def test_known_cell_keeps_the_two_strongest_edges_strongest_first():
    assert derive_cell(logits(KNOWN)) == KNOWN_CELL


def test_tensor_and_list_inputs_agree():
    assert derive_cell(torch.tensor(logits(KNOWN))) == KNOWN_CELL
    assert derive_cell(torch.tensor(logits(KNOWN), requires_grad=True)) == KNOWN_CELL


def test_zero_is_never_chosen_and_its_mass_does_not_make_an_edge_strong():
    spec = {
        # Edge (2, 0) is mostly `zero`; it is still kept (node 2 has only two inputs) but
        # with its best other op.
        (2, 0): {"zero": 10.0, "cnn5": 1.0},
        # Edge (3, 0) puts everything on `zero`: its strength is tiny, so node 3 keeps
        # the other two edges even though their largest logits are smaller.
        (3, 0): {"zero": 20.0},
        (3, 1): {"cnn7": 3.0}, (3, 2): {"identity": 1.0},
    }
    cell = derive_cell(logits(spec))
    assert all(edge.op != "zero" for node in cell for edge in node)
    assert Edge("cnn5", 0) in cell[0]
    assert cell[1] == (Edge("cnn7", 1), Edge("identity", 2))


def test_edge_strength_is_a_softmax_probability_not_a_logit():
    # Edge (4, 0): a high logit for cnn3 but spread against a high `zero` -> low probability.
    # Edge (4, 3): a lower logit that dominates its row -> higher probability.
    spec = {(4, 0): {"cnn3": 6.0, "zero": 6.0, "cnn5": 6.0}, (4, 3): {"cnn7": 4.0},
            (4, 1): {"cnn5": 3.0}}
    cell = derive_cell(logits(spec))
    assert cell[2] == (Edge("cnn7", 3), Edge("cnn5", 1))


def test_ties_go_to_the_earlier_input_and_op():
    cell = derive_cell([[0.0] * N_OPS for _ in range(9)])
    assert cell == ((Edge("cnn3", 0), Edge("cnn3", 1)),) * 3


def test_per_cell_blocks_are_averaged():
    first = logits({(2, 0): {"cnn3": 4.0}, (2, 1): {"cnn5": 1.0}})
    second = logits({(2, 0): {"cnn7": 1.0}, (2, 1): {"cnn5": 5.0}})
    # Alone, each block picks cnn3 on (2, 0); the mean is 2.0 vs 0.5 -> still cnn3,
    # but on (2, 1) the mean (3.0) now beats (2, 0) (2.0): the order flips.
    assert derive_cell(first)[0] == (Edge("cnn3", 0), Edge("cnn5", 1))
    mean = derive_cell(first + second)
    assert mean[0] == (Edge("cnn5", 1), Edge("cnn3", 0))
    assert derive_cell(torch.tensor([first, second])) == mean  # (B, 9, n_ops)


def test_derive_depth():
    assert derive_depth([0.0, 1.0, 5.0, 2.0]) == 3
    assert derive_depth(torch.tensor([3.0, 1.0])) == 1
    assert derive_depth([2.0, 2.0, 1.0]) == 1  # ties: the shallower stack
    assert derive_depth([-1.0] * 7 + [0.0]) == 8


COLLAPSED = {  # every kept edge picks a parameter-free op; probabilities differ per edge
    (2, 0): {"identity": 5.0, "cnn3": 1.0}, (2, 1): {"max_pool": 2.0, "cnn7": 1.5},
    (3, 0): {"avg_pool": 4.0, "dilated_cnn5": 3.0, "cnn3": 1.0}, (3, 1): {"identity": 6.0},
    (4, 2): {"max_pool": 3.0, "cnn5": 2.0}, (4, 3): {"identity": 7.0, "dilated_cnn3": 0.5},
}


def test_collapsed_cell_without_a_cap():
    cell = derive_cell(logits(COLLAPSED))
    assert all(e.op in ("identity", "max_pool", "avg_pool") for node in cell for e in node)


@pytest.mark.parametrize("cap", [None, 6])
def test_a_loose_cap_changes_nothing(cap):
    assert derive_cell(logits(COLLAPSED), max_parameter_free=cap) == derive_cell(logits(COLLAPSED))


def test_parameter_free_cap_swaps_the_weakest_choices():
    cell = derive_cell(logits(COLLAPSED), max_parameter_free=2)
    kept = [e.op for node in cell for e in node]
    assert sum(op in ("identity", "max_pool", "avg_pool") for op in kept) == 2
    # The two most confident choices stay: identity on (4, 3) and on (3, 1).
    assert Edge("identity", 3) in cell[2] and Edge("identity", 1) in cell[1]
    # The others get the best parameterised op of their own edge.
    assert Edge("cnn7", 1) in cell[0] and Edge("cnn3", 0) in cell[0]
    assert Edge("dilated_cnn5", 0) in cell[1] and Edge("cnn5", 2) in cell[2]


def test_cap_zero_leaves_no_parameter_free_edge():
    g = derive_genotype(logits(COLLAPSED), [0.0, 1.0], 64, max_parameter_free=0)
    assert g.parameter_free_share() == 0.0


def test_derive_genotype_keeps_the_logits_and_metadata():
    rows = logits(KNOWN)
    g = derive_genotype(torch.tensor(rows * 2), torch.tensor([0.0, 0.1, 3.0, 0.2]), 96,
                        costs={"params": 10}, provenance={"seed": 1}, extra={"note": "x"})
    assert isinstance(g, Genotype)
    assert (g.num_cells, g.hidden_size, g.max_cells, g.ops) == (3, 96, 4, DEFAULT_OPS)
    assert g.cell == KNOWN_CELL
    assert len(g.op_logits) == 18 and g.op_logits[4] == tuple(rows[4])
    assert g.depth_logits == pytest.approx((0.0, 0.1, 3.0, 0.2))
    assert g.costs["params"] == 10 and g.provenance["seed"] == 1
    assert Genotype.from_json(g.to_json()) == g


def test_derive_genotype_with_another_vocabulary():
    ops = ("identity", "cnn3", "zero")
    g = derive_genotype([[0.0, 1.0, 9.0]] * 9, [1.0], 32, ops=ops)
    assert g.ops == ops and g.num_cells == 1
    assert {e.op for node in g.cell for e in node} == {"cnn3"}


@pytest.mark.parametrize("bad", [
    [[0.0] * N_OPS] * 8,  # not a multiple of 9 rows
    [[0.0] * (N_OPS - 1)] * 9,  # a row per op missing
    [],
    [0.0] * N_OPS,  # 1-D
])
def test_bad_logit_shapes_are_bugs(bad):
    with pytest.raises(ValueError, match="shape"):
        derive_cell(bad)


def test_diverged_logits_are_a_user_error():
    rows = logits(KNOWN)
    rows[3][2] = math.nan
    with pytest.raises(UserError, match="diverged"):
        derive_cell(rows)
    with pytest.raises(UserError, match="depth_logits"):
        derive_depth([0.0, math.inf])


@pytest.mark.parametrize("call", [
    lambda: derive_cell([[1.0]] * 9, ops=("zero",)),
    lambda: derive_cell(logits(COLLAPSED), max_parameter_free=-1),
    lambda: derive_cell([[1.0, 0.0]] * 9, ops=("identity", "max_pool"), max_parameter_free=1),
    lambda: derive_depth([]),
    lambda: derive_depth([[1.0, 2.0]]),
])
def test_impossible_requests_raise(call):
    with pytest.raises(ValueError):
        call()


def test_edge_order_matches_the_cell_builder():
    # The supernet's logit rows follow the cell's DAG order; derivation must read them alike.
    cell = pytest.importorskip("searchspace.cell")
    if not hasattr(cell, "dag_edges"):
        pytest.skip("searchspace.cell has no dag_edges")
    assert tuple(cell.dag_edges()) == edge_index()
