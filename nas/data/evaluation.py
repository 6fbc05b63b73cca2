"""Running a model over a split and scoring it with the task's metrics."""

from __future__ import annotations

import torch

from nas.data import metrics
from nas.data.batching import EncodedSplit, in_row_order, inference_batches, model_inputs, to_device
from nas.data.tasks import Task


@torch.no_grad()
def predict_logits(forward, split: EncodedSplit, batch_size: int, device) -> torch.Tensor:
    """Logits for every row of `split`, in row order. `forward(inputs) -> (B, num_labels)`."""
    outputs, rows = [], []
    for batch in inference_batches(split, batch_size):
        rows.append(batch["index"])
        batch = to_device(batch, device)
        outputs.append(forward(model_inputs(batch)).float().cpu())
    return in_row_order(outputs, rows)


def score(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    if task.is_regression:
        predictions = logits.reshape(-1).numpy()
    else:
        predictions = logits.argmax(-1).numpy()
    return metrics.compute(task.metrics, predictions, labels.numpy())


def hf_forward(model):
    """A Hugging Face classifier as `inputs -> logits`."""
    return lambda inputs: model(**inputs).logits


def evaluate_splits(task: Task, forward, dev_splits: dict, batch_size: int, device, model=None) -> dict:
    """Metrics on the model-selection split ("dev") and, prefixed by their name, on the others (MNLI's mismatched)."""
    if model is not None:
        model.eval()
    results = {}
    for name, split in dev_splits.items():
        scores = score(task, predict_logits(forward, split, batch_size, device), split.labels)
        prefix = "" if name == "dev" else f"{name.removeprefix('dev_')}_"
        results.update({prefix + key: value for key, value in scores.items()})
    return results


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return torch.nn.functional.mse_loss(logits.reshape(-1), labels.float())
    return torch.nn.functional.cross_entropy(logits, labels)
