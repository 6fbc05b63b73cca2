"""The supernet: fixed genotype paths, padding, equivalence with the compiled student, what a
hard path computes, and where gradients go."""

from __future__ import annotations

import functools

import pytest
import torch

from ops import ADABERT_OPS, OP_NAMES
from searchspace.cell import dag_edges
from searchspace.genotype import Edge, Genotype, InvalidGenotype
from searchspace.random_arch import random_genotypes as make_random_genotypes
from searchspace.sampler import HardGumbel, SoftMax
from searchspace.space import SearchSpace
from searchspace.student import compile_genotype
from searchspace.supernet import SuperNet

HIDDEN, MAX_CELLS, VOCAB, POSITIONS, LABELS = 16, 4, 30, 32, 3
CHOOSABLE = tuple(op for op in ADABERT_OPS if op != "zero")


def random_genotypes(seed: int, count: int, max_cells: int = MAX_CELLS) -> list[Genotype]:
    """Valid genotypes with K in 1..3 (the package's own random cells: two different in-edges per node)."""
    return make_random_genotypes(seed, count, hidden_size=HIDDEN, max_depth=3, max_cells=max_cells)


GENOTYPES = random_genotypes(seed=1, count=6)


def test_random_genotypes_cover_every_op_and_depth():
    ops = {edge.op for g in GENOTYPES for _, edge in g.edges()}
    assert ops == set(CHOOSABLE)
    assert {g.num_cells for g in GENOTYPES} == {1, 2, 3}


def make_supernet(pair: bool, shared_cells: bool = True, seed: int = 0, ops=ADABERT_OPS) -> SuperNet:
    """A tiny supernet in eval mode, every weight nudged off its initial value (LayerNorm scales
    of 1, node weights of 0) so that a weight copied to the wrong place shows in the logits."""
    torch.manual_seed(seed)
    space = SearchSpace(hidden_size=HIDDEN, max_cells=MAX_CELLS, shared_cells=shared_cells, ops=ops)
    supernet = SuperNet(space, VOCAB, POSITIONS, LABELS, pair)
    with torch.no_grad():
        for p in supernet.weight_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return supernet.eval()


@functools.lru_cache(maxsize=None)
def shared_supernet(pair: bool, shared_cells: bool = True) -> SuperNet:
    """One supernet per kind for the tests that only read it (building one is the slow part)."""
    return make_supernet(pair, shared_cells, seed=1 + 2 * pair + shared_cells)


# ---------------------------------------------------------------- batches with padding


def single_batches(seed: int = 0):
    """A sentence of 5 tokens alone (B=1), and the same sentence padded beside longer ones."""
    g = torch.Generator().manual_seed(seed)
    lengths = [9, 5, 12]
    ids = torch.zeros(3, 12, dtype=torch.long)  # pad id 0
    mask = torch.zeros(3, 12, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, VOCAB, (n,), generator=g)
        mask[row, :n] = 1
    alone = {"input_ids": ids[1:2, :5], "attention_mask": mask[1:2, :5], "token_type_ids": torch.zeros(1, 5, dtype=torch.long)}
    padded = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return alone, padded, 1


