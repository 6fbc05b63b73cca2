"""Pure loss functions of published BERT distillation methods.

Each takes tensors (usually read from a `kd.record.ModelOutputs`) and returns a scalar tensor;
the docstring gives the equation, the shapes and the paper. Shape letters: B rows, T tokens,
H width, h attention heads, d a head's width, C classes.

Padding never counts: wherever tokens are averaged, only positions where `mask` (B, T, bool) is
True take part, both as tokens and, for T×T attention maps, as keys. The logit losses reuse
`kd.losses.soft_cross_entropy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from kd.losses import soft_cross_entropy

__all__ = [
    "pkd_hidden_loss",
    "cosine_hidden_loss",
    "hidden_mse",
    "attention_mse",
    "minilm_attention_kl",
    "minilm_value_kl",
    "vanilla_kd_loss",
    "logit_mse",
    "theseus_replacing_probability",
]


# ----- helpers -----

def _same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"{what}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in shape")


def _token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `per_token` (B, T) over the real tokens of the whole batch."""
    mask = mask.bool()
    return torch.where(mask, per_token, 0.0).sum() / mask.sum().clamp_min(1)


def _row_kl(p_teacher, log_teacher, log_student, keys) -> torch.Tensor:
    """Σ_j p_t[j] (log p_t[j] − log p_s[j]) over the real keys j, with 0·log 0 = 0: (..., T, T) -> (..., T).

    `torch.where` rather than a product with the mask, so that a 0 or −inf at a padded or
    zero-probability key gives neither NaN values nor NaN gradients.
    """
    keep = keys & (p_teacher > 0)
    return torch.where(keep, p_teacher * (log_teacher - log_student), 0.0).sum(-1)


