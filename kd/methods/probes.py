"""AdaBERT's probe-based KD (Chen et al. 2020, arXiv 2001.04246, Sec. 3.2) with a fixed student.

Student layer i of K (its pooled hidden state, pooled as the knowledge's probes were: mean over
real tokens or [CLS]) goes through its own linear head, and the head learns from the cached
probe of teacher layer m(i) = ⌈i·L/K⌉ (`kd.layer_map.uniform`), layers weighted by a softmax of
their probes' negative dev loss (`kd.losses.probes_kd`). As in AdaBERT, the head of the last
layer is the student's own classifier, so its logits are distilled from the top probe:

    L = (1 − α) · CE(s, y) + α · Σ_i w_i · D(probe_{m(i)}, head_i)

The per-layer heads train with the student and are not exported. With a Transformer student
this is the "homogeneous student" ablation of AdaBERT. A searched (`arch:`) student is not
trained here: `nas distill` hands it to `nas finetune`'s kd=probes (nas/train/distill.py,
SEARCHED_STUDENT_KD), whose per-cell heads are the search's (`searchspace.cell_heads`), so one
recipe trains it whichever command is asked. Probe logits come from the cache; the teacher never runs.
"""

from __future__ import annotations

from torch import nn

from kd.layer_map import uniform, validate
from kd.losses import probes_kd
from kd.methods.base import Method, width
from kd.methods.registry import register


@register
class ProbesKD(Method):
    name = "probes"
    needs = frozenset({"hidden_states"})
    defaults = {"temperature": 1.0, "alpha": 0.8}

    def setup(self, student, teacher, context):
        super().setup(student, teacher, context)
        layers = student.num_layers
        validate(uniform(layers, context.teacher_layers), layers, context.teacher_layers)
        self.extra["heads"] = nn.ModuleList(nn.Linear(width(student, i), context.num_labels) for i in range(1, layers))
        return self.extra

    def loss(self, batch, student_out, teacher_out, targets, stage):
        pool = student_out.cls if self.context.pooling == "cls" else student_out.mean  # layer -> (B, H)
        per_layer = [head(pool(i)) for i, head in enumerate(self.extra["heads"], 1)] + [student_out.logits]
        kd = probes_kd(per_layer, targets.probe_logits, self.context.probe_losses, self.options["temperature"],
                       self.context.regression)
        return self.mixed({"probes_kd": kd}, self.hard(student_out.logits, batch["labels"]))
