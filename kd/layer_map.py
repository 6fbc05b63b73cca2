"""Which student layer learns from which teacher layer, as data.

A mapping is a tuple of `LayerMatch(student, teacher)` in the numbering of `kd.record`: layer 0
is the embedding output, layer i (1..depth) the i-th transformer block or cell. The builders
below give the published schemes; `validate` checks a hand-written one against two models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kd.losses import teacher_layer_for
from nas.base.errors import UserError


@dataclass(frozen=True)
class LayerMatch:
    """Student layer `student` learns from teacher layer `teacher` (0 = embeddings)."""

    student: int
    teacher: int

    def __str__(self) -> str:
        return f"student {self.student} <- teacher {self.teacher}"


def _check_depths(student_layers: int, teacher_layers: int, shallower: bool = True) -> None:
    if student_layers < 1 or teacher_layers < 1:
        raise UserError(f"layer maps need at least one layer in each model, got student {student_layers}, "
                        f"teacher {teacher_layers}")
    if shallower and student_layers > teacher_layers:
        raise UserError(f"the student ({student_layers} layers) is deeper than the teacher ({teacher_layers} layers); "
                        "these layer maps assume a shallower student")


def uniform(student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
    """AdaBERT / TinyBERT's uniform map: student i learns from teacher ⌈i·L/S⌉, i = 1..S.

    (S, L) = (6, 12): 2, 4, 6, 8, 10, 12; (4, 12): 3, 6, 9, 12; (3, 6): 2, 4, 6. A student deeper
    than its teacher (AdaBERT searches up to 8 cells under 6-layer MiniLM) shares teacher layers.
    """
    _check_depths(student_layers, teacher_layers, shallower=False)
    return tuple(LayerMatch(i, teacher_layer_for(i, student_layers, teacher_layers))
                 for i in range(1, student_layers + 1))


def skip(student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
    """BERT-PKD's PKD-Skip (Sun et al. 2019, arXiv 1908.09355): student i learns from teacher
    i·⌊L/S⌋ for i = 1..S−1. The student's last layer is left out because the prediction loss on
    the logits already covers it.

    (S, L) = (6, 12): 2, 4, 6, 8, 10; (4, 12): 3, 6, 9; (3, 6): 2, 4. Never teacher layer L, since
    (S−1)·⌊L/S⌋ ≤ L − ⌊L/S⌋ < L.
    """
    _check_depths(student_layers, teacher_layers)
    step = teacher_layers // student_layers
    return tuple(LayerMatch(i, i * step) for i in range(1, student_layers))


def last(student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
    """BERT-PKD's PKD-Last: the S−1 teacher layers just below the top, L−S+1 .. L−1, for student
    layers 1..S−1 (the top layers are covered by the prediction loss, as in `skip`).

    (S, L) = (6, 12): 7..11; (4, 12): 9, 10, 11; (3, 6): 4, 5.
    """
    _check_depths(student_layers, teacher_layers)
    first = teacher_layers - student_layers
    return tuple(LayerMatch(i, first + i) for i in range(1, student_layers))


def every_other(teacher_layers: int) -> tuple[LayerMatch, ...]:
    """DistilBERT's initialisation (Sanh et al. 2019, arXiv 1910.01108): the student keeps one
    teacher block out of two, blocks 0, 2, 4, ... in 0-based block numbering (as in
    `encoder.layer[k]`), which are layers 1, 3, 5, ... here; the embeddings (layer 0) are copied
    too. The student has ⌈L/2⌉ layers: student i learns from (starts as) teacher 2i − 1.

    L = 12: (0, 0), (1, 1), (2, 3), (3, 5), (4, 7), (5, 9), (6, 11).
    """
    if teacher_layers < 1:
        raise UserError(f"layer maps need at least one teacher layer, got {teacher_layers}")
    student_layers = (teacher_layers + 1) // 2
    return (LayerMatch(0, 0),) + tuple(LayerMatch(i, 2 * i - 1) for i in range(1, student_layers + 1))


def validate(matches, student_layers: int, teacher_layers: int) -> tuple[LayerMatch, ...]:
    """Return `matches` as a tuple, or raise a one-line `UserError` naming the first match that
    points outside 0..student_layers or 0..teacher_layers (0 being the embeddings)."""
    matches = tuple(matches)
    for index, match in enumerate(matches):
        for side, layer, depth in (("student", match.student, student_layers),
                                   ("teacher", match.teacher, teacher_layers)):
            if not 0 <= layer <= depth:
                raise UserError(f"layer match {index} ({match}): {side} layer {layer} is outside the {side}'s "
                                f"layers 0..{depth} (0 = embeddings)")
    return matches


class Projection(nn.Module):
    """A learned map from the student's width to the teacher's (TinyBERT's W_h, Jiao et al. 2020,
    arXiv 1909.10351): x (..., student_width) -> (..., teacher_width). The identity, with no
    parameters, when the widths are equal."""

    def __init__(self, student_width: int, teacher_width: int):
        super().__init__()
        self.student_width, self.teacher_width = student_width, teacher_width
        self.linear = nn.Linear(student_width, teacher_width) if student_width != teacher_width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.linear is None else self.linear(x)  # (..., teacher_width)

    def extra_repr(self) -> str:
        return f"{self.student_width} -> {self.teacher_width}" + (" (identity)" if self.linear is None else "")