def pair_batches(seed: int = 0):
    """[CLS] a [SEP] b [SEP] with token types 0 then 1, alone and padded beside longer pairs
    (padding at the end with token type 0 and mask 0, as a tokenizer pads)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (3, 2), (4, 9)]  # (len a, len b) per row; row 1 is the short pair
    width = max(a + b + 3 for a, b in shapes)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, (a, b) in enumerate(shapes):
        n = a + b + 3
        ids[row, :n] = torch.randint(5, VOCAB, (n,), generator=g)
        ids[row, 0], ids[row, a + 1], ids[row, n - 1] = 2, 3, 3  # [CLS], [SEP], [SEP]
        mask[row, :n] = 1
        types[row, a + 2 : n] = 1
    n = sum(shapes[1]) + 3
    alone = {"input_ids": ids[1:2, :n], "attention_mask": mask[1:2, :n], "token_type_ids": types[1:2, :n]}
    padded = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return alone, padded, 1


BATCHES = {"single": single_batches, "pair": pair_batches}


# ---------------------------------------------------------------- padding


@pytest.mark.parametrize("kind", ["single", "pair"])
@pytest.mark.parametrize("index", range(len(GENOTYPES)))
def test_supernet_genotype_path_padding_never_leaks(kind, index):
    genotype = GENOTYPES[index]
    supernet = shared_supernet(pair=kind == "pair")
    path = supernet.genotype_path(genotype)
    alone, padded, row = BATCHES[kind](seed=index)
    with torch.no_grad():
        logits_alone, per_depth_alone = supernet(**alone, path=path)
        logits_padded, per_depth_padded = supernet(**padded, path=path)
    assert logits_alone.shape == (1, LABELS)
    assert torch.allclose(logits_alone[0], logits_padded[row], atol=1e-5), (logits_alone, logits_padded[row])
    for a, b in zip(per_depth_alone, per_depth_padded):
        assert torch.allclose(a[0], b[row], atol=1e-5)


def test_pair_segments_matter():
    # The padding test would pass trivially if token types were ignored; they are not.
    supernet = make_supernet(pair=True)
    path = supernet.genotype_path(GENOTYPES[0])
    alone, _, _ = pair_batches()
    swapped = dict(alone, token_type_ids=alone["attention_mask"] - alone["token_type_ids"])
    with torch.no_grad():
        assert not torch.allclose(supernet(**alone, path=path)[0], supernet(**swapped, path=path)[0], atol=1e-4)


# ---------------------------------------------------------------- equivalence with the compiled student


def _student_for(genotype, supernet, pair):
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=pair)
    student.inherit_from_supernet(supernet)
    return student.eval()


@pytest.mark.parametrize("shared_cells", [True, False], ids=["shared", "per_cell"])
@pytest.mark.parametrize("kind", ["single", "pair"])
@pytest.mark.parametrize("index", range(len(GENOTYPES)))
def test_genotype_path_equals_compiled_student(index, kind, shared_cells):
    genotype = GENOTYPES[index]
    pair = kind == "pair"
    supernet = shared_supernet(pair, shared_cells)
    student = _student_for(genotype, supernet, pair)
    _, padded, _ = BATCHES[kind](seed=index)
    with torch.no_grad():
        expected, per_depth = supernet(**padded, path=supernet.genotype_path(genotype))
        got = student(**padded).logits
    assert len(per_depth) == genotype.num_cells
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()


def test_equivalence_would_see_a_wrong_head():
    # The student takes the head of its own depth K; any other head gives other logits.
    genotype = next(g for g in GENOTYPES if g.num_cells >= 2)
    supernet = make_supernet(pair=False)
    student = _student_for(genotype, supernet, pair=False)
    _, padded, _ = single_batches()
    with torch.no_grad():
        student.head.load_state_dict(supernet.heads[0].state_dict())
        assert not torch.allclose(student(**padded).logits, supernet(**padded, path=supernet.genotype_path(genotype))[0], atol=1e-4)


def test_node_with_the_same_in_edge_twice_is_rejected_or_matches_the_student():
    """A node listing the very same (op, input) twice: `Genotype` accepts it and the compiled
    student computes that op twice (shared weights), so the supernet's fixed path must too;
    rejecting such a genotype up front would be just as consistent."""
    cell = ((Edge("cnn3", 0), Edge("cnn3", 0)), (Edge("identity", 1), Edge("cnn5", 2)), (Edge("max_pool", 3), Edge("avg_pool", 0)))
    try:
        genotype = Genotype(num_cells=2, hidden_size=HIDDEN, cell=cell, max_cells=MAX_CELLS)
    except InvalidGenotype:
        return
    supernet = make_supernet(pair=False)
    student = _student_for(genotype, supernet, pair=False)
    _, padded, _ = single_batches()
    with torch.no_grad():
        expected = supernet(**padded, path=supernet.genotype_path(genotype))[0]
        got = student(**padded).logits
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()


# ---------------------------------------------------------------- what a hard path computes


def _record_op_calls(supernet):
    """Forward hooks on every op module of every cell; returns the list they append to."""
    calls = []
    for index, cell in enumerate(supernet.cells):
        for key, ops in cell.edges.items():
            for name, module in ops.items():
                module.register_forward_hook(lambda m, i, o, c=index, k=key, n=name: calls.append((c, k, n)))
    return calls


def _inputs(pair: bool):
    return pair_batches()[1] if pair else single_batches()[1]


@pytest.mark.parametrize("shared_cells", [True, False], ids=["shared", "per_cell"])
def test_hard_path_computes_only_the_sampled_op_per_edge(shared_cells):
    supernet = make_supernet(pair=True, shared_cells=shared_cells)
    with torch.no_grad():
        supernet.depth_logits.copy_(torch.tensor([0.0, 20.0, 0.0, 0.0]))  # depth 2 of 4, all but surely
        supernet.op_logits.normal_(generator=torch.Generator().manual_seed(0))
    calls = _record_op_calls(supernet)
    path = supernet.sample_path(HardGumbel(), 1.0, torch.Generator().manual_seed(3))
    assert path.depth == 2
    final, per_depth = supernet(**_inputs(pair=True), path=path)

    assert len(per_depth) == 2
    assert {c for c, _, _ in calls} == {0, 1}  # cells 3 and 4 never run
    assert len(calls) == 2 * len(dag_edges()) == len(set(calls))  # one op per edge per running cell
    ops = supernet.space.ops
    for c, key, name in calls:
        row = dag_edges().index(tuple(int(x) for x in key.split("_")))
        assert name == ops[int(path.op_weights[c, row].argmax())]
    assert torch.allclose(final, per_depth[1])  # the one-hot depth picks head K=2


def test_hard_path_samples_differ_between_cells_only_without_sharing():
    shared = make_supernet(pair=False, shared_cells=True).sample_path(HardGumbel(), 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(shared.op_weights[0], shared.op_weights[-1])
    per_cell = make_supernet(pair=False, shared_cells=False)
    assert per_cell.op_logits.shape == (MAX_CELLS, len(dag_edges()), len(ADABERT_OPS))
    path = per_cell.sample_path(HardGumbel(), 1.0, torch.Generator().manual_seed(0))
    assert not all(torch.equal(path.op_weights[0], path.op_weights[c]) for c in range(1, MAX_CELLS))


@pytest.mark.parametrize("ops", [ADABERT_OPS, OP_NAMES], ids=["adabert", "registry"])
def test_soft_path_computes_every_op_of_every_cell(ops):
    supernet = make_supernet(pair=False, ops=ops)
    calls = _record_op_calls(supernet)
    path = supernet.sample_path(SoftMax(), 1.0)
    _, per_depth = supernet(**_inputs(pair=False), path=path)
    assert len(per_depth) == MAX_CELLS
    assert len(calls) == len(set(calls)) == MAX_CELLS * len(dag_edges()) * len(ops)
    assert {name for _, _, name in calls} == set(ops)


# ---------------------------------------------------------------- gradients and parameter groups


@pytest.mark.parametrize("shared_cells", [True, False], ids=["shared", "per_cell"])
def test_hard_path_backward_reaches_the_architecture(shared_cells):
    supernet = make_supernet(pair=False, shared_cells=shared_cells).train()
    path = supernet.sample_path(HardGumbel(), 1.0, torch.Generator().manual_seed(1))
    final, _ = supernet(**_inputs(pair=False), path=path)
    torch.nn.functional.cross_entropy(final, torch.tensor([0, 1, 2])).backward()
    for name in ("op_logits", "depth_logits"):
        grad = getattr(supernet, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # Ops that were not sampled on any edge of a running cell never ran, so they have no gradient.
    sampled = {
        (c, e, supernet.space.ops[int(path.op_weights[c, e].argmax())])
        for c in range(path.depth) for e in range(len(dag_edges()))
    }
    for c, cell in enumerate(supernet.cells):
        for e, edge in enumerate(dag_edges()):
            for name, module in cell.edges[f"{edge[0]}_{edge[1]}"].items():
                for p in module.parameters():
                    assert (p.grad is not None) == ((c, e, name) in sampled), (c, edge, name)


def test_arch_and_weight_parameters_partition_the_parameters():
    for shared in (True, False):
        supernet = make_supernet(pair=True, shared_cells=shared)
        arch = {id(p) for p in supernet.arch_parameters()}
        weights = {id(p) for p in supernet.weight_parameters()}
        everything = {id(p) for p in supernet.parameters()}
        assert arch == {id(supernet.op_logits), id(supernet.depth_logits)}
        assert not arch & weights
        assert arch | weights == everything
        assert len(supernet.weight_parameters()) == len(weights)  # no duplicates


def test_genotype_path_is_one_hot_on_the_genotype():
    genotype = GENOTYPES[0]
    supernet = make_supernet(pair=False)
    path = supernet.genotype_path(genotype)
    assert path.depth == genotype.num_cells
    assert path.op_weights.shape == (MAX_CELLS, len(dag_edges()), len(ADABERT_OPS))
    expected = torch.zeros(len(dag_edges()), len(ADABERT_OPS))
    for node, edge in genotype.edges():
        expected[dag_edges().index((node, edge.input)), ADABERT_OPS.index(edge.op)] = 1.0
    for c in range(MAX_CELLS):
        assert torch.equal(path.op_weights[c], expected)
