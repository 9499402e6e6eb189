"""`diagnose`: measure the signals of a (model, task) pair and ask the advisor for a recommendation.

The recipe: check and load the inputs exactly as `compare` does (its `prepare_study`), then the cheap signals
(task shape, vocabulary fit, representation shift, LM loss, linear probe on frozen features), then the
low-rank structure of a full fine-tuning update: from a finished `compare` full run when there is one, else a
short full fine-tuning probe of ``probe_steps`` steps. The result is one JSON-able dict, OUT/diagnosis.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator
from accelerate.utils import set_seed

from peftlab.diagnose.features import pooled_features
from peftlab.diagnose.probe import linear_probe, ridge_probe
from peftlab.tasks.reference import reference_texts
from peftlab.diagnose.shift import lm_losses, representation_shift
from peftlab.diagnose.spectrum import summarise_by_type, update_spectra
from peftlab.diagnose.task_shape import task_shape
from peftlab.diagnose.vocabulary import vocabulary_fit
from peftlab.errors import ConfigError
from peftlab.evaluate.kinds import kind_evaluation
from peftlab.measure import Phases
from peftlab.methods import get_method
from peftlab.methods.targets import projection_roles
from peftlab.models import load_config
from peftlab.models.load import head_module_names
from peftlab.options import option
from peftlab.train import TrainConfig, train




@dataclass
class DiagnoseSettings:
    """How much each signal measures (the defaults take minutes on CPU for a MiniLM-sized model)."""

    probe_steps: int = option(100, "Steps of the short full fine-tuning probe whose update spectrum is measured "
                              "(when no full run exists).")
    shift_texts: int = option(200, "Task texts compared with as many reference texts (at most the 208 shipped).")
    lm_texts: int = option(32, "Texts whose LM loss is measured, task and reference each.")
    probe_examples: int = option(2000, "Training examples the linear probe is fitted on (tested on the test split).")

    def check(self) -> None:
        for name in ("probe_steps", "shift_texts", "lm_texts", "probe_examples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.shift_texts < 2:
            raise ConfigError("--shift-texts must be at least 2")


def measure_signals(study, encoded, accelerator: Accelerator, settings: DiagnoseSettings,
                    full_run: Path | None = None) -> dict[str, Any]:
    """Every signal of the issue's list, as a dict (keys: task_shape, vocabulary, shift, probe, spectrum...)."""
    config, task, tokenizer = study.config, study.task, study.tokenizer
    phases = Phases()  # seconds per signal, in signals["seconds"]
    signals: dict[str, Any] = {"task": task.describe()}
    reference = reference_texts()
    texts = _task_texts(task, "train")

    with phases("vocabulary"):
        signals["task_shape"] = task_shape(task, encoded, config.max_length)
        signals["vocabulary"] = {**vocabulary_fit(texts, tokenizer), "reference": vocabulary_fit(reference, tokenizer)}

    with phases("shift"):
        set_seed(config.seed)
        base = task.kind.load_model(study.model_ref, task.label_names, tokenizer.pad_token_id).to(accelerator.device)
        before = {name: p.detach().cpu().clone() for name, p in base.named_parameters()}
        shift_index = _evenly(len(texts), settings.shift_texts)
        features = lambda rows, pairs=None: pooled_features(base, tokenizer, rows, config.max_length, pairs=pairs,  # noqa: E731
                                                            device=accelerator.device)
        task_shift = features([texts[i] for i in shift_index])
        reference_shift = features(reference[: settings.shift_texts])
        signals["shift"] = representation_shift(task_shift, reference_shift)

    with phases("probe"):
        signals["probe"] = _probe(task, features, settings, config.seed)

    with phases("lm_loss"):
        lm_index = _evenly(len(texts), settings.lm_texts)
        signals["shift"].update(lm_losses(study.model_ref, load_config(study.model_ref), tokenizer,
                                          [texts[i] for i in lm_index], reference, config.max_length))

    with phases("spectrum"):
        after, source = _after_weights(study, base, encoded, accelerator, settings, full_run)
        skip = tuple(f"{name}." for name in head_module_names(base))
        layers = update_spectra(before, after, skip, projection_roles(base, head_module_names(base)))
        signals["spectrum"] = summarise_by_type(layers)
        signals["spectrum_source"] = source
        signals["spectrum_layers"] = layers
    signals["seconds"] = phases.seconds
    return signals


def _probe(task, features, settings: DiagnoseSettings, seed: int) -> dict:
    pairs = {s: task.splits[s]["text_pair"] if task.has_text_pair else None for s in ("train", "test")}
    train_index = _evenly(len(task.splits["train"]), settings.probe_examples)
    train = task.splits["train"].select(train_index)
    train_x = features(train["text"], [pairs["train"][i] for i in train_index] if pairs["train"] else None)
    test_x = features(task.splits["test"]["text"], pairs["test"])
    if task.target_scale is not None:  # numeric targets (regression): ridge, against the training mean
        return ridge_probe(train_x, np.asarray(train["label"]), test_x, np.asarray(task.splits["test"]["label"]))
    return linear_probe(train_x, np.asarray(train["label"]), test_x, np.asarray(task.splits["test"]["label"]), seed)


def _after_weights(study, base, encoded, accelerator, settings, full_run: Path | None):
    """(weights after full fine-tuning, where they come from): the compare run's, else a short FFT probe."""
    full = get_method("full")
    if full_run is not None:
        trained = full.load(base, full_run)
        return ({name: p.detach().cpu() for name, p in trained.named_parameters()},
                {"kind": "compare_full_run", "path": str(full_run)})
    config = study.config
    model = full.apply(base, {})
    task = study.task
    train_config = TrainConfig(learning_rate=full.learning_rate, max_steps=settings.probe_steps,
                               batch_size=config.batch_size, seed=config.seed, selection_metric=task.selection_metric,
                               evaluate=kind_evaluation(task.kind).evaluate)
    outcome = train(model, encoded, study.tokenizer, train_config, accelerator, task.num_labels)
    model = accelerator.unwrap_model(model)
    metric = task.selection_metric
    return ({name: p.detach().cpu() for name, p in model.named_parameters()},
            {"kind": "fft_probe", "steps": outcome.steps, "learning_rate": full.learning_rate,
             f"validation_{metric}": outcome.validation[-1][metric] if outcome.validation else None})


def _task_texts(task, split: str) -> list[str]:
    texts = list(task.splits[split]["text"])
    if task.has_text_pair:
        texts += list(task.splits[split]["text_pair"])
    return texts


def _evenly(size: int, count: int) -> list[int]:
    """Up to ``count`` evenly spaced indices into ``range(size)`` (deterministic, spread over the data)."""
    if size <= count:
        return list(range(size))
    return [int(i) for i in np.linspace(0, size - 1, count).round().astype(int)]
