"""TinyBERT's task-specific distillation (Jiao et al. 2020, "TinyBERT: Distilling BERT for
Natural Language Understanding", arXiv 1909.10351), in its two stages; `--epochs` applies to
each stage.

* "intermediate": L = MSE(E_s W_e, E_t) + Σ_m [MSE(H_s(i) W_h, H_t(m(i))) + MSE(A_s(i), A_t(m(i)))]
  over the embedding output and the layer map (`kd.layer_map.uniform` by default: student i <-
  teacher ⌈i·L/S⌉), with `kd.method_losses.hidden_mse` and `attention_mse`. W_e and W_h are
  learned projections (`kd.layer_map.Projection`, identities when the widths are equal); the
  attention maps are compared head by head, so the head counts must match.
* "prediction": L = α · T² · KL(softmax(t / T) ‖ softmax(s / T)) + (1 − α) · CE(s, y), α = 1 and
  T = 1 by default, as in the paper.

The teacher runs in the loop for the intermediate stage; the prediction stage reads the cached
logits. TinyBERT's general distillation and its own augmentation are not part of this; the
knowledge's augmented rows (`nas knowledge --augment N`) play the augmentation's part.
"""

from __future__ import annotations

from kd.layer_map import LayerMatch, Projection
from kd.method_losses import attention_mse, hidden_mse
from kd.methods.base import Method, require_equal_heads, width
from kd.methods.registry import register


@register
class TinyBERT(Method):
    name = "tinybert"
    needs = frozenset({"hidden_states", "attentions"})
    stages = ("intermediate", "prediction")
    defaults = {"temperature": 1.0, "alpha": 1.0, "layer_map": "uniform"}

    def stage_needs(self, stage):
        return frozenset(self.needs) if stage == "intermediate" else frozenset()

    def setup(self, student, teacher, context):
        super().setup(student, teacher, context)
        self.matches = (LayerMatch(0, 0),) + self.layer_matches(student.num_layers, teacher.num_layers)
        require_equal_heads(self.name, student.attentions[0], teacher.attentions[0])
        self.extra["embedding"] = Projection(width(student, 0), width(teacher, 0))  # W_e
        self.extra["hidden"] = Projection(width(student), width(teacher))  # W_h
        return self.extra

    def loss(self, batch, student_out, teacher_out, targets, stage):
        if stage == "prediction":
            logits = student_out.logits
            return self.mixed({"kd": self.soft(logits, targets.logits)}, self.hard(logits, batch["labels"]))
        mask, terms = student_out.mask, {}
        for match in dict.fromkeys(self.matches):  # the explicit map may repeat the embedding match
            kind = "embedding" if match.student == 0 else "hidden"
            term = hidden_mse(student_out.hidden_states[match.student], teacher_out.hidden_states[match.teacher],
                              mask, self.extra[kind])
            terms[kind] = terms.get(kind, 0) + term
            if match.student and match.teacher:
                term = attention_mse(student_out.attentions[match.student - 1],
                                     teacher_out.attentions[match.teacher - 1], mask)
                terms["attention"] = terms.get("attention", 0) + term
        return terms
