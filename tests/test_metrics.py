"""Accuracy and macro-F1 against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peftlab.evaluate import accuracy, classification_metrics, macro_f1


def arrays(predicted, true):
    return np.asarray(predicted), np.asarray(true)


def test_accuracy_hand_computed():
    assert accuracy(*arrays([0, 0, 1, 1], [0, 1, 1, 1])) == 0.75
    assert accuracy(*arrays([2, 1, 0], [2, 1, 0])) == 1.0
    assert accuracy(*arrays([1, 1, 1, 1, 1], [0, 0, 0, 0, 1])) == pytest.approx(0.2)
    assert math.isnan(accuracy(*arrays([], [])))


def test_macro_f1_binary_hand_computed():
    # class 0: TP 1, predicted 2, true 1 -> F1 = 2*1/(2+1) = 2/3
    # class 1: TP 2, predicted 2, true 3 -> F1 = 2*2/(2+3) = 0.8
    assert macro_f1(*arrays([0, 0, 1, 1], [0, 1, 1, 1]), num_labels=2) == pytest.approx((2 / 3 + 0.8) / 2)


def test_macro_f1_three_classes_hand_computed():
    predicted, true = arrays([0, 1, 2, 2, 1, 0], [0, 1, 1, 2, 2, 2])
    # class 0: TP 1, pred 2, true 1 -> 2/3; class 1: TP 1, pred 2, true 2 -> 1/2; class 2: TP 1, pred 2, true 3 -> 2/5
    assert macro_f1(predicted, true, num_labels=3) == pytest.approx((2 / 3 + 1 / 2 + 2 / 5) / 3)
    assert accuracy(predicted, true) == pytest.approx(3 / 6)


def test_class_absent_from_both_is_ignored():
    predicted, true = arrays([0, 0, 1, 1], [0, 1, 1, 1])
    with_absent = macro_f1(predicted, true, num_labels=4)  # classes 2 and 3 never occur
    assert with_absent == pytest.approx((2 / 3 + 0.8) / 2)
    assert with_absent == macro_f1(predicted, true, num_labels=2)


def test_class_only_predicted_or_only_true_counts_as_zero():
    # class 2 is predicted once but never true: F1 0, and it is counted
    predicted, true = arrays([0, 1, 2], [0, 1, 1])
    # class 0: 2*1/(1+1) = 1; class 1: 2*1/(1+2) = 2/3; class 2: 0
    assert macro_f1(predicted, true, num_labels=3) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # class 2 is true once but never predicted: F1 0, and it is counted
    assert macro_f1(*arrays([0, 1, 1], [0, 1, 2]), num_labels=3) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_perfect_and_all_wrong():
    assert macro_f1(*arrays([0, 1, 2, 1], [0, 1, 2, 1]), num_labels=3) == 1.0
    assert macro_f1(*arrays([1, 0, 1, 0], [0, 1, 0, 1]), num_labels=2) == 0.0


def test_classification_metrics_from_logits():
    logits = np.array([[2.0, -1.0], [0.5, 0.1], [-3.0, 3.0], [0.0, 1.0]])  # argmax: 0, 0, 1, 1
    true = np.array([0, 1, 1, 1])
    metrics = classification_metrics(logits, true, num_labels=2)
    assert metrics == {"accuracy": 0.75, "macro_f1": pytest.approx((2 / 3 + 0.8) / 2), "correct": "1011"}
    assert all(isinstance(v, float) for key, v in metrics.items() if key != "correct")
