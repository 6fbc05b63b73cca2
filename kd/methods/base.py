"""What a KD method is: a named recipe that turns one batch's `ModelOutputs` into loss terms.

A method never sees a model class. It declares what it needs from the adaptor (`needs`, per
stage through `stage_needs`), the stages it trains in, the options it reads (`defaults`), the
layer maps it uses as data (`kd.layer_map`), and the small modules it trains beside the student
(projections, per-layer heads), built in `setup` from the shapes of one sample record. The
runner (`nas.train.distill`) owns the models, the data and the one training loop.

Options are the `DistillConfig` settings `temperature`, `alpha`, `beta`, `layer_map`,
`replace_base` and `replace_rate`; each method reads some of them, and setting one it does not
read is a UserError, so a typo'd experiment fails instead of silently running the defaults.
`alpha` is always the share of the distillation term against the task loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kd.layer_map import LayerMatch, last, skip, uniform, validate
from kd.losses import regression_distillation, soft_cross_entropy
from kd.record import ModelOutputs
from nas.base.errors import UserError
from nas.data.evaluation import task_loss

SCHEMES = {"uniform": uniform, "skip": skip, "last": last}


@dataclass(frozen=True)
class Context:
    """What a method may know besides the records, fixed for a run."""

    teacher_layers: int  # L, from the knowledge cache
    num_labels: int
    regression: bool
    probe_losses: tuple[float, ...]  # dev loss of each teacher layer's probe, embeddings first
    pooling: str = "mean"  # how the probes pooled a layer's tokens: mean or cls


class Method:
    name: str = ""
    default_student: str = "transformer"
    needs: frozenset = frozenset()  # what `adapt` must give, for the student and (run in the loop) the teacher
    stages: tuple[str, ...] = ("train",)
    defaults: dict = {}  # option -> default value (None: decided at run time)

    def __init__(self, options: dict | None = None):
        given = {key: value for key, value in (options or {}).items() if value is not None}
        unused = sorted(set(given) - set(self.defaults))
        if unused:
            reads = ", ".join(self.defaults) or "no options"
            raise UserError(f"setting {unused[0]!r} is not used by method {self.name} (it reads: {reads})")
        self.options = {**self.defaults, **given}
        alpha = self.options.get("alpha")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise UserError(f"setting 'alpha': expected a share between 0 and 1, got {alpha}")
        if self.options.get("temperature") is not None and self.options["temperature"] <= 0:
            raise UserError(f"setting 'temperature': expected a positive number, got {self.options['temperature']}")
        self.context: Context | None = None
        self.extra = nn.ModuleDict()  # modules trained beside the student, never exported

    # ----- what the runner asks

    def stage_needs(self, stage: str) -> frozenset:
        """What the adaptor must give in `stage`; the teacher runs in the loop only where this is not empty."""
        return frozenset(self.needs)

    def init_layers(self, student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
        """Which teacher layer each layer of a teacher-initialised student starts as."""
        return uniform(student_layers, teacher_layers)

    def setup(self, student: ModelOutputs, teacher: ModelOutputs, context: Context) -> nn.ModuleDict:
        """Check the shapes of one sample record of each model and build `self.extra`; returns it."""
        self.context = context
        return self.extra

    def training_model(self, student: nn.Module, teacher: nn.Module, stage: str) -> nn.Module:
        """The module whose outputs are the student's record in `stage` (the student itself, except for Theseus)."""
        return student

    def trainable(self, student: nn.Module, stage: str) -> list[nn.Parameter]:
        params = list(student.parameters()) + list(self.extra.parameters())
        return [p for p in params if p.requires_grad]

    def after_step(self, step: int, total_steps: int, stage: str) -> dict | None:
        """Called after each optimizer step of `stage`; scalars returned are logged."""
        return None

    def loss(self, batch: dict, student_out, teacher_out, targets, stage: str) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch; the total is their sum.

        batch: `nas.data.batching.collate` output (labels, index, tokenizer keys); student_out,
        teacher_out: `ModelOutputs` (teacher_out None where the teacher does not run);
        targets: `nas.train.distill_data.Targets` of the batch's rows (cached teacher logits (B, C)
        and probe logits (B, L+1, C)).
        """
        raise NotImplementedError

    # ----- helpers for the losses

    def layer_matches(self, student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
        """The `layer_map` option (a scheme name or `s:t,s:t`) for these depths, validated against both."""
        return validate(parse_layer_map(self.options["layer_map"], student_layers, teacher_layers),
                        student_layers, teacher_layers)

    def hard(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss: cross-entropy, or MSE for regression."""
        return task_loss(logits, labels, self.context.regression)

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Softened cross-entropy at the `temperature` option (Hinton et al. 2015), or MSE for regression."""
        if self.context.regression:
            return regression_distillation(student_logits, teacher_logits)
        return soft_cross_entropy(student_logits, teacher_logits, self.options["temperature"])

    def mixed(self, kd_terms: dict, ce: torch.Tensor) -> dict[str, torch.Tensor]:
        """α · each distillation term + (1 − α) · the task loss, leaving out terms of weight 0."""
        alpha = self.options["alpha"]
        terms = {name: alpha * value for name, value in kd_terms.items()} if alpha > 0 else {}
        if alpha < 1:
            terms["ce"] = (1 - alpha) * ce
        return terms


def parse_layer_map(text: str, student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
    """`uniform`, `skip`, `last`, or explicit pairs `student:teacher,...` (0 = embeddings)."""
    text = str(text).strip()
    if text in SCHEMES:
        return SCHEMES[text](student_layers, teacher_layers)
    matches = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        student, sep, teacher = item.partition(":")
        if not sep or not student.strip().isdigit() or not teacher.strip().isdigit():
            raise UserError(f"setting 'layer_map': expected {', '.join(SCHEMES)} or student:teacher pairs "
                            f"such as 1:2,2:4; got {item!r}")
        matches.append(LayerMatch(int(student), int(teacher)))
    if not matches:
        raise UserError("setting 'layer_map': empty")
    return tuple(matches)


def require_equal_heads(method: str, student_maps: torch.Tensor, teacher_maps: torch.Tensor) -> None:
    """Attention losses compare head by head: a one-line UserError when the head counts differ."""
    if student_maps.shape[1] != teacher_maps.shape[1]:
        raise UserError(f"{method} compares attention head by head: the student has {student_maps.shape[1]} heads, "
                        f"the teacher {teacher_maps.shape[1]} (set heads={teacher_maps.shape[1]} in --student)")


def width(record, layer: int = -1) -> int:
    """H of a record's hidden states."""
    return record.hidden_states[layer].shape[-1]
