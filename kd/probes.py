"""Linear probes on each teacher layer (Alain & Bengio 2017), as AdaBERT's probes KD uses them.

A probe per layer maps that layer's pooled hidden state to the task's logits. The probes are
trained once on the task labels and frozen; their logits become per-layer soft targets for the
student, and their dev loss says how much task knowledge each layer holds (AdaBERT weights the
layers by a softmax over the negative probe loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ProbeSettings:
    epochs: int = 30
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0


class LayerProbes(nn.Module):
    """One linear classifier per layer, applied to features of shape (N, L, H) -> logits (N, L, C)."""

    def __init__(self, num_layers: int, hidden: int, num_outputs: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_layers, hidden, num_outputs))
        self.bias = nn.Parameter(torch.zeros(num_layers, num_outputs))
        nn.init.normal_(self.weight, std=hidden**-0.5)
        # Features are standardised per layer so one learning rate suits every layer.
        self.register_buffer("mean", torch.zeros(num_layers, hidden))
        self.register_buffer("std", torch.ones(num_layers, hidden))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        normalised = (features - self.mean) / self.std  # (N, L, H)
        return torch.einsum("nlh,lhc->nlc", normalised, self.weight) + self.bias


def probe_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Per-layer loss, shape (L,): cross-entropy (classification) or MSE (regression), averaged over rows."""
    n, layers, classes = logits.shape
    if regression:
        return ((logits.squeeze(-1) - labels.float()[:, None]) ** 2).mean(0)
    flat = nn.functional.cross_entropy(
        logits.reshape(n * layers, classes), labels.repeat_interleave(layers), reduction="none"
    )
    return flat.view(n, layers).mean(0)


def train_probes(features: torch.Tensor, labels: torch.Tensor, num_outputs: int, regression: bool,
                 settings: ProbeSettings = ProbeSettings()) -> LayerProbes:
    """Fit every layer's probe at once on (N, L, H) features; returns the frozen probes."""
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    n, layers, hidden = features.shape
    probes = LayerProbes(layers, hidden, num_outputs)
    probes.mean.copy_(features.float().mean(0))
    probes.std.copy_(features.float().std(0).clamp_min(1e-5))
    optimizer = torch.optim.AdamW(probes.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    for _ in range(settings.epochs):
        for rows in torch.randperm(n, generator=generator).split(settings.batch_size):
            loss = probe_loss(probes(features[rows].float()), labels[rows], regression).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    probes.requires_grad_(False)
    return probes.eval()


@torch.no_grad()
def probe_quality(probes: LayerProbes, features: torch.Tensor, labels: torch.Tensor, regression: bool) -> dict:
    """Per-layer dev loss and (for classification) accuracy of the frozen probes."""
    logits = probes(features.float())
    quality = {"loss": probe_loss(logits, labels, regression).tolist()}
    if not regression:
        quality["accuracy"] = (logits.argmax(-1) == labels[:, None]).float().mean(0).tolist()
    return quality


def layer_weights(probe_losses, temperature: float = 1.0) -> torch.Tensor:
    """AdaBERT's layer weights: softmax over the negative probe losses (better probes weigh more)."""
    return torch.softmax(-torch.as_tensor(probe_losses, dtype=torch.float32) / temperature, dim=0)
