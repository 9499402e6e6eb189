"""Inputs for the report tests: a results.json and a diagnosis.json shaped as compare and diagnose write them,
and a hostile dataset whose labels, column names and texts are markup and script."""

from __future__ import annotations

import copy
import random

import pandas as pd

HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)")


def _run(method: str, accuracy: float, trainable: int, total: int, peak: int, seconds: float, checkpoint: int,
         losses: list[float], robustness: bool = True) -> dict:
    run = {
        "method": method, "config": {"learning_rate": 1e-3}, "status": "ok",
        "metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "test_loss": 0.5,
                    "validation_accuracy": accuracy - 0.02, "best_epoch": 2},
        "cost": {"trainable_params": trainable, "total_params": total, "optimizer_state_bytes": 8 * trainable,
                 "peak_memory_bytes": peak, "train_seconds": seconds, "train_tokens": 10_000,
                 "train_tokens_per_second": 10_000 / seconds, "train_steps": len(losses),
                 "checkpoint_bytes": checkpoint, "inference_ms_per_example": 2.5},
        "curve": {"train_loss": losses,
                  "validation": [{"epoch": 1, "accuracy": accuracy - 0.1, "macro_f1": 0.5, "loss": 0.7},
                                 {"epoch": 2, "accuracy": accuracy - 0.02, "macro_f1": 0.6, "loss": 0.6}]},
        "estimate": {"peak_memory_bytes": peak // 2, "flops_per_step_estimated": 2e9, "flops_per_step_counted": 2e9},
        "artifact": f"runs/{method}",
        "generalization": {"status": "ok", "examples": 20,
                           "train": {"accuracy": min(1.0, accuracy + 0.1), "macro_f1": accuracy, "loss": 0.3},
                           "gap_points": {"accuracy": 100 * (min(1.0, accuracy + 0.1) - accuracy), "macro_f1": 1.0}},
        "forgetting": {"status": "ok", "texts": 64, "cka": 0.5 if method == "full" else 0.9},
    }
    if robustness:
        run["robustness"] = {
            "examples": 100, "severity": 0.2, "clean_accuracy": accuracy, "clean_ci95": [accuracy - 0.05, accuracy + 0.04],
            "perturbed_accuracy": accuracy - 0.05, "perturbed_ci95": [accuracy - 0.09, accuracy - 0.01],
            "drop_points": 5.0,
            "families": {family: {"accuracy": accuracy - 0.04, "ci95": [accuracy - 0.08, accuracy], "drop_points": 4.0}
                         for family in ("char", "word", "noise", "distractor")},
            "attacks": {attack: {"success_rate": rate, "ci95": [rate / 2, min(1, rate * 1.5)], "query_budget": 100,
                                 "examples": 20, "attacked": 16, "succeeded": int(16 * rate)}
                        for attack, rate in (("word_substitution", 0.25), ("char_edit", 0.5))},
        }
    return run


def results_json(model: str = "tiny-bert", labels=("neg", "pos"), text_column: str = "text",
                 label_column: str = "label", failed_reason: str = "RuntimeError: diverged (loss nan)") -> dict:
    """Three finished runs (full, lora, head), one failed (ia3), every record field the report reads."""
    losses = [0.7 - 0.002 * step for step in range(60)]
    return copy.deepcopy({
        "study": {
            "model": model, "model_path": f"/models/{model}", "data": "data.csv", "subset": None, "split": None,
            "dataset_sha256": "ab" * 32,
            "task": {"name": "data", "num_labels": len(labels), "label_names": list(labels),
                     "sizes": {"train": 80, "validation": 20, "test": 20},
                     "columns": {"text": text_column, "text_pair": None, "label": label_column}},
            "seed": 0, "budget": {"epochs": 2, "max_steps": None, "batch_size": 8, "max_length": 64,
                                  "max_train_examples": 2000, "max_eval_examples": 1000},
            "robustness": {"settings": {"perturb_examples": 100, "severity": 0.2}},
            "methods": ["full", "lora", "head", "ia3"],
            "versions": {"python": "3.11", "torch": "2.13.0+cpu"},
            "hardware": {"device": "cpu", "cpu_cores": 2, "memory_bytes": 25_000_000_000},
            "started_at": "2026-01-01T00:00:00+00:00",
            "command": f"peftlab compare --model {model} --data data.csv --out runs/x",
        },
        "runs": [
            _run("full", 0.82, 1_000_000, 1_000_000, 1_400_000_000, 90.0, 4_000_000, losses),
            _run("lora", 0.80, 20_000, 1_020_000, 1_500_000_000, 95.0, 80_000, [x + 0.05 for x in losses]),
            _run("head", 0.65, 800, 1_000_000, 800_000_000, 30.0, 3_200, [x + 0.1 for x in losses]),
            {"method": "ia3", "config": {}, "status": "failed", "reason": failed_reason, "metrics": {}, "cost": {},
             "curve": {}},
        ],
    })


def diagnosis_json(singular_values: bool = True, reasons=("the task is close to pretraining",)) -> dict:
    spectrum = {}
    for k, layer in enumerate(("query", "value", "ffn_in")):
        entry = {"effective_rank_90": 6 + k, "energy_at_rank": {"4": 0.6, "8": 0.8 + 0.01 * k, "16": 0.9, "64": 0.99}}
        if singular_values:
            entry["singular_values"] = [1.0 / (i + 1) ** (1 + 0.2 * k) for i in range(32)]
        spectrum[layer] = entry
    return {
        "vocabulary": {"fertility": 1.3, "unknown_rate": 0.001, "split3_rate": 0.04,
                       "reference": {"fertility": 1.2, "unknown_rate": 0.0, "split3_rate": 0.03}},
        "shift": {"mmd": 0.12, "classifier_auc": 0.61},
        "probe": {"accuracy": 0.74, "majority_accuracy": 0.5},
        "spectrum": spectrum,
        "recommendation": {"decision": "peft", "method": "lora", "rank": 8, "train_embeddings": False,
                           "reasons": list(reasons), "confidence": "medium"},
    }


def hostile_results() -> dict:
    results = results_json(model=HOSTILE[0], labels=HOSTILE, text_column=HOSTILE[1], label_column=HOSTILE[2],
                           failed_reason=f"DataError: bad label {HOSTILE[1]}")
    results["runs"][1]["method"] = HOSTILE[2]
    results["study"]["data"] = HOSTILE[1]
    return results


def hostile_diagnosis() -> dict:
    diagnosis = diagnosis_json(reasons=list(HOSTILE))
    diagnosis["spectrum"][HOSTILE[0]] = diagnosis["spectrum"].pop("query")
    diagnosis["examples"] = [f"a {text} example" for text in HOSTILE]  # example texts as a diagnosis may show them
    return diagnosis


def hostile_csv(path, n: int = 60, seed: int = 0):
    """A learnable two-class CSV whose column names, labels and texts are the HOSTILE strings."""
    rng = random.Random(seed)
    good, bad = ["good", "great", "superb", "lovely"], ["bad", "awful", "poor", "dreadful"]
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        words = rng.sample(good if positive else bad, 2) + ["film", rng.choice(HOSTILE)]
        rng.shuffle(words)
        rows.append({HOSTILE[0]: " ".join(words), HOSTILE[1]: HOSTILE[0] if positive else HOSTILE[2]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
