"""Knowledge already present: a linear probe (logistic regression, scikit-learn) on frozen features.

If a linear classifier on the base model's mean-pooled features already separates the classes, the knowledge
the task needs is in the representation, and a method that trains few parameters has little to add.
``headroom_reached`` = (probe - majority) / (1 - majority): the share of the room above always-guess-the-
majority-class that the frozen features already cover.

Regression (:func:`ridge_probe`): ridge regression on the same features instead; the baseline is predicting the
training mean, and ``headroom_reached`` = (MSE of the mean − MSE of the probe) / MSE of the mean, the test R²
against the training mean: the share of the room between the mean and a perfect prediction the features cover.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from peftlab.evaluate.regression import mse, pearson, spearman


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


RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge penalties, chosen by leave-one-out on the training features


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> dict:
    """Fit a ridge regression on train features (standardised; penalty by efficient leave-one-out), score on test:
    Spearman, Pearson, MSE, the training mean's MSE and the share of it the probe removes."""
    train_y, test_y = np.asarray(train_y, dtype=float), np.asarray(test_y, dtype=float)
    regressor = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    regressor.fit(train_x, train_y)
    predicted = regressor.predict(test_x)
    error, mean_error = mse(predicted, test_y), mse(np.full_like(test_y, train_y.mean()), test_y)
    return {"model": "ridge", "alpha": float(regressor[-1].alpha_), "spearman": spearman(predicted, test_y),
            "pearson": pearson(predicted, test_y), "mse": error, "mean_mse": mean_error,
            "headroom_reached": (mean_error - error) / mean_error if mean_error > 0 else 0.0,
            "train_examples": len(train_y), "test_examples": len(test_y)}
