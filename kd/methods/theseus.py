"""BERT-of-Theseus (Xu et al. 2020, "BERT-of-Theseus: Compressing BERT by Progressive Module
Replacing", arXiv 2002.02925).

The student (the successor) is a Transformer of S layers with the teacher's widths, S dividing
the teacher's L; successor layer i stands for the predecessor module made of teacher layers
(i−1)·L/S + 1 .. i·L/S (`groups`, a layer map as data: successor i <- the module's top teacher
layer). It starts from the teacher: embeddings, pooler and classifier copied, layer i from
teacher layer i (the bottom layers, as in the paper).

* "replacing": a hybrid runs the student's embeddings, then for each module draws
  r ~ Bernoulli(p) and runs the successor layer (r = 1) or the frozen predecessor's layers,
  then the student's pooler and classifier; the loss is the task loss alone. p follows
  `kd.method_losses.theseus_replacing_probability`: p = min(1, replace_base + replace_rate·step),
  the rate reaching 1 at the stage's last step unless `replace_rate` is set. The predecessor's
  layers and the (shared) embeddings stay frozen; the successor layers train, and so do the
  pooler and classifier, so that a step that drew no successor layer still has something to
  train (with them frozen too its loss would not depend on any trained parameter).
* "finetune": the successor alone, every parameter trained, on the task loss.

`--epochs` applies to each stage. The exported student is the successor, a plain
`BertForSequenceClassification` of S layers.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from kd.layer_map import LayerMatch, validate
from kd.method_losses import theseus_replacing_probability
from kd.methods.base import Method
from kd.methods.registry import register
from nas.base.errors import UserError


def groups(successor_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
    """Successor layer i replaces teacher layers (i−1)·r+1 .. i·r, r = L/S; as matches (i, i·r)."""
    if teacher_layers % successor_layers:
        raise UserError(f"theseus: each successor layer replaces L/S teacher layers, so the student's {successor_layers} "
                        f"layers must divide the teacher's {teacher_layers}")
    size = teacher_layers // successor_layers
    return validate([LayerMatch(i, i * size) for i in range(1, successor_layers + 1)], successor_layers, teacher_layers)


class TheseusHybrid(nn.Module):
    """The student with each layer replaced, with probability 1 − p per forward, by its
    predecessor module (the teacher layers it stands for). A training-time construct only."""

    def __init__(self, student, teacher, matches, probability: float):
        super().__init__()
        self.student = student
        self.predecessors = nn.ModuleList(
            nn.ModuleList(teacher.base_model.encoder.layer[start:match.teacher])
            for start, match in zip([0] + [m.teacher for m in matches[:-1]], matches))
        self.probability = probability

    def forward(self, **inputs):
        encoder = self.student.base_model.encoder
        successors = encoder.layer
        chosen = []
        for successor, predecessor in zip(successors, self.predecessors):
            chosen += [successor] if torch.rand(()) < self.probability else list(predecessor)
        # The student's own forward (masks, pooler, classifier) over the drawn layers, put back after.
        encoder.layer = nn.ModuleList(chosen)
        try:
            return self.student(**inputs)
        finally:
            encoder.layer = successors


@register
class Theseus(Method):
    name = "theseus"
    stages = ("replacing", "finetune")
    defaults = {"replace_base": 0.3, "replace_rate": None}

    def init_layers(self, student_layers, teacher_layers):
        return tuple(LayerMatch(i, i) for i in range(1, min(student_layers, teacher_layers) + 1))

    def training_model(self, student, teacher, stage):
        _check_models(student, teacher)
        if stage != "replacing":
            return student
        self.matches = groups(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
        self.hybrid = TheseusHybrid(student, teacher, self.matches, self.options["replace_base"])
        if hasattr(student, "set_attn_implementation"):  # one attention kind for the masks of both models' layers
            student.set_attn_implementation(teacher.config._attn_implementation)
        return self.hybrid

    def trainable(self, student, stage):
        if stage == "replacing":
            embeddings = {id(p) for p in student.base_model.embeddings.parameters()}
            return [p for p in student.parameters() if id(p) not in embeddings]
        return [p for p in student.parameters() if p.requires_grad]

    def after_step(self, step, total_steps, stage):
        if stage != "replacing":
            return None
        p = theseus_replacing_probability(step, total_steps, self.options["replace_base"], self.options["replace_rate"])
        self.hybrid.probability = p
        return {"theseus/replace_probability": p}

    def loss(self, batch, student_out, teacher_out, targets, stage):
        return {"ce": self.hard(student_out.logits, batch["labels"])}


def _check_models(student, teacher) -> None:
    """Module replacing swaps layers between the two models, so both must be BERT-like and equally wide."""
    for role, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, PreTrainedModel) or not hasattr(getattr(model.base_model, "encoder", None), "layer"):
            raise UserError(f"theseus replaces Transformer layers: the {role} ({type(model).__name__}) has none; "
                            "use a transformer student")
    for key in ("hidden_size", "intermediate_size", "num_attention_heads"):
        mine, theirs = getattr(student.config, key, None), getattr(teacher.config, key, None)
        if mine != theirs:
            raise UserError(f"theseus: successor layers stand in for teacher layers, so the student's {key} ({mine}) "
                            f"must equal the teacher's ({theirs})")
