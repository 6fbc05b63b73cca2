"""MiniLM (Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
Compression of Pre-Trained Transformers", arXiv 2002.10957), applied task-specifically:

    L = α · (L_AT + L_VR) + (1 − α) · CE(s, y)

L_AT (`kd.method_losses.minilm_attention_kl`) and L_VR (`minilm_value_kl`) compare the last
layer's attention distributions and value relations of the two models, head by head: any
student width works, the head counts must match (the default student takes the teacher's). The
paper uses the attention terms alone (α = 1) and fine-tunes afterwards; the CE term here trains
the classifier in the same run (with α = 1 the student's head stays untrained). The teacher
runs in the loop for its attention maps and values.
"""

from __future__ import annotations

from kd.layer_map import LayerMatch, validate
from kd.method_losses import minilm_attention_kl, minilm_value_kl
from kd.methods.base import Method, require_equal_heads
from kd.methods.registry import register


@register
class MiniLM(Method):
    name = "minilm"
    needs = frozenset({"attentions", "values"})
    defaults = {"alpha": 0.5}

    def setup(self, student, teacher, context):
        super().setup(student, teacher, context)
        # Last layer to last layer, as data like every other method's map.
        self.match = validate([LayerMatch(student.num_layers, teacher.num_layers)], student.num_layers,
                              teacher.num_layers)[0]
        require_equal_heads(self.name, student.attentions[-1], teacher.attentions[-1])
        return self.extra

    def loss(self, batch, student_out, teacher_out, targets, stage):
        s, t, mask = self.match.student - 1, self.match.teacher - 1, student_out.mask
        kd = {"attention": minilm_attention_kl(student_out.attentions[s], teacher_out.attentions[t], mask),
              "value": minilm_value_kl(student_out.values[s], teacher_out.values[t], mask)}
        return self.mixed(kd, self.hard(student_out.logits, batch["labels"]))
