"""Evaluation: metrics, prediction over a split, inference latency."""

from peftlab.evaluate.metrics import accuracy, classification_metrics, macro_f1
from peftlab.evaluate.predict import evaluate_split, inference_ms_per_example, predict_logits

__all__ = ["accuracy", "classification_metrics", "evaluate_split", "inference_ms_per_example", "macro_f1", "predict_logits"]
