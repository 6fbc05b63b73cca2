"""Vanilla KD (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531).

    L = (1 − α) · CE(s, y) + α · T² · KL(softmax(t / T) ‖ softmax(s / T))

(`kd.method_losses.vanilla_kd_loss`, split into its two named terms). The teacher's logits come
from the knowledge cache, so the teacher never runs. For regression both terms are MSEs.
"""

from __future__ import annotations

from kd.methods.base import Method
from kd.methods.registry import register


@register
class Vanilla(Method):
    name = "vanilla"
    defaults = {"temperature": 4.0, "alpha": 0.5}

    def loss(self, batch, student_out, teacher_out, targets, stage):
        logits = student_out.logits  # (B, C)
        return self.mixed({"kd": self.soft(logits, targets.logits)}, self.hard(logits, batch["labels"]))
