"""What a sentence pair's two sentences fail to match in each other: the pair head's alignment feature.

Paraphrase and similarity decisions hinge on which words of one sentence find a counterpart in
the other. On MRPC a logistic regression over four token-overlap ratios (0.735 dev accuracy,
F1 0.822) beat every CNN student whose head saw only the two sentences' means. So the pair
head also aligns them, as the decomposable-attention model does (Parikh et al. 2016): each token
of one sentence attends over the other's tokens (scaled dot products of the word vectors, the
embedding output), and what the attended summary leaves unexplained, |x_i - aligned_i|, is averaged
over the sentence. Both directions are averaged, so the feature is symmetric in the pair. The
cost is three (T x T x w) products per row: at width 128 and length 128, the multiply-adds of
one cnn3 op (T x w x w x 3), which the latency tables' pair frame includes.
"""

from __future__ import annotations

import math

import torch

from ops.masking import masked_mean

# Padded or other-sentence keys get this score rather than -inf, which would make a row whose
# other sentence is empty NaN. Such rows do occur: a pair model fed all-zero token types.
_EXCLUDED = -1e4


def unmatched(x: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """x (B, T, w), first / second (B, T) bool: the two sentences' tokens. Returns (B, w): the
    mean of |x_i - aligned_i| over each sentence's tokens, averaged over the two directions."""
    scores = x @ x.transpose(1, 2) / math.sqrt(x.shape[-1])  # (B, T, T): query i, key j
    to_second = _gap(x, scores, first, second)
    to_first = _gap(x, scores.transpose(1, 2), second, first)
    return 0.5 * (to_second + to_first)  # (B, w)


def _gap(x, scores, queries, keys):
    """Mean over `queries` tokens of |x - (attention over `keys` tokens) x|."""
    keys = keys.unsqueeze(1)  # (B, 1, T)
    # Times the mask: exact zeros where the softmax underflowed already, and for a row with no
    # key token at all (its softmax is uniform over every position, padding included) nothing
    # is aligned, so the result does not depend on how far the batch was padded.
    weights = torch.softmax(scores.masked_fill(~keys, _EXCLUDED), dim=-1) * keys.to(x.dtype)  # (B, T, T)
    aligned = weights @ x  # (B, T, w)
    return masked_mean((x - aligned).abs(), queries)  # (B, w)
