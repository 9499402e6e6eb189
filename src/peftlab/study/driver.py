"""The driver: plan a study's runs, skip those the store holds as finished, execute the others, store each result.

The driver is the process that called `compare`. It checks the store's identity (a different study in the same
folder is refused), runs the learning-rate race unless --no-tune (:mod:`peftlab.study.tuning`), plans methods × seeds
(× training-set sizes with --train-sizes; :mod:`peftlab.study.runs`) — and, while the verdict asks for them, with
``--max-seeds`` one more seed for the runs that decide it (:func:`more_seeds`) and with ``--until-conclusive`` every
run continued to a longer budget (:func:`more_budget`) —, hands the unfinished runs to a backend (:mod:`peftlab.study.backends`) and writes
each returned record to the store in one transaction, then rewrites results.json from it
(:mod:`peftlab.study.summary`). Before a record is stored it is logged to the ``--report-to`` trackers
(:mod:`peftlab.trackers`; their outcome is the record's ``tracking``, never the run's status). Under a multi-process launch every process trains each run and only the main
process reads and writes the store. The caller holds the study folder's lock (:mod:`peftlab.lock`, taken by
:func:`peftlab.recipe.compare`): one driver per folder. ``--restart`` sets the old store aside first
(:func:`peftlab.study.store.set_aside`); an emptied OUT/checkpoints/ is removed at the end.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from peftlab.errors import ConfigError
from peftlab.files import CHECKPOINTS_DIR, STORE_FILE, STUDY_CONFIG_FILE, jsonable, write_results, write_text_atomic
from peftlab.methods import trains
from peftlab.options import config_yaml
from peftlab.study.backends import backend_runs
from peftlab.study.inputs import RunContext, study_header, study_identity
from peftlab.study.runs import RunSpec, plan_runs
from peftlab.study.store import FINISHED, StudyStore, set_aside
from peftlab.study.summary import derive_results
from peftlab.study.tuning import tune_learning_rates
from peftlab.trackers import StudyInfo, log_run, make_trackers


def run_study(context: RunContext, on_run_done: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Plan, resume and execute the study; returns the results (also written to OUT/results.json)."""
    config, accelerator, out = context.config, context.accelerator, context.out
    main = accelerator.is_main_process
    if accelerator.num_processes > 1 and (config.tune or config.backend != "local" or config.workers > 1
                                          or config.shared_base > 1):
        raise ConfigError("under accelerate launch / torchrun every run uses all processes: add --no-tune (the rate "
                          "race runs in one process) and drop --workers, "
                          "--shared-base and --backend ray there")
    if main and config.restart:
        set_aside(out)
    store = StudyStore(out / STORE_FILE) if main else None
    header = study_header(context.study, accelerator)
    if main:
        store.check_identity(study_identity(context))
        first = store.get("header")
        header["started_at"] = first["started_at"] if first else header["started_at"]
        header["seeds"] = config.seeds
        store.put("header", header)
        write_text_atomic(out / STUDY_CONFIG_FILE, config_yaml(jsonable(config.describe())))  # --config reads it
    accelerator.wait_for_everyone()
    trackers = make_trackers(config.report_to, StudyInfo(out, header["config"], {
        key: header.get(key) for key in ("model", "data", "subset", "dataset_sha256")})) if main else []

    tuning = tune_learning_rates(context, store) if "lr" in config.tune else None
    chosen = {method: result["chosen_learning_rate"] for method, result in (tuning or {}).items()
              if result.get("chosen_learning_rate") is not None}
    specs = plan_runs(context.study.methods, config.seed, config.seeds, chosen, context.study.train_sizes)
    records: dict[str, dict] = {}

    def started(spec: RunSpec) -> None:
        if main:
            store.start(spec.key, spec.phase, spec.method, spec.seed, spec.learning_rate)
        context.progress.run_started(spec.label(config.seeds))

    def execute(planned: list[RunSpec]) -> None:
        """Run the planned runs the store does not hold as finished; store and report each as it finishes."""
        pending = []
        for spec in planned:
            row = store.run(spec.key) if main else None
            if row and row["status"] in FINISHED and not (config.retry_failed and row["status"] == "failed"):
                records[spec.key] = row["record"]
            else:
                pending.append(spec)
        pending = _broadcast(accelerator, pending)
        context.progress.study_planned([spec.label(config.seeds) for spec in pending],
                                       sum(spec.key in records for spec in specs))
        for spec, record in backend_runs(context, pending, started):
            if main:
                record["timing"]["attempts"] = store.run(spec.key)["attempts"]
                if trackers:  # a tracker's failure is recorded in the run's `tracking`, never fails the run
                    record["tracking"] = log_run(trackers, record)
                store.finish(spec.key, record, record["timing"]["wall_seconds"])
                if not config.until_conclusive:  # kept for --until-conclusive to continue from, until the end
                    shutil.rmtree(spec.checkpoint(out).parent, ignore_errors=True)  # after the record is committed
            records[spec.key] = record
            if main:
                write_results(out, derive_results(header, specs, records, tuning))
            context.progress.run_finished(record)
            if on_run_done:
                on_run_done(record)

    execute(specs)
    while True:  # the main process holds every record; the verdict may ask for more
        results = derive_results(header, specs, records, tuning)
        if extra := _broadcast(accelerator, more_seeds(results, specs, config, chosen)):
            specs += extra  # --max-seeds: the runs that decide the verdict get one more seed each
            execute(extra)
        elif extended := _broadcast(accelerator, more_budget(results, specs, config)):
            if main:  # --until-conclusive: each run continues from its last checkpoint at the longer budget
                for spec, before in extended:
                    _continue_from(before.checkpoint(out), spec.checkpoint(out))
            specs += [spec for spec, _ in extended]
            execute([spec for spec, _ in extended])
        else:
            break
    results = derive_results(header, specs, records, tuning)
    if main:
        write_results(out, results)
        if config.until_conclusive:  # the study is over: nothing continues from these any more
            for spec in specs:
                shutil.rmtree(spec.checkpoint(out).parent, ignore_errors=True)
        _remove_if_empty(out / CHECKPOINTS_DIR)
    return results


