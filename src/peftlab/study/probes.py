"""Probes: the side measurements taken on a trained run, each writing its own sub-record of the run's record.

A run is built, trained, tested and saved (:mod:`peftlab.study.run`); then each probe measures the trained model:
inference latency, the estimate check (the analytic cost model against the run), the generalization gap (the
metrics on a sample of the run's own training set), forgetting (general text, base against fine-tuned),
robustness. A probe's record has a
``status``: ``ok`` (with its measurements), ``skipped`` (with the ``reason``: the probe does not apply to this task
kind or model, e.g. a model type the estimate does not model) or ``failed`` (with the ``reason``; the traceback is in
OUT/logs/<run>.<probe>.log). :func:`run_probes` catches every probe's errors itself: **a probe can never turn an
ok run into a failed one**. Adding a probe is adding one class to :data:`PROBES`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from peftlab.errors import PeftlabError
from peftlab.estimate import estimate_run
from peftlab.estimate.trace import count_step_flops
from peftlab.evaluate import inference_ms_per_example
from peftlab.evaluate.forgetting import lm_cross_entropy, linear_cka, sentence_features
from peftlab.evaluate.kinds import kind_evaluation
from peftlab.files import short_reason
from peftlab.measure import Phases
from peftlab.measure import release_free_memory
from peftlab.methods import trains
from peftlab.tasks.encode import train_loader
from peftlab.tasks.reference import reference_texts

FLOP_COUNT_ROWS = 4  # rows of the first training batch the FLOP count runs on


@dataclass
class TrainedRun:
    """What a probe sees: the trained model (unwrapped, on the device) and the run around it."""

    model: Any
    method: str
    settings: dict[str, Any]  # the method's settings and learning rate, as recorded in the run's config
    seed: int
    study: Any  # peftlab.study.inputs.Study
    encoded: Any
    device: torch.device
    metrics: dict[str, Any] = field(default_factory=dict)  # the run's test metrics (its record's "metrics")


class ProbeSkipped(Exception):
    """Raised by a probe that does not apply to this run; its message is the record's reason."""


class Probe:
    name: str = ""  # the run record's key, and the timing phase

    def enabled(self, study) -> bool:
        """Whether this study asked for the probe at all (no record is written when it did not)."""
        return True

    def measure(self, run: TrainedRun) -> dict[str, Any]:
        raise NotImplementedError


class LatencyProbe(Probe):
    """Inference time per example on the first test examples (docs/MEASUREMENT.md)."""

    name = "latency"

    def measure(self, run: TrainedRun) -> dict[str, Any]:
        tokenizer = run.study.tokenizer
        return {"inference_ms_per_example": inference_ms_per_example(run.model, run.encoded["test"], tokenizer,
                                                                      run.device)}


class EstimateProbe(Probe):
    """Measured next to estimated: the analytic cost model (`peftlab.estimate`) checked on the run itself.

    Peak memory: the estimate for the run's shape (batch size, longest training example) sits next to the measured
    peak (RSS on CPU, so allocator overhead makes the measurement larger; see docs/ESTIMATE.md). FLOPs: one forward
    and backward on the first rows of the run's first training batch, counted by ``FlopCounterMode``, next to the
    estimate for that shape. A few rows check the cost model as well as the whole batch (a step's FLOPs grow linearly
    with its rows) at a fraction of the time: counting runs every operator through Python (docs/PERFORMANCE.md).
    An encoder-decoder's rows are two sequences (the prompt as ``input_ids``, the answer as ``labels``, padded to its
    own width): its estimate takes the input's length for the encoder and the labels' for the decoder (the peak:
    the longest prompt and the longest answer of the training split). A model type or method the estimate does not
    model is ``skipped`` with the estimate's reason."""

    name = "estimate"

    def measure(self, run: TrainedRun) -> dict[str, Any]:
        if not trains(run.method):
            raise ProbeSkipped(f"{run.method} trains nothing: there is no training step to estimate")
        config, task = run.study.config, run.study.task
        estimate_task = task.kind.estimate_task
        train = run.encoded["train"]
        seq2seq = estimate_task == "seq2seq-lm"
        if seq2seq:  # a row's length counts both sequences; the encoder and the decoder each take their own
            longest = max(len(ids) for ids in train["input_ids"])
            longest_target = max(len(labels) for labels in train["labels"])
        else:
            longest, longest_target = max(train["length"]), None
        device = run.device.type
        try:
            peak = estimate_run(run.model.config, run.method, run.settings, config.batch_size, longest,
                                device=device, task=estimate_task, target_len=longest_target)
        except PeftlabError as error:  # not modelled: a reason, not a failure
            raise ProbeSkipped(str(error)) from None
        batch = next(iter(train_loader(train, run.study.tokenizer, config.batch_size, run.seed)))
        batch = {key: value[:FLOP_COUNT_ROWS].to(run.device) for key, value in batch.items()}
        rows, seq_len = batch["input_ids"].shape
        target_len = batch["labels"].shape[1] if seq2seq else None
        counted = count_step_flops(run.model, batch)
        run.model.eval()
        estimated = estimate_run(run.model.config, run.method, run.settings, rows, seq_len, device=device,
                                 task=estimate_task, target_len=target_len)
        # the shapes: [rows, tokens], an encoder-decoder's [rows, input tokens, target tokens]
        return {
            "peak_memory_bytes": peak["peak_memory_bytes"],
            "peak_memory_shape": [config.batch_size, longest] + ([longest_target] if seq2seq else []),
            "flops_per_step_estimated": estimated["flops_per_step"],
            "flops_per_step_counted": counted,
            "flops_shape": [rows, seq_len] + ([target_len] if seq2seq else []),
            # the estimate's parameter counts, next to the run's cost.trainable_params and cost.total_params
            "trainable_params_estimated": peak["trainable_params"],
            "total_params_estimated": peak["total_params"],
        }


