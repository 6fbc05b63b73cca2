"""DistilBERT (Sanh et al. 2019, "DistilBERT, a distilled version of BERT", arXiv 1910.01108),
its task-specific form:

    L = α · T² · KL(softmax(t / T) ‖ softmax(s / T)) + (1 − α) · CE(s, y) + β · L_cos

L_cos (`kd.method_losses.cosine_hidden_loss`) aligns the last hidden states token by token. The
default student keeps the teacher's width with half its depth and starts from every other
teacher layer (`kd.layer_map.every_other`); a student of another depth starts from the uniform
map, and one of another width is compared through a learned projection. The teacher runs in the
loop for its hidden states; its logits come from the cache.
"""

from __future__ import annotations

import math

from kd.layer_map import Projection, every_other, uniform
from kd.method_losses import cosine_hidden_loss
from kd.methods.base import Method, width
from kd.methods.registry import register


@register
class DistilBERT(Method):
    name = "distilbert"
    needs = frozenset({"hidden_states"})
    defaults = {"temperature": 2.0, "alpha": 0.5, "beta": 1.0}

    def init_layers(self, student_layers, teacher_layers):
        if student_layers == math.ceil(teacher_layers / 2):
            return every_other(teacher_layers)
        return uniform(student_layers, teacher_layers)

    def setup(self, student, teacher, context):
        super().setup(student, teacher, context)
        self.extra["projection"] = Projection(width(student), width(teacher))
        return self.extra

    def loss(self, batch, student_out, teacher_out, targets, stage):
        logits = student_out.logits  # (B, C)
        student_last = self.extra["projection"](student_out.hidden_states[-1])  # (B, T, H_t)
        cosine = cosine_hidden_loss(student_last, teacher_out.hidden_states[-1], student_out.mask)
        terms = self.mixed({"kd": self.soft(logits, targets.logits)}, self.hard(logits, batch["labels"]))
        return {**terms, "cosine": self.options["beta"] * cosine}
