"""The training data of every student: task rows joined with the cached teacher knowledge.

Search, finetuning and the KD baselines all train on the same thing: tokenised rows (the
training split, optionally the augmented transfer set) with the teacher's logits and probe
logits for each row, looked up by row number so the teacher never runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kd.knowledge import Knowledge
from nas.batching import EncodedSplit, encode
from nas.errors import UserError
from nas.glue_io import TaskData


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


def _targets(knowledge: Knowledge, split: str, rows: int) -> Targets:
    part = knowledge.split(split)
    logits, probe_logits = part.rows(list(range(rows)))
    return Targets(logits, probe_logits)


def prepare(data: TaskData, knowledge: Knowledge, tokenizer, max_length: int, use_augmented: bool = True) -> DistillData:
    task = data.task
    if knowledge.task != task.name:
        raise UserError(f"{knowledge.folder}: knowledge is for task {knowledge.task}, not {task.name}")
    knowledge.check_rows("train", len(data.train))
    for name, rows in data.dev.items():
        knowledge.check_rows(name, len(rows))
    labels = knowledge.manifest["inputs"].get("labels")
    if labels and task.labels and list(task.labels) != labels:
        raise UserError(f"{knowledge.folder}: knowledge was made with labels {labels}, the task has {list(task.labels)}")

    examples = list(data.train)
    targets = _targets(knowledge, "train", len(examples))
    if use_augmented and "augmented" in knowledge.manifest["splits"]:
        per_row = knowledge.manifest["inputs"]["augmentation"]["n"]
        augmented = knowledge.augmented_examples()[: per_row * len(examples)]  # only variants of rows in use
        extra = _targets(knowledge, "augmented", len(augmented))
        examples += augmented
        targets = Targets(torch.cat([targets.logits, extra.logits]), torch.cat([targets.probe_logits, extra.probe_logits]))
    train = encode(examples, tokenizer, max_length, task.is_regression)
    dev = {name: encode(rows, tokenizer, max_length, task.is_regression) for name, rows in data.dev.items()}
    return DistillData(train, targets, dev, knowledge.probe_dev_loss, len(data.train))


def teacher_embedding_tables(teacher_dir: str, task) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's word and (learned) position embedding tables, for initialising students."""
    from nas.models import load_classifier

    teacher = load_classifier(str(teacher_dir), task, new_head=False)
    words = teacher.get_input_embeddings().weight.detach().clone()
    positions = getattr(getattr(teacher.base_model, "embeddings", None), "position_embeddings", None)
    return words, (positions.weight.detach().clone() if positions is not None else None)