def more_budget(results: dict[str, Any], specs: list[RunSpec], config) -> list[tuple[RunSpec, RunSpec]]:
    """--until-conclusive: when the verdict asks for a longer budget (its reference did not learn, or was still
    improving), every trained run at its longest budget gets a continuation at the verdict's budget, capped at
    --max-budget (default 4x the first budget): [(the new run, the run it continues)]; [] when the verdict asks for
    none or the cap is reached."""
    wanted = ((results.get("verdict") or {}).get("next") or {}).get("budget_steps")
    if not config.until_conclusive or not wanted:
        return []
    runs = {run["run_key"]: run for run in results["runs"]}
    latest = [spec for spec in specs if spec.key in runs and spec.phase == "run"]
    budgets = {spec.key: (runs[spec.key].get("cost") or {}).get("budget_steps") for spec in latest}
    first = min((steps for steps in budgets.values() if steps), default=None)
    if first is None:
        return []
    ceiling = config.max_budget or 4 * first
    target = min(int(wanted), ceiling)
    extended = []
    for spec in latest:
        record = runs[spec.key]
        if trains(spec.method) and record["status"] == "ok" and (budgets[spec.key] or 0) < target:
            extended.append((replace(spec, max_steps=target), spec))
    return extended


def _continue_from(previous: Path, checkpoint: Path) -> None:
    """Copy the shorter run's last checkpoint to where the longer run trains, which continues from it (a run whose
    checkpoint is gone, e.g. a study finished without --until-conclusive, trains from its start)."""
    if previous.exists() and not checkpoint.exists():
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(previous, checkpoint)


def more_seeds(results: dict[str, Any], specs: list[RunSpec], config, learning_rates: dict[str, float]) -> list[RunSpec]:
    """Sequential seeds: when the verdict asks for them (its gap interval straddles the tolerance), one more seed
    for each run that decides it, while that method has fewer than --max-seeds; [] when nothing is to be added."""
    wanted = ((results.get("verdict") or {}).get("next") or {}).get("add_seeds") or []
    if not config.max_seeds or not wanted:
        return []
    sizes = (results["study"].get("train_sizes") or [None])
    largest = max(sizes, key=lambda size: -1 if size is None else size)  # --train-sizes: the verdict's size
    extra = []
    for method in wanted:
        runs = [spec for spec in specs if spec.method == method and spec.phase == "run" and spec.train_size == largest]
        seeds = {spec.seed for spec in runs}
        budget = max((spec.max_steps or 0 for spec in runs), default=0) or None  # --until-conclusive's, if any
        if len(seeds) < config.max_seeds:
            extra.append(RunSpec(method, max(seeds, default=config.seed - 1) + 1, learning_rates.get(method), "run",
                                 False, largest, max_steps=budget))
    return extra


def _remove_if_empty(folder) -> None:
    """Every finished run deletes its checkpoint folder; the emptied parent goes too (kept when a run left one)."""
    try:
        folder.rmdir()
    except OSError:  # missing, or not empty
        pass


def _broadcast(accelerator: Accelerator, value):
    """The main process's value on every process (the main process alone reads the store)."""
    if accelerator.num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
