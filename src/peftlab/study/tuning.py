"""The learning-rate race (on by default; `--no-tune` turns it off): a few rates per method, raced on the validation
split with Optuna's successive halving, at about the cost of one run.

For each method, ``tune_points`` learning rates on a log grid around its default (factors of √10: default, /√10,
×√10, /10, ×10, ...; the default first), each a trial with the study's first seed and the study's whole budget
(the same schedule as the run). The trials advance **together, rung by rung**: every trial still in the race
trains to the rung's validation pass (1, 3, 9, ... passes: Optuna's SuccessiveHalvingPruner with min resource one
pass and reduction factor 3; ``--evaluations-per-epoch`` passes per epoch), pausing there with its checkpoint
(mid-epoch if need be; :func:`peftlab.train.train`'s ``pause_after``), and reports its score. Then the pruner is
asked about each trial, best score first, so that it ranks every trial against all those that reached the rung
(Optuna's pruner is asynchronous: asked in arrival order it would promote whichever trial came first); it
promotes the top third (at least the best one) and prunes the others. The survivors continue from their
checkpoints to the next rung; the last one trains to the end of the budget, and that training is the method's
run (the run continues from the trial's checkpoint and only tests, saves and probes it). With three rates and
nine passes the race costs the run plus two ninths of a run.

The chosen learning rate is the completed trial with the best validation score (ties: lower validation loss). The
value reported to the pruner is the score minus 1e-6 × the validation loss, so trials tied on accuracy (several
stuck at the majority class, common on small budgets) are ranked by their loss. A trial whose loss diverges is
``failed`` and out of the race; a method that does not apply to the model is ``refused`` once.

Trials are rows of the study store (phase ``tune``), stored as they are pruned or finish. A re-run replays the race
from what is known: a stored trial's scores, and an unfinished trial's scores so far from its checkpoint; only the
training a trial had not done yet runs, and the same scores give the same decisions.
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
from peftlab.study.run import build_run, total_steps
from peftlab.study.runs import RunSpec
from peftlab.train import train
from peftlab.train.checkpoint import load_checkpoint
from peftlab.train.trainer import evaluation_steps

REDUCTION_FACTOR = 3
FINISHED_TRIAL = ("ok", "pruned", "failed", "refused")


def learning_rate_grid(default: float, points: int) -> list[float]:
    """``points`` learning rates around ``default`` on a log grid (steps of √10), nearest first."""
    exponents = sorted(range(-(points // 2), points - points // 2), key=lambda k: (abs(k), k))
    return [float(f"{default * 10 ** (k / 2):.3g}") for k in exponents]


def tune_learning_rates(context, store) -> dict[str, dict[str, Any]]:
    """{method: {grid, trials, chosen_learning_rate, seconds, steps, rungs}}; trials are stored as they end."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config, study = context.config, context.study
    results = {}
    for method in study.methods:
        if not trains(method):  # zero-shot: no learning rate to search
            continue
        configured = study.overrides.get(method, {}).get("learning_rate", get_method(method).learning_rate)
        grid = learning_rate_grid(float(configured), config.tune_points)
        trials = race(context, store, method, grid)
        chosen = choose(trials)
        for trial in trials:  # the chosen trial's checkpoint is its run's; the others are not needed any more
            if trial["learning_rate"] != chosen:
                shutil.rmtree(trial_checkpoint(context.out, RunSpec(method, config.seed, trial["learning_rate"])).parent,
                              ignore_errors=True)
        results[method] = {"grid": grid, "trials": trials, "chosen_learning_rate": chosen,
                           "rungs": rung_points(context),
                           "seconds": sum(trial["seconds"] for trial in trials),
                           "steps": sum(trial.get("steps", 0) for trial in trials)}
    return results


def rung_points(context) -> list[int]:
    """The validation passes at which the race decides: 1, 3, 9, ... before a run's last pass."""
    config = context.config
    steps_per_epoch = max(1, math.ceil(len(context.encoded["train"]) / config.batch_size))
    passes = len(evaluation_steps(steps_per_epoch, total_steps(config, len(context.encoded["train"])),
                                  config.evaluations_per_epoch))
    points, rung = [], 1
    while rung < passes:
        points.append(rung)
        rung *= REDUCTION_FACTOR
    return points


def race(context, store, method: str, grid: list[float]) -> list[dict[str, Any]]:
    """The trials of one method's race, in grid order, each ended: ok (trained to the end), pruned, failed or
    refused."""
    config = context.config
    optuna_study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=config.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION_FACTOR))
    distribution = optuna.distributions.CategoricalDistribution(grid)
    entries = []
    for learning_rate in grid:
        spec = RunSpec(method, config.seed, learning_rate, phase="tune", primary=False)
        row = store.run(spec.key) if store is not None else None
        stored = row["record"] if row is not None and row["status"] in FINISHED_TRIAL else None
        optuna_study.enqueue_trial({"learning_rate": learning_rate})
        trial = optuna_study.ask({"learning_rate": distribution})
        entry = {"spec": spec, "trial": trial, "stored": stored, "reported": 0,
                 "record": stored or _new_record(spec, context.study.task.selection_metric, trial_checkpoint(
                     context.out, spec))}
        entries.append(entry)
        if stored is not None and stored["status"] == "refused":  # the method does not fit the model: no race
            return [stored]
    alive = list(entries)
    for pause in [*rung_points(context), None]:  # None: the survivors train to the end of the budget
        for entry in alive:
            _advance(context, store, entry, pause)
            if entry["record"]["status"] == "refused":
                return [entry["record"]]
        alive = [entry for entry in alive if entry["record"]["status"] not in ("failed", "refused")]
        for entry in alive:  # what the trial measured up to here, as the pruner sees it
            _report(entry, pause)
        if pause is None:
            break
        best_first = sorted(alive, key=lambda entry: -_value(entry["record"], pause))
        for entry in best_first:  # a trial stored as pruned was pruned here before: the same scores, the same call
            if entry["trial"].should_prune() or entry["record"]["status"] == "pruned":
                _end(store, entry, "pruned", optuna_study)
        alive = [entry for entry in alive if entry["record"]["status"] != "pruned"]
    for entry in alive:
        _end(store, entry, "ok", optuna_study)
    for entry in entries:
        if entry["record"]["status"] == "failed" and entry["stored"] is None:
            _end(store, entry, "failed", optuna_study)
    return [entry["record"] for entry in entries]


