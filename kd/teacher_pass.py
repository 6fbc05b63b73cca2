"""One pass of a teacher over a split: final logits and each layer's pooled hidden state."""

from __future__ import annotations

import torch

from nas.compute.precision import inference_autocast
from nas.data.batching import EncodedSplit, in_row_order, inference_batches, model_inputs, to_device
from ops.masking import masked_mean


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): the [CLS] vector, or the mean over real tokens (padding excluded)."""
    if how == "cls":
        return hidden[:, 0]
    return masked_mean(hidden, mask)


@torch.no_grad()
def run_teacher(model, split: EncodedSplit, batch_size: int, device, pooling: str = "mean", head=None):
    """Returns logits (N, C) and pooled features (N, L+1, H) in row order (embedding output first).

    With `head` (the frozen probes) the features never leave the batch: the second result is
    `head(features)`, (N, L+1, C), so a pass over a large transfer set holds C numbers a layer
    per row instead of H. Batches are sorted by length (little padding); on CUDA the forward
    runs under autocast and the pooled states are taken in float32.
    """
    model.eval()
    device = torch.device(device)
    logits, features, rows = [], [], []
    for batch in inference_batches(split, batch_size):
        rows.append(batch["index"])
        batch = to_device(batch, device)
        with inference_autocast(device):
            output = model(**model_inputs(batch), output_hidden_states=True)
        mask = batch["attention_mask"]
        logits.append(output.logits.float().cpu())
        # hidden_states: a tuple of L+1 tensors (B, T, H) -> (B, L+1, H)
        pooled = torch.stack([pool(h.float(), mask, pooling) for h in output.hidden_states], 1)
        features.append((head(pooled.cpu()) if head is not None else pooled.cpu()).float())
    return in_row_order(logits, rows), in_row_order(features, rows)
