"""The training data of every student: task rows joined with the cached teacher knowledge.

Search, finetuning and the KD baselines all train on the same thing: tokenised rows (the
training split, optionally the augmented transfer set) with the teacher's logits and probe
logits for each row, looked up by row number so the teacher never runs again. The token ids
are the knowledge folder's own (memory-mapped), so nothing is tokenised again either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kd.knowledge import Knowledge
from nas.base.errors import UserError
from nas.data.batching import EncodedSplit, encode, join, labels_tensor
from nas.data.glue_io import TaskData
from nas.data.models import load_classifier
from searchspace.embeddings import teacher_tables


@dataclass
class Targets:
    logits: torch.Tensor  # (N, C) teacher logits, row-aligned with a split
    probe_logits: torch.Tensor  # (N, L+1, C)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits[index], self.probe_logits[index]


@dataclass
class DistillData:
    train: EncodedSplit
    train_targets: Targets
    dev: dict[str, EncodedSplit]
    probe_losses: list[float]  # dev loss of each teacher layer's probe, embedding output first
    original_rows: int  # the first rows of `train` are the task's own; any after them are augmented

    @property
    def copies_per_row(self) -> int:
        """Augmented copies of each task row (0 without them): stored after the task's rows, each
        row's copies together and in row order (`prepare`)."""
        return (len(self.train) - self.original_rows) // self.original_rows

    def source_rows(self, rows) -> np.ndarray:
        """The task row each of `rows` is, or was made from."""
        rows = np.asarray(rows, dtype=np.int64)
        copies = max(1, self.copies_per_row)  # without copies every row is a task row
        return np.where(rows < self.original_rows, rows, (rows - self.original_rows) // copies)

    def variants_of(self, task_rows) -> np.ndarray:
        """The rows of the augmented copies made from `task_rows`, in that order."""
        task_rows = np.asarray(task_rows, dtype=np.int64)
        copies = self.copies_per_row
        return (self.original_rows + task_rows[:, None] * copies + np.arange(copies)).ravel()

    def held_out(self, train_rows, held_out_rows, variants: bool = False) -> DistillData:
        """Training rows `train_rows` (task rows, or augmented copies of them) scored on task rows
        `held_out_rows` of the training split instead of dev: model choices made inside a search
        never read dev. No training row is, or was made from, a held-out row. With `variants`, the
        held-out rows' augmented copies are scored too, as split "variants" (teacher-labelled)."""
        train_rows, held_out_rows = np.asarray(train_rows, dtype=np.int64), np.asarray(held_out_rows, dtype=np.int64)
        if (held_out_rows >= self.original_rows).any() or np.isin(self.source_rows(train_rows), held_out_rows).any():
            raise ValueError("held_out: held-out rows must be task rows, none of them trained on or made into a training row")
        train_rows = np.concatenate([train_rows[train_rows < self.original_rows], train_rows[train_rows >= self.original_rows]])
        dev = {"dev": self.train.take(held_out_rows)}
        if variants and self.copies_per_row:
            dev["variants"] = self.train.take(self.variants_of(held_out_rows))
        return DistillData(self.train.take(train_rows), Targets(*self.train_targets.rows(torch.from_numpy(train_rows))),
                           dev, self.probe_losses, int((train_rows < self.original_rows).sum()))


def _targets(knowledge: Knowledge, split: str, rows: int) -> Targets:
    part = knowledge.split(split)
    # A slice of the memory-mapped arrays: one contiguous read, not a gather of `rows` indices.
    as_tensor = lambda array: torch.from_numpy(np.asarray(array[:rows], dtype=np.float32))  # noqa: E731
    return Targets(as_tensor(part.logits), as_tensor(part.probe_logits))


def _first_copies(split: EncodedSplit, targets: Targets, variants: int, copies: int) -> tuple[EncodedSplit, Targets]:
    """The first `copies` of each row's `variants` augmented copies (the knowledge stores them row by row)."""
    rows = len(split) // variants
    index = (np.arange(rows)[:, None] * variants + np.arange(copies)).ravel()
    return split.take(index), Targets(*targets.rows(torch.from_numpy(index)))


def prepare(data: TaskData, knowledge: Knowledge, tokenizer, max_length: int, use_augmented: bool = True,
            copies: int = 0) -> DistillData:
    """Join the rows with their targets. Token ids come from the knowledge folder when it has them
    at `max_length` (the teacher's tokenizer made them); only another length tokenises again.
    `copies` (setting `augmented_copies`): how many of each row's augmented copies to train on, 0 for
    all the folder has, so one 20x folder also serves a 5x or 1x transfer set."""
    task = data.task
    if knowledge.task != task.name:
        raise UserError(f"{knowledge.folder}: knowledge is for task {knowledge.task}, not {task.name}")
    knowledge.check_rows("train", len(data.train))
    for name, rows in data.dev.items():
        knowledge.check_rows(name, len(rows))
    labels = knowledge.manifest.inputs.labels
    if labels and task.labels and tuple(task.labels) != labels:
        raise UserError(f"{knowledge.folder}: knowledge was made with labels {list(labels)}, the task has {list(task.labels)}")

    stored = max_length == knowledge.max_length
    regression = task.is_regression

    def tokens(name: str, examples, gold: torch.Tensor) -> EncodedSplit:
        if stored:
            return knowledge.encoded(name, len(examples), gold)
        return encode(examples, tokenizer, max_length, regression)

    rows = len(data.train)
    train = tokens("train", data.train, labels_tensor(data.train, regression))
    targets = _targets(knowledge, "train", rows)
    variants = knowledge.manifest.inputs.variants
    if copies < 0 or (copies > variants and use_augmented):
        raise UserError(f"setting 'augmented_copies': expected 0 (all) to {variants} (the copies per row in "
                        f"{knowledge.folder}), got {copies}")
    if use_augmented and "augmented" in knowledge.manifest.splits:
        extra_rows = variants * rows  # only variants of rows in use
        extra_labels = knowledge.teacher_labels("augmented", extra_rows, regression)
        if stored:
            augmented = knowledge.encoded("augmented", extra_rows, extra_labels)
        else:
            augmented = encode(knowledge.augmented_examples()[:extra_rows], tokenizer, max_length, regression)
        extra = _targets(knowledge, "augmented", extra_rows)
        if 0 < copies < variants:
            augmented, extra = _first_copies(augmented, extra, variants, copies)
        train = join([train, augmented])
        targets = Targets(torch.cat([targets.logits, extra.logits]), torch.cat([targets.probe_logits, extra.probe_logits]))
    dev = {name: tokens(name, examples, labels_tensor(examples, regression)) for name, examples in data.dev.items()}
    return DistillData(train, targets, dev, knowledge.probe_dev_loss, len(data.train))


def teacher_embedding_tables(teacher_dir: str, task) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The embedding tables (`searchspace.embeddings.teacher_tables`) of the teacher saved in `teacher_dir`."""
    return teacher_tables(load_classifier(str(teacher_dir), task, new_head=False))