def _new_record(spec: RunSpec, objective: str, checkpoint) -> dict[str, Any]:
    """A trial's record; an unfinished trial's passes so far come from its checkpoint."""
    saved = load_checkpoint(checkpoint, warn=False)
    return {"method": spec.method, "learning_rate": spec.learning_rate, "seed": spec.seed, "objective": objective,
            "status": "running", "validation": list(saved["outcome"]["validation"]) if saved else [],
            "stopped": saved["outcome"].get("stopped") if saved else None, "best_validation": None, "seconds": 0.0}


def _advance(context, store, entry: dict, pause: int | None) -> None:
    """Train the trial to validation pass ``pause`` (None: to the end of its budget), unless it has already."""
    record, spec = entry["record"], entry["spec"]
    if record["status"] in FINISHED_TRIAL or record.get("stopped") or (
            pause is not None and len(record["validation"]) >= pause):
        return  # done, ended by early stopping, or already at that pass
    if store is not None and not entry.get("started"):  # once per invocation: a resumed trial counts an attempt
        store.start(spec.key, spec.phase, spec.method, spec.seed, spec.learning_rate)
        entry["started"] = True
    study, accelerator = context.study, context.accelerator
    context.progress.run_started(f"tune {spec.method} lr={spec.learning_rate:.3g}"
                                 + (f" to pass {pause}" if pause is not None else " to the end"))
    checkpoint = trial_checkpoint(context.out, spec)
    start = time.perf_counter()
    try:
        with PeakMemory(accelerator.device) as peak:  # kept in the checkpoint: the run that continues it reports it
            model, _, train_config = build_run(study, spec.method, spec, accelerator, len(context.encoded["train"]))
            outcome = train(model, context.encoded, study.tokenizer, train_config, accelerator, study.task.num_labels,
                            checkpoint, on_step=context.progress.step if context.progress.shows_steps else None,
                            memory=peak, pause_after=pause)
        record["validation"] = list(outcome.validation)
        record["stopped"] = outcome.stopped
    except MethodNotApplicable as error:  # the run itself will be refused with the same reason
        record.update(status="refused", reason=str(error))
        if store is not None:
            store.finish(spec.key, _finished(record), 0.0)
    except Exception as error:  # noqa: BLE001 - a diverging learning rate is a result of the search
        record.update(status="failed", reason=f"{type(error).__name__}: {str(error).strip()[:200]}")
    finally:
        accelerator.free_memory()
        release_free_memory()
        record["seconds"] += time.perf_counter() - start


def _report(entry: dict, pause: int | None) -> None:
    """Report the trial's passes not reported yet to its Optuna trial (step = the pass's number)."""
    record = entry["record"]
    passes = record["validation"] if pause is None else record["validation"][:pause]
    for number, scores in enumerate(passes[entry["reported"]:], entry["reported"] + 1):
        entry["trial"].report(pruning_value(scores, record["objective"]), number)
    entry["reported"] = max(entry["reported"], len(passes))


def _value(record: dict, pause: int) -> float:
    """The trial's score at pass ``pause``, or at its last pass when early stopping ended it before."""
    return pruning_value(record["validation"][min(pause, len(record["validation"])) - 1], record["objective"])


def _end(store, entry: dict, status: str, optuna_study) -> None:
    """Close the trial (in Optuna and, unless it was stored already, in the store) as ``status``."""
    record, trial = entry["record"], entry["trial"]
    if record["status"] not in FINISHED_TRIAL:
        record["status"] = status
    _finished(record)
    state = {"ok": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}.get(
        record["status"], optuna.trial.TrialState.FAIL)
    value = pruning_value(record["best_validation"], record["objective"]) \
        if state == optuna.trial.TrialState.COMPLETE and record["best_validation"] else None
    if value is not None and math.isfinite(value):
        optuna_study.tell(trial, value)
    else:
        optuna_study.tell(trial, state=state if state != optuna.trial.TrialState.COMPLETE
                          else optuna.trial.TrialState.FAIL)
    if store is not None and entry["stored"] is None:
        store.finish(entry["spec"].key, record, record["seconds"])
        entry["stored"] = record


def _finished(record: dict) -> dict:
    """The record's summary fields from its passes."""
    objective = record["objective"]
    record["evaluations"] = len(record["validation"])
    record["steps"] = max((row.get("step", 0) for row in record["validation"]), default=0)  # steps it trained
    record["best_validation"] = max(record["validation"], key=lambda v: (v[objective], -v["loss"])) \
        if record["validation"] else None
    return record


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


def pruning_value(scores: dict, key: str) -> float:
    """What Optuna compares: the score, ties broken by lower validation loss (as :func:`choose` breaks them)."""
    return scores[key] - 1e-6 * scores["loss"]
