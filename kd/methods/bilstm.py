"""Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"
(arXiv 1903.12136): a BiLSTM student (`kd.students.BiLSTMClassifier`) regresses the teacher's
logits on the transfer set,

    L = α · ‖z_t − z_s‖²₂ + (1 − α) · CE(s, y)        (α = 1 by default: the paper's pure distillation)

(`kd.method_losses.logit_mse`). The transfer set is the training split plus the knowledge's
augmented rows (`nas knowledge --augment N`), which `nas.train.distill_data.prepare` already joins
unless `use_augmented=false`. Teacher logits come from the cache.
"""

from __future__ import annotations

from kd.method_losses import logit_mse
from kd.methods.base import Method
from kd.methods.registry import register


@register
class BiLSTMDistillation(Method):
    name = "bilstm"
    default_student = "bilstm:hidden=300"
    defaults = {"alpha": 1.0}

    def loss(self, batch, student_out, teacher_out, targets, stage):
        logits = student_out.logits  # (B, C)
        return self.mixed({"logit_mse": logit_mse(logits, targets.logits)}, self.hard(logits, batch["labels"]))
