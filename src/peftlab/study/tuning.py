"""`--tune lr`: a small learning-rate search per method on the validation split, with Optuna's successive halving.

For each method, ``tune_points`` learning rates on a log grid around its default (factors of √10: default, /√10,
×√10, /10, ×10, ...; the default first) are tried in that order with the study's first seed. Each trial trains
for the study's budget and reports its validation score after every evaluation (``--evaluations-per-epoch`` per
epoch) to Optuna; Optuna's SuccessiveHalvingPruner (min resource one evaluation, reduction factor 3) stops a trial
whose score at a rung is not in the top third of the trials that reached it, so weak settings cost about one
evaluation's worth of training. The chosen learning
rate is the completed trial with the best validation accuracy (ties: lower validation loss at that epoch). The
pruner sees the same order: the value reported is the score minus 1e-6 × the validation loss, so trials tied on
accuracy (several stuck at the majority class, common on small budgets) are not all promoted to the next rung.

Trials are rows of the study store (phase ``tune``): on a re-run the finished ones are replayed into a fresh
Optuna study (``add_trial`` with their per-epoch values) so the pruner decides as it would have, and only the
unfinished ones train again (from their start: trials keep no epoch checkpoints).
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Any

import optuna

from peftlab.errors import MethodNotApplicable
from peftlab.files import trial_objective
from peftlab.measure import PeakMemory, release_free_memory
from peftlab.methods import get_method, trains
from peftlab.study.run import build_run
from peftlab.study.runs import RunSpec
from peftlab.train import train
from peftlab.train.checkpoint import load_checkpoint


def learning_rate_grid(default: float, points: int) -> list[float]:
    """``points`` learning rates around ``default`` on a log grid (steps of √10), nearest first."""
    exponents = sorted(range(-(points // 2), points - points // 2), key=lambda k: (abs(k), k))
    return [float(f"{default * 10 ** (k / 2):.3g}") for k in exponents]


def tune_learning_rates(context, store) -> dict[str, dict[str, Any]]:
    """{method: {grid, trials, chosen_learning_rate, seconds}}; trials are stored as they finish."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config, study = context.config, context.study
    results = {}
    for method in study.methods:
        if not trains(method):  # zero-shot: no learning rate to search
            continue
        configured = study.overrides.get(method, {}).get("learning_rate", get_method(method).learning_rate)
        grid = learning_rate_grid(float(configured), config.tune_points)
        optuna_study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.RandomSampler(seed=config.seed),
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
        distribution = optuna.distributions.CategoricalDistribution(grid)
        trials = []
        for learning_rate in grid:
            spec = RunSpec(method, config.seed, learning_rate, phase="tune", primary=False)
            checkpoint = trial_checkpoint(context.out, spec)
            row = store.run(spec.key) if store is not None else None
            if row is not None and row["status"] in ("ok", "pruned", "failed", "refused"):
                record = row["record"]
                optuna_study.add_trial(_replayed(record, distribution))
            else:
                if store is not None:
                    store.start(spec.key, spec.phase, spec.method, spec.seed, spec.learning_rate)
                context.progress.run_started(f"tune {spec.method} lr={spec.learning_rate:.3g}")
                record = run_trial(context, spec, optuna_study, distribution, checkpoint)
                if store is not None:
                    store.finish(spec.key, record, record["seconds"])
            trials.append(record)
            if record["status"] == "refused":  # every rate would be refused: the method does not fit the model
                break
        chosen = choose(trials)
        for trial in trials:  # the chosen trial's checkpoint is its run's; the others are not needed any more
            if trial["learning_rate"] != chosen:
                shutil.rmtree(trial_checkpoint(context.out, RunSpec(method, config.seed, trial["learning_rate"])).parent,
                              ignore_errors=True)
        results[method] = {"grid": grid, "trials": trials, "chosen_learning_rate": chosen,
                           "seconds": sum(trial["seconds"] for trial in trials),
                           "steps": sum(trial.get("steps", 0) for trial in trials)}
    return results


def trial_checkpoint(out, spec: RunSpec):
    """Where a trial trains: the epoch checkpoint of the study's run at that rate (first seed), so that the chosen
    trial's training is its run's and the run only tests, saves and probes what the trial trained."""
    return RunSpec(spec.method, spec.seed, spec.learning_rate, "run", True).checkpoint(out)


