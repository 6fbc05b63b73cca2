"""Perturbation-based architecture selection (DARTS-PT).

Wang et al. 2021, "Rethinking Architecture Selection in Differentiable NAS"
(https://arxiv.org/abs/2108.04392), show that the magnitude of an architecture weight says little
about how much the supernet relies on that op, so argmax selection can keep ops the network does
not need. Their rule asks the supernet instead: on each edge, mask each op out of the mixture in
turn and keep the op whose removal hurts the held-out score most; that edge is then fixed to the
op before the next edge is decided (the paper fine-tunes the supernet briefly between edges; here
that is omitted, to stay cheap on a CPU). The topology is chosen the same way: each node keeps the
in-edges whose removal hurts most (`topology.IN_EDGES` of them).

`select_by_perturbation` is pure: it takes `loss_of(weights) -> float`, the held-out loss of the
supernet with those op weights (lower is better), and never touches a model itself, so the rule is
testable on a hand-built loss and the search supplies the real one (nas/train/perturbation.py).
"""

from __future__ import annotations

from typing import Callable

import torch

from searchspace.genotype import PARAMETER_FREE_OPS, ZERO_OP, Edge
from searchspace.topology import IN_EDGES, NODES, SEARCH_EDGES


def select_by_perturbation(loss_of: Callable[[torch.Tensor], float], weights: torch.Tensor, ops, *,
                           max_parameter_free: int | None = None, parameter_free=PARAMETER_FREE_OPS):
    """The cell chosen by perturbation, and the scores behind it.

    weights: (S, E, O) the mixture the supernet is scored with (S cell sets, E = 9 search
    edges, O ops), e.g. the softmax of its op logits. Returns (cell, record), `cell` as in
    `derive.derive_cell`, `record` = {"op_scores": per edge {op: loss increase when that op is
    masked}, "edge_scores": per edge the loss increase when the whole edge is removed}.

    With `max_parameter_free`, the kept edges whose chosen ops are parameter-free beyond that
    many give way, least needed first (smallest score), to the edge's most needed parameterised op.
    """
    weights = weights.detach().clone()
    choice, op_scores = {}, []
    # ---- ops: edge by edge, the op whose removal hurts most; the edge then holds only it
    for e in range(len(SEARCH_EDGES)):
        base = loss_of(weights)
        scores = {}
        for o, op in enumerate(ops):
            if op == ZERO_OP or not bool((weights[:, e, o] != 0).any()):
                continue
            masked = weights.clone()
            masked[:, e, o] = 0.0
            scores[op] = loss_of(masked) - base
        if not scores:
            raise ValueError(f"edge {SEARCH_EDGES[e]} has no op other than {ZERO_OP!r} to select")
        best = max(scores, key=lambda op: (scores[op], -ops.index(op)))  # ties: the earlier op
        choice[e] = best
        op_scores.append(scores)
        weights[:, e] = 0.0
        weights[:, e, ops.index(best)] = 1.0
    # ---- topology: each node keeps the in-edges whose removal hurts most
    base = loss_of(weights)
    edge_scores = []
    for e in range(len(SEARCH_EDGES)):
        removed = weights.clone()
        removed[:, e] = 0.0
        edge_scores.append(loss_of(removed) - base)
    kept = {node: sorted((e for e, (n, _) in enumerate(SEARCH_EDGES) if n == node),
                         key=lambda e: -edge_scores[e])[:IN_EDGES] for node in NODES}  # stable: ties go to the earlier edge
    if max_parameter_free is not None:
        _cap(choice, op_scores, [e for rows in kept.values() for e in rows], max_parameter_free, parameter_free)
    cell = tuple(tuple(Edge(choice[e], SEARCH_EDGES[e][1]) for e in kept[node]) for node in NODES)
    return cell, {"op_scores": op_scores, "edge_scores": edge_scores}


def _cap(choice: dict, op_scores: list, kept: list, cap: int, parameter_free) -> None:
    free = [e for e in kept if choice[e] in parameter_free]
    for e in sorted(free, key=lambda e: op_scores[e][choice[e]])[: max(0, len(free) - cap)]:
        weighted = {op: s for op, s in op_scores[e].items() if op not in parameter_free}
        if not weighted:
            raise ValueError(f"edge {SEARCH_EDGES[e]} has no parameterised op to replace {choice[e]!r}")
        choice[e] = max(weighted, key=lambda op: weighted[op])
