"""Task metrics, written out so they need no scikit-learn or SciPy.

Each function takes predictions and references as sequences and returns a float.
"""

from __future__ import annotations

import math

import numpy as np


def accuracy(predictions, labels) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean()) if len(labels) else 0.0


def f1_binary(predictions, labels, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's MRPC and QQP report it for label 1)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    true_pos = int(((predictions == positive) & (labels == positive)).sum())
    predicted = int((predictions == positive).sum())
    actual = int((labels == positive).sum())
    if true_pos == 0:
        return 0.0
    precision, recall = true_pos / predicted, true_pos / actual
    return 2 * precision * recall / (precision + recall)


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation for binary labels (CoLA); 0 when a marginal is constant."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    tp = float(((predictions == 1) & (labels == 1)).sum())
    tn = float(((predictions == 0) & (labels == 0)).sum())
    fp = float(((predictions == 1) & (labels == 0)).sum())
    fn = float(((predictions == 0) & (labels == 1)).sum())
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def pearson(predictions, labels) -> float:
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / denominator if denominator else 0.0


def _average_ranks(values) -> np.ndarray:
    """Ranks starting at 1, ties sharing the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(predictions, labels) -> float:
    return pearson(_average_ranks(predictions), _average_ranks(labels))


METRICS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "matthews": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names, predictions, labels) -> dict[str, float]:
    return {name: METRICS[name](predictions, labels) for name in names}
