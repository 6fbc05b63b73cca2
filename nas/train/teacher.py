"""`nas teacher`: fine-tune any Hugging Face backbone on a task and save it as the teacher."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from nas.base.run_info import provenance, tensorboard_writer
from nas.data.batching import batches, encode, model_inputs, to_device
from nas.data.evaluation import evaluate_splits, hf_forward, task_loss
from nas.data.glue_io import TaskData
from nas.data.model_metrics import METRICS, TeacherMetrics
from nas.data.models import count_parameters, load_classifier, load_tokenizer, resolve_model
from nas.data.tasks import default_max_length
from nas.train.loop import Hooks, linear_warmup_decay, train_loop
from nas.train.stage_checkpoint import EpochCheckpoint


@dataclass(frozen=True)
class TeacherConfig:
    model: str = "minilm"
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 0  # 0: the task's default (64 for one sentence, 128 for pairs)
    seed: int = 42


def train_teacher(data: TaskData, config: TeacherConfig, out, device, checkpoint=None) -> TeacherMetrics:
    """Fine-tune, keep the best epoch on dev, and write a model folder with metrics.json into `out`.

    `checkpoint`: a file for epoch checkpoints (`nas run`), from which a stopped run continues."""
    torch.manual_seed(config.seed)
    task = data.task
    source = resolve_model(config.model)
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, task, new_head=True).to(device)
    max_length = config.max_length or default_max_length(task)
    train = encode(data.train, tokenizer, max_length, task.is_regression)
    dev = {name: encode(rows, tokenizer, max_length, task.is_regression) for name, rows in data.dev.items()}

    no_decay = ("bias", "LayerNorm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    steps_per_epoch = -(-len(train) // config.batch_size)
    scheduler = linear_warmup_decay(optimizer, steps_per_epoch * config.epochs, config.warmup_ratio)
    writer = tensorboard_writer(out / "tensorboard")
    forward = hf_forward(model)
    resume = None
    if checkpoint is not None:
        settings = {"config": config.__dict__, "source": source, "train_rows": len(train), "max_length": max_length}
        resume = EpochCheckpoint(checkpoint, model, optimizer, scheduler, settings)
    resumed_state = resume.restore() if resume else None

    def loss(batch):
        batch = to_device(batch, device)
        value = task_loss(model(**model_inputs(batch)).logits, batch["labels"], task.is_regression)
        return value, {"task": value.item()}

    def save_best(state, metrics):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        if resume:
            resume.note_best()

    hooks = Hooks(
        loss=loss,
        epoch_batches=lambda epoch: list(batches(train, config.batch_size, config.seed, epoch)),
        evaluate=lambda state: evaluate_splits(task, forward, dev, config.eval_batch_size, device, model),
        on_best=save_best,
        checkpoint=resume.save if resume else None,
    )
    started = time.perf_counter()
    state = train_loop(
        model=model, optimizer=optimizer, scheduler=scheduler, hooks=hooks, epochs=config.epochs,
        primary_metric=task.primary_metric, writer=writer, description=f"teacher {task.name}", state=resumed_state,
    )
    if resume:  # a resumed run's output folder is new: write the best epoch's weights, whenever it was
        resume.load_best()
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    writer.close()
    result = TeacherMetrics(
        task=task.name,
        metrics=state.history[state.best_epoch],
        primary_metric=task.primary_metric,
        best_epoch=state.best_epoch + 1,
        history=state.history,
        train_seconds=round(time.perf_counter() - started, 1),
        params=count_parameters(model),
        train_rows=len(train),
        dev_rows={name: len(split) for name, split in dev.items()},
        max_length=max_length,
        source_model=source,
        config=config.__dict__,
        provenance=provenance(),
    )
    result.save(out / METRICS)
    return result