def _query_head_mean(per_query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `per_query` (B, h, T) over heads and real query positions."""
    queries = mask.bool()[:, None, :].expand_as(per_query)  # (B, h, T)
    return torch.where(queries, per_query, 0.0).sum() / queries.sum().clamp_min(1)


def _check_heads(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(f"{what}: expected (B, h, T, ·) tensors, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.shape[1] != teacher.shape[1]:
        raise ValueError(f"{what} needs as many student heads as teacher heads: student {student.shape[1]}, "
                         f"teacher {teacher.shape[1]}")
    if student.shape[0] != teacher.shape[0] or student.shape[2] != teacher.shape[2]:
        raise ValueError(f"{what}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in B or T")


# ----- intermediate layers -----

def pkd_hidden_loss(student_cls: Sequence[torch.Tensor], teacher_cls: Sequence[torch.Tensor],
                    projection: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """BERT-PKD's patient loss (Sun et al. 2019, "Patient Knowledge Distillation for BERT Model
    Compression", arXiv 1908.09355):

        L_PT = mean over matched layers j, mean over rows b of
               ‖ h_s(j,b) / ‖h_s(j,b)‖₂ − h_t(j,b) / ‖h_t(j,b)‖₂ ‖²₂

    on the [CLS] vectors. student_cls, teacher_cls: one (B, H) tensor per matched layer, in
    matching order (see `kd.layer_map.skip` / `last`). `projection` maps a student vector to the
    teacher's width first when they differ. The paper sums over layers and rows; the means keep
    the loss's scale independent of the batch size and the number of matches. Normalising makes
    the loss invariant to each vector's scale; it lies in [0, 4].
    """
    if len(student_cls) != len(teacher_cls) or not student_cls:
        raise ValueError(f"pkd_hidden_loss needs equally many (≥ 1) student and teacher layers, "
                         f"got {len(student_cls)} and {len(teacher_cls)}")
    terms = []
    for student, teacher in zip(student_cls, teacher_cls):
        student = projection(student) if projection is not None else student  # (B, H_t)
        _same_shape(student, teacher, "pkd_hidden_loss")
        diff = F.normalize(student, dim=-1) - F.normalize(teacher, dim=-1)  # (B, H)
        terms.append(diff.pow(2).sum(-1).mean())
    return torch.stack(terms).mean()


def cosine_hidden_loss(student_h: torch.Tensor, teacher_h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT's cosine embedding loss (Sanh et al. 2019, "DistilBERT, a distilled version of
    BERT", arXiv 1910.01108):

        L_cos = mean over real tokens (b, t) of 1 − cos(h_s(b, t), h_t(b, t))

    student_h, teacher_h: (B, T, H), same width (DistilBERT keeps BERT's); mask: (B, T).
    Every real token of the batch weighs the same. Invariant to each vector's scale; in [0, 2].
    """
    _same_shape(student_h, teacher_h, "cosine_hidden_loss")
    cosine = F.cosine_similarity(student_h, teacher_h, dim=-1)  # (B, T)
    return _token_mean(1.0 - cosine, mask)


def hidden_mse(student_h: torch.Tensor, teacher_h: torch.Tensor, mask: torch.Tensor,
               projection: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """TinyBERT's hidden-state (and embedding) loss (Jiao et al. 2020, "TinyBERT: Distilling BERT
    for Natural Language Understanding", arXiv 1909.10351):

        L_hidn = MSE(h_s W_h, h_t) = Σ_{real (b, t)} Σ_k (h_s W_h − h_t)²_{b,t,k} / (N_real · H_t)

    student_h: (B, T, H_s); teacher_h: (B, T, H_t); mask: (B, T); `projection` is W_h
    (`kd.layer_map.Projection`), needed when H_s ≠ H_t. Without padding this is
    `F.mse_loss(h_s W_h, h_t)`.
    """
    student_h = projection(student_h) if projection is not None else student_h  # (B, T, H_t)
    _same_shape(student_h, teacher_h, "hidden_mse")
    per_token = (student_h - teacher_h).pow(2).mean(-1)  # (B, T)
    return _token_mean(per_token, mask)


def attention_mse(student_att: torch.Tensor, teacher_att: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT's attention loss (Jiao et al. 2020, arXiv 1909.10351):

        L_attn = (1/h) Σ_heads MSE(A_s, A_t), the MSE over real (query, key) pairs,
               = Σ_{b, head, real i, real j} (A_s − A_t)² / (h · Σ_b n_b²)

    student_att, teacher_att: (B, h, T, T) (equal head counts, as in TinyBERT); mask: (B, T).
    TinyBERT compares the unnormalised scores QKᵀ/√d; `kd.record.ModelOutputs.attentions` holds
    the softmax probabilities (what Hugging Face models return), and this is what the package
    passes. Either works here: pairs with a padded query or key are left out, so padded keys
    (probability 0, or score −inf/−10⁴) never count.
    """
    _check_heads(student_att, teacher_att, "attention_mse")
    mask = mask.bool()
    pairs = (mask[:, None, :, None] & mask[:, None, None, :]).expand_as(student_att)  # (B, h, T, T)
    diff = torch.where(pairs, student_att - teacher_att, 0.0)
    return diff.pow(2).sum() / pairs.sum().clamp_min(1)


def minilm_attention_kl(student_att: torch.Tensor, teacher_att: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM's self-attention distribution transfer (Wang et al. 2020, "MiniLM: Deep
    Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers",
    arXiv 2002.10957), on the last layer of each model:

        L_AT = 1/(h · N_q) Σ_heads Σ_{real queries i} KL(A_t[i] ‖ A_s[i])
             = mean over heads and real queries of Σ_{real keys j} A_t[i, j] log(A_t[i, j] / A_s[i, j])

    student_att, teacher_att: (B, h, T, T) softmax probabilities whose rows sum to 1 over the
    real keys (padded keys 0); equal head counts, as MiniLM requires. KL(teacher ‖ student): a
    key the teacher ignores costs nothing, a key the student ignores but the teacher attends to
    costs much. Terms with A_t = 0 count 0.
    """
    _check_heads(student_att, teacher_att, "minilm_attention_kl")
    _same_shape(student_att, teacher_att, "minilm_attention_kl")
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    log_teacher = torch.where(teacher_att > 0, teacher_att, 1.0).log()
    log_student = student_att.clamp_min(torch.finfo(student_att.dtype).tiny).log()
    return _query_head_mean(_row_kl(teacher_att, log_teacher, log_student, keys), mask)


def _value_relation_log(values: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """log softmax(V Vᵀ / √d) over real keys: (B, h, T, d) -> (B, h, T, T)."""
    scores = values @ values.transpose(-1, -2) / math.sqrt(values.shape[-1])  # (B, h, T, T)
    # The dtype's minimum rather than −inf: a row with no real key stays finite (and is not counted).
    return scores.masked_fill(~keys, torch.finfo(scores.dtype).min).log_softmax(-1)


def minilm_value_kl(student_values: torch.Tensor, teacher_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM's value-relation transfer (Wang et al. 2020, arXiv 2002.10957), on the last
    layer of each model:

        VR = softmax(V Vᵀ / √d) per head, over real keys     (B, h, T, T)
        L_VR = 1/(h · N_q) Σ_heads Σ_{real queries i} KL(VR_t[i] ‖ VR_s[i])

    student_values: (B, h, T, d_s); teacher_values: (B, h, T, d_t); mask: (B, T). Each model
    scales by its own √d. The relations are T×T, so any student width works, but the head counts
    must be equal (MiniLM v1); a ValueError says so otherwise.
    """
    _check_heads(student_values, teacher_values, "minilm_value_kl")
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    log_teacher = _value_relation_log(teacher_values, keys)
    log_student = _value_relation_log(student_values, keys)
    return _query_head_mean(_row_kl(log_teacher.exp(), log_teacher, log_student, keys), mask)


# ----- logits -----

def vanilla_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    alpha: float, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv 1503.02531):

        L = (1 − α) · CE(softmax(s), y) + α · T² · KL(softmax(t / T) ‖ softmax(s / T))

    student_logits, teacher_logits: (B, C); labels: (B,) class indices. Both terms are batch
    means; the second is `kd.losses.soft_cross_entropy`. α = 0 is plain fine-tuning, α = 1 pure
    distillation.
    """
    hard = F.cross_entropy(student_logits, labels)
    soft = soft_cross_entropy(student_logits, teacher_logits, temperature)
    return (1.0 - alpha) * hard + alpha * soft


def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
    Networks" (arXiv 1903.12136):

        L_distill = mean over rows b of ‖z_t(b) − z_s(b)‖²₂

    student_logits, teacher_logits: (B, C). The squared norm sums over classes, as in the paper
    (C times `F.mse_loss`); for C = 1 it equals `kd.losses.regression_distillation`.
    """
    _same_shape(student_logits, teacher_logits, "logit_mse")
    return (student_logits - teacher_logits).pow(2).sum(-1).mean()


# ----- schedules -----

def theseus_replacing_probability(step: int, total_steps: int | None = None, base: float = 0.3,
                                  rate: float | None = None, *, k: float | None = None) -> float:
    """BERT-of-Theseus's replacement schedule (Xu et al. 2020, "BERT-of-Theseus: Compressing BERT
    by Progressive Module Replacing", arXiv 2002.02925):

        p(step) = min(1, base + rate · step)     (the paper's p_d = min(1, k·t + b))

    the probability of running each successor (student) module in place of its predecessor.
    `rate` may be passed as `k`. Without either, the rate that reaches 1 at `total_steps` is
    used: rate = (1 − base) / total_steps.
    """
    if rate is not None and k is not None:
        raise ValueError("give the slope as rate or as k, not both")
    rate = k if rate is None else rate
    if rate is None:
        if not total_steps or total_steps <= 0:
            raise ValueError("theseus_replacing_probability needs rate (k) or a positive total_steps")
        rate = (1.0 - base) / total_steps
    if step < 0 or not 0.0 <= base <= 1.0 or rate < 0:
        raise ValueError(f"need step ≥ 0, 0 ≤ base ≤ 1 and rate ≥ 0; got step {step}, base {base}, rate {rate}")
    return min(1.0, base + rate * step)
