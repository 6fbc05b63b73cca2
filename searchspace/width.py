"""The hidden width as a searched choice (`SearchSpace.widths`).

FBNetV2 (Wan et al. 2020, https://arxiv.org/abs/2004.05565) searches channel counts in one
supernet: every layer is built at the widest width, a width w keeps its leading w channels
(a mask), the weights are shared, and the relaxed choice g mixes the masked outputs,
y = Σ_w g_w · mask_w ⊙ x. Here a width w runs on exactly those leading channels of every
weight (embeddings, each conv op, each head), which is FBNetV2's mask with one difference that
matters for this network: the LayerNorms (in the embeddings and after each conv) normalise over
the w channels kept, not over all of them. A masked tensor normalised over the full width would
not be the narrower student's; sliced, the supernet at width w *is* the compiled student of
hidden_size w with these slices as its weights (tests/test_width.py), and one run of the
network costs what the narrower student costs.

The relaxed choice mixes the runs at the output, as depth does: final = Σ_w g_w · final_w (the
same for each depth's logits, which the KD probes read). With hard Gumbel g is one-hot, so
one width runs per step and the gradient reaches the width logits through the straight-through
estimate; soft mode runs every width. The derived width is `derive.derive_width`.
"""

from __future__ import annotations

import torch


def width_one_hot(widths: tuple[int, ...], hidden_size: int, device=None) -> torch.Tensor | None:
    """The fixed width choice of a genotype of `hidden_size`; None when no width is searched."""
    if not widths:
        return None
    if hidden_size not in widths:
        raise ValueError(f"hidden_size {hidden_size} is not one of the searched widths {widths}")
    weights = torch.zeros(len(widths), device=device)
    weights[widths.index(hidden_size)] = 1.0
    return weights


def mix_widths(runs):
    """Σ_w g_w · outputs_w for `runs` = [(g_w, (final (B, C), per-depth [(B, C)])), ...]."""
    final = sum(weight * out for weight, (out, _) in runs)  # (B, C)
    depths = len(runs[0][1][1])
    per_depth = [sum(weight * outs[k] for weight, (_, outs) in runs) for k in range(depths)]
    return final, per_depth


def leading_slice(tensor: torch.Tensor, shape) -> torch.Tensor:
    """The leading block of `tensor` of `shape`: a narrower network's share of the weights."""
    return tensor[tuple(slice(0, n) for n in shape)]
