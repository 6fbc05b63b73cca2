"""`--set selection=perturbation`: the search's cell chosen by DARTS-PT's rule
(searchspace/perturbation.py) instead of the argmax of the op logits.

After the search, the supernet of the best epoch (its saved weights) is scored on the held-out
slice the architecture steps used (at most `perturbation_rows` rows, so the ~90 evaluations stay
cheap on a CPU) with the distillation loss the search minimises, without the efficiency term:
(1 - γ)·CE + γ·KD. The mixture scored is the softmax of the op logits on every edge, at the depth
and width argmax derivation chose; depth and width stay as derived (the rule selects ops and
edges). The supernet was trained on hard Gumbel paths, one op per edge, so this mixture is the
architecture distribution in expectation, not a network it ever ran: a difference from DARTS-PT,
whose supernet trains on that very mixture.
"""

from __future__ import annotations

import dataclasses

import torch

from searchspace.perturbation import select_by_perturbation
from searchspace.supernet import Path
from searchspace.topology import KEPT_EDGES
from searchspace.width import width_one_hot


@torch.no_grad()
def perturbation_genotype(search, genotype):
    """`genotype` with its cell chosen by perturbation; (genotype, record for arch.json's extra)."""
    config, supernet = search.config, search.supernet
    rows = search.arch_rows[: config.perturbation_rows]
    batches = [rows[i : i + config.eval_batch_size] for i in range(0, len(rows), config.eval_batch_size)]
    depth = torch.zeros(config.max_cells, device=search.device)
    depth[genotype.num_cells - 1] = 1.0
    widths = width_one_hot(supernet.widths, genotype.hidden_size, search.device)
    training = supernet.training
    supernet.eval()  # no dropout: every masked variant is scored on the same network

    def loss_of(weights: torch.Tensor) -> float:  # weights: (S, E, O)
        path = Path(weights.expand(config.max_cells, -1, -1) if weights.shape[0] == 1 else weights, depth, widths)
        total = 0.0
        for batch in batches:
            _, terms = search.loss(batch, model=supernet, path=path)
            total += ((1 - config.gamma) * terms["ce"] + config.gamma * terms["kd"]) * len(batch)
        return total / len(rows)

    cap = config.max_parameter_free if config.max_parameter_free < KEPT_EDGES else None
    mixture = torch.softmax(supernet.op_logits.detach(), -1)  # (S, E, O)
    try:
        cell, scores = select_by_perturbation(loss_of, mixture, supernet.space.ops, max_parameter_free=cap)
    finally:
        supernet.train(training)
    record = {"rule": "perturbation", "rows": len(rows), "argmax_genotype": genotype.to_string(),
              "op_scores": [{op: round(v, 6) for op, v in edge.items()} for edge in scores["op_scores"]],
              "edge_scores": [round(v, 6) for v in scores["edge_scores"]]}
    return dataclasses.replace(genotype, cell=cell), record


def select_after_search(search, best_genotype):
    """The search's best epoch re-selected by perturbation: its saved supernet weights loaded,
    the cell chosen by `perturbation_genotype`, fitted to the latency budget if there is one, and
    scored on dev with that path. Returns (dev metric, genotype, record)."""
    search.load_best_weights()
    argmax_metric = search.best[0]
    genotype, record = perturbation_genotype(search, best_genotype)
    if search.latency is not None:
        genotype = search.latency.fit(genotype)
    record["argmax_dev_metric"] = argmax_metric
    return search.dev_metrics(genotype)[search.task.primary_metric], genotype, record
