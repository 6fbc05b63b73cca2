"""Pure distillation loss functions. Each takes tensors and returns a scalar tensor."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
