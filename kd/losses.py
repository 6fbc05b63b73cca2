"""Pure distillation loss functions. Each takes tensors and returns a scalar tensor."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from searchspace.topology import KEPT_EDGES


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv 1503.02531):

        T² · KL(softmax(t / T) ‖ softmax(s / T)), averaged over the batch.

    student_logits, teacher_logits: (B, C). The T² keeps gradient magnitudes comparable across T.
    """
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return (teacher * (log_teacher - log_student)).sum(-1).mean() * temperature**2


def regression_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """MSE between predicted scores (B, 1) for regression tasks, where no softmax applies."""
    return F.mse_loss(student_logits.reshape(-1), teacher_logits.reshape(-1))


def teacher_layer_for(student_layer: int, student_depth: int, teacher_layers: int) -> int:
    """AdaBERT's mapping: student layer i of K (1-based) learns from teacher layer ⌈i·L/K⌉."""
    return math.ceil(student_layer * teacher_layers / student_depth)


def probes_kd(per_depth_logits: list[torch.Tensor], probe_logits: torch.Tensor, probe_losses,
              temperature: float = 1.0, regression: bool = False) -> torch.Tensor:
    """AdaBERT's probe-based KD (Chen et al. 2020, arXiv 2001.04246, Sec. 3.2):

        L_KD = Σ_{i=1..K} w_i · D(probe_{m(i)}, head_i),   m(i) = ⌈i·L/K⌉,
        w = softmax_i(−CE of probe m(i) on dev),

    D is the softened cross-entropy above (or MSE for regression). Layers whose probes carry more
    task knowledge weigh more.

    per_depth_logits: K tensors (B, C), the student's head after each cell.
    probe_logits: (B, L+1, C), the frozen teacher probes, index 0 being the embedding output.
    probe_losses: L+1 dev losses of the probes.
    """
    depth = len(per_depth_logits)
    teacher_layers = probe_logits.shape[1] - 1
    mapped = [teacher_layer_for(i, depth, teacher_layers) for i in range(1, depth + 1)]
    weights = torch.softmax(-torch.as_tensor([probe_losses[m] for m in mapped], dtype=torch.float32), 0)
    total = per_depth_logits[0].new_zeros(())
    for weight, student, layer in zip(weights.tolist(), per_depth_logits, mapped):
        target = probe_logits[:, layer]
        term = regression_distillation(student, target) if regression else soft_cross_entropy(student, target, temperature)
        total = total + weight * term
    return total


def efficiency_loss(op_weights: torch.Tensor, depth_weights: torch.Tensor, op_costs: torch.Tensor) -> torch.Tensor:
    """AdaBERT's efficiency term L_E = (K / Kmax) · mean over edges of the sampled op's cost.

    op_weights: (cells, E, O) relaxed one-hot (or soft) choices of the cells that run;
    depth_weights: (Kmax,) relaxed choice of K; op_costs: (O,) normalised to [0, 1].
    Both factors are expectations under the relaxation, so gradients reach the logits.
    """
    kmax = depth_weights.shape[0]
    expected_depth = (depth_weights * torch.arange(1, kmax + 1, device=depth_weights.device)).sum() / kmax
    expected_cost = (op_weights * op_costs).sum(-1).mean()
    return expected_depth * expected_cost


def expected_latency(op_weights: torch.Tensor, depth_weights: torch.Tensor, op_ms: torch.Tensor,
                     cell_ms: float, frame_ms: float, kept_edges: int = KEPT_EDGES) -> torch.Tensor:
    """Expected latency (ms) of the sampled architecture, from a latency table:

        cell_c = cell_ms + kept_edges · Σ_e Σ_o w[c, e, o] · op_ms[o] / Σ_e Σ_o w[c, e, o]
        E[lat] = frame_ms + Σ_{k=1..Kmax} p(K=k) · Σ_{c≤k} cell_c

    `frame_ms` is everything outside the cells (embeddings, the pair split, the head);
    `cell_ms` a cell's own overhead (starting each node's sum, the attentive output). A derived
    cell keeps 6 of the DAG's 9 edges, so a cell's ops cost `kept_edges` times the mean op
    latency per edge, each edge weighted by its total weight: 1 for every edge of a sampled path
    (then it is the plain mean over the 9 edges), 0 for an edge a fixed genotype drops (then it
    is exactly the genotype's ops).

    op_weights: (Kmax, E, O), the op weights of every cell (those that did not run too, so every
    depth has a cost); depth_weights: (Kmax,) = p(K=k); op_ms: (O,). Both are relaxed (or
    straight-through one-hot) choices, so gradients reach the logits. Returns a 0-d tensor.
    """
    weighted = (op_weights * op_ms).sum((-1, -2))  # (Kmax,)
    edges = op_weights.sum((-1, -2)).clamp_min(1e-12)  # (Kmax,): 9 for a sampled path, 6 for a genotype's
    per_cell = cell_ms + kept_edges * weighted / edges  # (Kmax,)
    stack = torch.cumsum(per_cell, 0)  # (Kmax,): cost of the first k cells
    return frame_ms + (depth_weights * stack).sum()


def latency_budget_penalty(expected_ms: torch.Tensor, budget_ms: float) -> torch.Tensor:
    """A hinge that is zero within the budget and grows with the relative overshoot:

        relu(E[lat] / budget - 1)

    expected_ms: 0-d tensor (ms); budget_ms > 0.
    """
    return F.relu(expected_ms / budget_ms - 1.0)
