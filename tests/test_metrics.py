"""GLUE metrics against values worked out by hand (in the comments), never against a library."""

import math

import numpy as np
import pytest

from nas.data import metrics
from nas.data.metrics import METRICS, accuracy, compute, f1_binary, matthews_corrcoef, pearson, spearman
from nas.data.tasks import GLUE_TASKS

# One binary confusion matrix used by several tests:
#                 label 1   label 0
#   predicted 1   tp = 3    fp = 1
#   predicted 0   fn = 2    tn = 2
LABELS = [1, 1, 1, 1, 1, 0, 0, 0]
PREDICTIONS = [1, 1, 1, 0, 0, 1, 0, 0]


def test_accuracy():
    # (tp + tn) / n = (3 + 2) / 8
    assert accuracy(PREDICTIONS, LABELS) == 0.625
    assert accuracy([0, 1, 2], [0, 2, 2]) == pytest.approx(2 / 3)  # three classes (MNLI)
    assert accuracy(np.array([2, 0]), np.array([2, 0])) == 1.0
    assert accuracy([], []) == 0.0


def test_f1_of_the_positive_class():
    # precision 3/4, recall 3/5: F1 = 2 * 3/4 * 3/5 / (3/4 + 3/5) = 0.9 / 1.35 = 2/3 = 2tp / (2tp + fp + fn)
    assert f1_binary(PREDICTIONS, LABELS) == pytest.approx(0.6666666667, abs=1e-9)
    # Class 0 as positive: tp = 2, fp = 2 (the two fn above), fn = 1: 2*2 / (2*2 + 2 + 1) = 4/7
    assert f1_binary(PREDICTIONS, LABELS, positive=0) == pytest.approx(0.5714285714, abs=1e-9)
    assert f1_binary([1, 0, 1], [1, 0, 1]) == 1.0


@pytest.mark.parametrize(
    "predictions, labels",
    [
        ([0, 0, 1], [1, 1, 0]),  # predicts positives, none right
        ([0, 0, 0], [1, 0, 0]),  # predicts no positive at all (precision would be 0/0)
        ([0, 0, 0], [0, 0, 0]),  # no positive anywhere
    ],
)
def test_f1_without_true_positives_is_zero(predictions, labels):
    assert f1_binary(predictions, labels) == 0.0


def test_matthews_by_hand():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (3*2 - 1*2) / sqrt(4*5*3*4)
    #   = 4 / sqrt(240) = 1 / sqrt(15) = 0.2581988897...
    assert matthews_corrcoef(PREDICTIONS, LABELS) == pytest.approx(0.2581988897, abs=1e-9)
    # Symmetric in predictions and labels: swapping them swaps fp and fn only.
    assert matthews_corrcoef(LABELS, PREDICTIONS) == pytest.approx(0.2581988897, abs=1e-9)


def test_matthews_extremes():
    assert matthews_corrcoef([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == -1.0
    # tp=1 tn=1 fp=1 fn=1: (1 - 1) / 2 = 0, a coin flip
    assert matthews_corrcoef([1, 0, 1, 0], [1, 1, 0, 0]) == 0.0


@pytest.mark.parametrize(
    "predictions, labels",
    [
        ([1, 1, 1, 1], [1, 0, 1, 0]),  # constant prediction: tn + fn = 0
        ([0, 0, 0, 0], [1, 0, 1, 0]),  # tp + fp = 0
        ([1, 0, 1, 0], [0, 0, 0, 0]),  # constant label: tp + fn = 0
        ([1, 1], [1, 1]),  # everything one class, even when "right"
    ],
)
def test_matthews_zero_denominator_is_zero(predictions, labels):
    value = matthews_corrcoef(predictions, labels)
    assert value == 0.0 and not math.isnan(value)


def test_pearson_by_hand():
    # x = 1 2 3 4 (mean 2.5), y = 2 4 5 9 (mean 5)
    # dx = -1.5 -0.5 0.5 1.5, dy = -3 -1 0 4
    # sum dx*dy = 4.5 + 0.5 + 0 + 6 = 11, sum dx^2 = 5, sum dy^2 = 26
    # r = 11 / sqrt(5 * 26) = 11 / sqrt(130) = 0.9647638212...
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(0.9647638212, abs=1e-9)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Invariant to shifting and scaling either side (x * 10, y / 2 - 3).
    assert pearson([10, 20, 30, 40], [-2, -1, -0.5, 1.5]) == pytest.approx(pearson([1, 2, 3, 4], [2, 4, 5, 9]))


def test_pearson_of_a_constant_is_zero():
    assert pearson([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
    assert pearson([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0


def test_average_ranks_share_ties():
    # sorted: 1 (rank 1), 2 (rank 2), 5 5 5 (ranks 3, 4, 5 -> 4 each)
    assert metrics._average_ranks([5, 1, 5, 5, 2]).tolist() == [4.0, 1.0, 4.0, 4.0, 2.0]
    assert metrics._average_ranks([0.5, 0.5]).tolist() == [1.5, 1.5]
    assert metrics._average_ranks([3.0, 2.0, 1.0]).tolist() == [3.0, 2.0, 1.0]


def test_spearman_with_ties_by_hand():
    # x = 10 20 20 30 -> ranks 1 2.5 2.5 4;   y = 1 3 2 4 -> ranks 1 3 2 4 (both mean 2.5)
    # dx = -1.5 0 0 1.5, dy = -1.5 0.5 -0.5 1.5
    # sum dx*dy = 2.25 + 2.25 = 4.5, sum dx^2 = 4.5, sum dy^2 = 5
    # rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10) = 0.9486832981...
    assert spearman([10, 20, 20, 30], [1, 3, 2, 4]) == pytest.approx(0.9486832981, abs=1e-9)
    # Ties on both sides: x = 1 1 2 2 -> 1.5 1.5 3.5 3.5, y = 1 2 2 3 -> 1 2.5 2.5 4
    # dx = -1 -1 1 1, dy = -1.5 0 0 1.5: 3 / sqrt(4 * 4.5) = 1 / sqrt(2) = 0.7071067812...
    assert spearman([1, 1, 2, 2], [1, 2, 2, 3]) == pytest.approx(0.7071067812, abs=1e-9)


def test_spearman_only_sees_order():
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    # ranks 1 3 2 vs 2 1 3: dx = -1 1 0, dy = 0 -1 1: -1 / sqrt(2 * 2) = -0.5
    assert spearman([0.1, 0.4, 0.2], [20, 10, 30]) == pytest.approx(-0.5)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_compute_names_and_order():
    scores = compute(("f1", "accuracy"), np.array(PREDICTIONS), np.array(LABELS))
    assert list(scores) == ["f1", "accuracy"]
    assert scores["f1"] == pytest.approx(2 / 3) and scores["accuracy"] == 0.625
    assert all(isinstance(value, float) for value in scores.values())
    assert compute((), PREDICTIONS, LABELS) == {}


@pytest.mark.parametrize("name", sorted(GLUE_TASKS))
def test_every_task_metric_exists_and_is_one_when_perfect(name):
    task = GLUE_TASKS[name]
    assert set(task.metrics) <= set(METRICS)
    if task.is_regression:
        labels = np.array([0.0, 1.2, 3.4, 5.0, 2.5])
    else:
        labels = np.arange(8) % task.num_labels
    scores = compute(task.metrics, labels, labels)
    assert list(scores) == list(task.metrics)
    assert scores == pytest.approx({metric: 1.0 for metric in task.metrics})
