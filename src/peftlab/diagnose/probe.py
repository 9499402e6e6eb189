"""Knowledge already present: a linear probe (logistic regression, scikit-learn) on frozen features.

If a linear classifier on the base model's mean-pooled features already separates the classes, the knowledge
the task needs is in the representation, and a method that trains few parameters has little to add.
``headroom_reached`` = (probe - majority) / (1 - majority): the share of the room above always-guess-the-
majority-class that the frozen features already cover.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 seed: int = 0) -> dict:
    """Fit on train features, score on test; the majority class is the train split's most common label."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    majority = np.bincount(train_y).argmax()
    majority_accuracy = float(np.mean(test_y == majority))
    if len(np.unique(train_y)) < 2:
        accuracy = majority_accuracy
    else:
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        classifier.fit(train_x, train_y)
        accuracy = float(np.mean(classifier.predict(test_x) == test_y))
    headroom = (accuracy - majority_accuracy) / (1 - majority_accuracy) if majority_accuracy < 1 else 0.0
    return {"accuracy": accuracy, "majority_accuracy": majority_accuracy, "headroom_reached": headroom,
            "train_examples": len(train_y), "test_examples": len(test_y)}