def choose(trials: list[dict]) -> float | None:
    complete = [t for t in trials if t["status"] == "ok" and t["validation"]]
    if not complete:
        return None
    best = min(complete, key=lambda t: (-t["best_validation"][trial_objective(t)], t["best_validation"]["loss"]))
    return best["learning_rate"]


def _replayed(record: dict, distribution):
    state = {"ok": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
             "failed": optuna.trial.TrialState.FAIL, "refused": optuna.trial.TrialState.FAIL}[record["status"]]
    key = trial_objective(record)
    value = pruning_value(record["best_validation"], key) if record["status"] == "ok" else None
    return optuna.trial.create_trial(
        params={"learning_rate": record["learning_rate"]}, distributions={"learning_rate": distribution},
        value=value, state=state,
        intermediate_values={index: pruning_value(v, key) for index, v in enumerate(record["validation"], 1)})


def pruning_value(scores: dict, key: str) -> float:
    """What Optuna compares: the score, ties broken by lower validation loss (as :func:`choose` breaks them)."""
    return scores[key] - 1e-6 * scores["loss"]


def run_trial(context, spec: RunSpec, optuna_study, distribution, checkpoint=None) -> dict[str, Any]:
    """Train one trial, reporting each validation pass's score (the task's selection metric) to Optuna; returns
    its record (ok, pruned or failed). With ``checkpoint`` it trains there (:func:`trial_checkpoint`): a trial
    interrupted earlier continues from its last epoch, its passes so far reported to the pruner first."""
    optuna_study.enqueue_trial({"learning_rate": spec.learning_rate})
    trial = optuna_study.ask({"learning_rate": distribution})
    study, accelerator = context.study, context.accelerator
    objective = study.task.selection_metric
    record: dict[str, Any] = {"method": spec.method, "learning_rate": spec.learning_rate, "seed": spec.seed,
                              "objective": objective, "status": "ok", "validation": [], "best_validation": None}

    def report(evaluation: int, scores: dict) -> None:
        record["validation"].append({"evaluation": evaluation, **scores})
        trial.report(pruning_value(scores, objective), evaluation)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after evaluation {evaluation}")

    start = time.perf_counter()
    try:
        saved = load_checkpoint(checkpoint, warn=False)
        for evaluation, scores in enumerate(saved["outcome"]["validation"] if saved else [], 1):
            report(evaluation, scores)  # what the interrupted trial had measured, as the pruner saw it
        with PeakMemory(accelerator.device) as peak:  # kept in the checkpoint: the run that continues it reports it
            model, _, train_config = build_run(study, spec.method, spec, accelerator, len(context.encoded["train"]))
            train(model, context.encoded, study.tokenizer, train_config, accelerator, study.task.num_labels,
                  checkpoint, on_evaluation=report,
                  on_step=context.progress.step if context.progress.shows_steps else None, memory=peak)
    except optuna.TrialPruned:
        record["status"] = "pruned"
    except MethodNotApplicable as error:  # the run itself will be refused with the same reason
        record["status"] = "refused"
        record["reason"] = str(error)
    except Exception as error:  # noqa: BLE001 - a diverging learning rate is a result of the search
        record["status"] = "failed"
        record["reason"] = f"{type(error).__name__}: {str(error).strip()[:200]}"
    finally:
        accelerator.free_memory()
        release_free_memory()
    record["seconds"] = time.perf_counter() - start
    record["evaluations"] = len(record["validation"])
    record["steps"] = max((row.get("step", 0) for row in record["validation"]), default=0)  # steps it trained
    if record["validation"]:
        record["best_validation"] = max(record["validation"], key=lambda v: (v[objective], -v["loss"]))
    state = {"ok": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
             "failed": optuna.trial.TrialState.FAIL, "refused": optuna.trial.TrialState.FAIL}[record["status"]]
    value = pruning_value(record["best_validation"], objective) if state == optuna.trial.TrialState.COMPLETE else None
    if value is not None and math.isfinite(value):
        optuna_study.tell(trial, value)
    else:
        optuna_study.tell(trial, state=state if state != optuna.trial.TrialState.COMPLETE else optuna.trial.TrialState.FAIL)
    return record