class RobustnessProbe(Probe):
    """Accuracy on the study's perturbed test texts, attack success rates, the robust set (docs/MEASUREMENT.md)."""

    name = "robustness"

    def enabled(self, study) -> bool:
        return study.config.robustness

    def measure(self, run: TrainedRun) -> dict[str, Any]:
        measure = kind_evaluation(run.study.task.kind).robustness
        if run.study.robustness is None or measure is None:
            raise ProbeSkipped(f"not available for task type {run.study.task.kind.name}")
        return measure(run.model, run.study.tokenizer, run.study.robustness, run.device, run.study.task)


class GeneralizationProbe(Probe):
    """Overfitting: the run's quality metrics on a seeded sample of its own training set, as many examples as the
    test set, scored as the test set is; ``gap_points`` = train − test in points (positive: better on what it
    trained on)."""

    name = "generalization"

    def measure(self, run: TrainedRun) -> dict[str, Any]:
        train, test_size = run.encoded["train"], len(run.encoded["test"])
        sample = train.shuffle(seed=run.seed).select(range(min(test_size, len(train))))
        config, task = run.study.config, run.study.task
        scores = kind_evaluation(task.kind).evaluate(run.model, sample, run.study.tokenizer, 2 * config.batch_size,
                                                     run.device, task.num_labels, "train sample")
        keys = [metric.key for metric in task.kind.quality_metrics]
        return {"examples": len(sample), "train": {key: scores[key] for key in [*keys, "loss"] if key in scores},
                "gap_points": {key: 100 * (scores[key] - run.metrics[key]) for key in keys
                               if isinstance(run.metrics.get(key), (int, float))}}


FORGETTING_TEXTS = 64  # general sentences of the reference sample (peftlab.tasks.reference) forgetting is read on


class ForgettingProbe(Probe):
    """How much general ability the run lost (:mod:`peftlab.evaluate.forgetting`): on general English sentences
    the fine-tuned model is compared with its base, loaded once per study and process — linear CKA of the
    representations (1 = unchanged) for every model, and for causal LMs the change of the mean token
    cross-entropy (fine-tuned − base; positive: worse at general text). An encoder's masked-LM loss is not
    measured: the classifier peftlab trains has no MLM head."""

    name = "forgetting"

    def __init__(self):
        self._base: dict[tuple, dict[str, Any]] = {}  # (model path, kind, max length, device) -> base's numbers

    def measure(self, run: TrainedRun) -> dict[str, Any]:
        study, texts = run.study, reference_texts()[:FORGETTING_TEXTS]
        language_model = study.task.kind.estimate_task == "causal-lm"
        base = self.base_numbers(study, texts, language_model, run.device)
        features = sentence_features(run.model, study.tokenizer, texts, study.config.max_length, run.device)
        record: dict[str, Any] = {"texts": len(texts), "cka": linear_cka(base["features"], features)}
        if language_model:
            loss = lm_cross_entropy(run.model, study.tokenizer, texts, study.config.max_length, run.device)
            record.update({"lm_loss_base": base["lm_loss"], "lm_loss": loss, "lm_loss_change": loss - base["lm_loss"]})
        return record

    def base_numbers(self, study, texts: list[str], language_model: bool, device) -> dict[str, Any]:
        key = (study.model_ref.path, study.task.kind.name, study.task.kind.stack, study.config.max_length, str(device))
        if key not in self._base:
            task = study.task
            base = task.kind.load_model(study.model_ref, task.label_names, study.tokenizer.pad_token_id).to(device)
            numbers = {"features": sentence_features(base, study.tokenizer, texts, study.config.max_length, device)}
            if language_model:
                numbers["lm_loss"] = lm_cross_entropy(base, study.tokenizer, texts, study.config.max_length, device)
            del base
            release_free_memory()
            self._base = {key: numbers}  # one study's base at a time
        return self._base[key]


PROBES: tuple[Probe, ...] = (LatencyProbe(), EstimateProbe(), GeneralizationProbe(), ForgettingProbe(),
                             RobustnessProbe())


def guarded(measure: Callable[[], dict[str, Any]], write_log: Callable[[str], None]) -> dict[str, Any]:
    """The probe's record: ``measure()`` with ``status: ok`` (unless it set a status itself), ``skipped`` when it
    raised ProbeSkipped, ``failed`` (and a log of the traceback) when it raised anything else."""
    try:
        record = measure()
    except ProbeSkipped as skipped:
        return {"status": "skipped", "reason": str(skipped)}
    except Exception as error:  # noqa: BLE001 - the trained run and its other measurements stay valid
        write_log(traceback.format_exc())
        return {"status": "failed", "reason": short_reason(error)}
    return {"status": "ok", **record}


def run_probes(run: TrainedRun, phases: Phases, write_log: Callable[[str, str], None],
               probes: tuple[Probe, ...] | None = None) -> dict[str, dict[str, Any]]:
    """{probe name: its record} for every enabled probe (default: :data:`PROBES`); ``write_log(probe name, text)``
    keeps a traceback."""
    records = {}
    for probe in PROBES if probes is None else probes:
        if not probe.enabled(run.study):
            continue
        with phases(probe.name):
            records[probe.name] = guarded(lambda probe=probe: probe.measure(run),
                                          lambda text, probe=probe: write_log(probe.name, text))
    return records
