"""BERT-PKD (Sun et al. 2019, "Patient Knowledge Distillation for BERT Model Compression",
arXiv 1908.09355), in its two variants:

    L = (1 − α) · CE(s, y) + α · T² · KL(softmax(t / T) ‖ softmax(s / T)) + β · L_PT

L_PT (`kd.method_losses.pkd_hidden_loss`) compares the normalised [CLS] vectors of matched
layers: `pkd-skip` matches student layer i to teacher layer i·⌊L/S⌋ (`kd.layer_map.skip`),
`pkd-last` to the teacher's top layers below the last (`kd.layer_map.last`); the student's last
layer is left to the logit terms, so a student needs at least 2 layers. A learned projection
maps the student's [CLS] to the teacher's width when they differ. The teacher runs in the loop
(no grad, eval mode) for its hidden states. As in the paper, a teacher-initialised student
starts from the teacher's bottom layers.
"""

from __future__ import annotations

from kd.layer_map import LayerMatch, Projection
from kd.method_losses import pkd_hidden_loss
from kd.methods.base import Method, width
from kd.methods.registry import register
from nas.base.errors import UserError


class _PatientKD(Method):
    needs = frozenset({"hidden_states"})

    def init_layers(self, student_layers, teacher_layers):
        return tuple(LayerMatch(i, i) for i in range(1, min(student_layers, teacher_layers) + 1))

    def setup(self, student, teacher, context):
        super().setup(student, teacher, context)
        self.matches = self.layer_matches(student.num_layers, teacher.num_layers)
        if not self.matches:
            raise UserError(f"{self.name} matches student layers 1..S−1 only, so it needs a student of at least "
                            f"2 layers (this one has {student.num_layers})")
        self.extra["projection"] = Projection(width(student), width(teacher))
        return self.extra

    def loss(self, batch, student_out, teacher_out, targets, stage):
        logits = student_out.logits  # (B, C)
        patient = pkd_hidden_loss([student_out.cls(m.student) for m in self.matches],
                                  [teacher_out.cls(m.teacher) for m in self.matches], self.extra["projection"])
        terms = self.mixed({"kd": self.soft(logits, targets.logits)}, self.hard(logits, batch["labels"]))
        return {**terms, "patient": self.options["beta"] * patient}


@register
class PatientSkip(_PatientKD):
    name = "pkd-skip"
    defaults = {"temperature": 10.0, "alpha": 0.5, "beta": 100.0, "layer_map": "skip"}


@register
class PatientLast(_PatientKD):
    name = "pkd-last"
    defaults = {"temperature": 10.0, "alpha": 0.5, "beta": 100.0, "layer_map": "last"}
