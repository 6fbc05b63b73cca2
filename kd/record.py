"""The one record every KD method reads: what a model computed on a batch.

`kd.adaptor.adapt` turns any model's raw outputs (a Hugging Face encoder, the AdaBERT student, a
plain module) into a `ModelOutputs`, so a distillation method never needs to know the model's
class. Fields a method did not ask for stay None.

Layer numbering: index 0 of `hidden_states` is the embedding output and index i (1..L) the output
of the i-th layer (transformer block or cell). `attentions`, `values`, `queries` and `keys` have
one entry per layer and no embedding entry, so `attentions[i - 1]` belongs to layer i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ops.masking import masked_mean

Layers = tuple[torch.Tensor, ...]


@dataclass
class ModelOutputs:
    """One model's outputs on one batch (B rows, T tokens, width H, `heads` attention heads).

    logits: (B, C).
    mask: (B, T) bool, True at real tokens; every token average in `kd.method_losses` uses it.
    hidden_states: L + 1 tensors (B, T, H), the embedding output first.
    attentions: L tensors (B, heads, T, T), softmax probabilities (rows sum to 1 over real keys).
    values, queries, keys: L tensors (B, heads, T, d), the self-attention projections split into
        heads (MiniLM's value relation reads `values`).
    pooled: (B, H), the sentence vector the classifier reads, where the model has one.
    """

    logits: torch.Tensor
    mask: torch.Tensor
    hidden_states: Layers | None = None
    attentions: Layers | None = None
    values: Layers | None = None
    queries: Layers | None = None
    keys: Layers | None = None
    pooled: torch.Tensor | None = None

    def __post_init__(self):
        if self.mask.dim() != 2 or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be a (B, T) bool tensor, got {tuple(self.mask.shape)} {self.mask.dtype}")
        batch, tokens = self.mask.shape
        if self.logits.shape[0] != batch:
            raise ValueError(f"logits have {self.logits.shape[0]} rows but the mask has {batch}")
        for name in ("hidden_states", "attentions", "values", "queries", "keys"):
            layers = getattr(self, name)
            if layers is None:
                continue
            layers = tuple(layers)
            setattr(self, name, layers)
            for tensor in layers:
                # (B, T, H) for hidden states, (B, heads, T, ·) for the attention tensors.
                token_dim = 1 if name == "hidden_states" else 2
                if tensor.shape[0] != batch or tensor.shape[token_dim] != tokens:
                    raise ValueError(f"{name} has a tensor of shape {tuple(tensor.shape)}, which does not fit "
                                     f"the mask's (B, T) = ({batch}, {tokens})")

    @property
    def num_layers(self) -> int:
        """L, the number of layers (not counting the embeddings) this record has outputs for."""
        if self.hidden_states is not None:
            return len(self.hidden_states) - 1
        for layers in (self.attentions, self.values, self.queries, self.keys):
            if layers is not None:
                return len(layers)
        raise ValueError("this record holds no per-layer outputs (adapt() was asked only for logits)")

    def _hidden(self, layer: int) -> torch.Tensor:
        if self.hidden_states is None:
            raise ValueError("this record holds no hidden states: ask adapt() for need={'hidden_states'}")
        return self.hidden_states[layer]  # (B, T, H)

    def cls(self, layer: int) -> torch.Tensor:
        """(B, H): layer `layer`'s vector at the first position ([CLS] in BERT's tokenization);
        0 is the embedding output, -1 the last layer."""
        return self._hidden(layer)[:, 0]

    def mean(self, layer: int) -> torch.Tensor:
        """(B, H): layer `layer`'s hidden states averaged over real tokens (a sentence vector for
        models without a [CLS] summary, such as the AdaBERT student)."""
        hidden = self._hidden(layer)
        return masked_mean(hidden, self.mask)
