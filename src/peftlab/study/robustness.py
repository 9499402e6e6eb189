"""`peftlab robustness RUN_DIR`: evaluate the robustness of every run a finished study saved, without training.

The study is rebuilt from its results.json header (model, data, subset, split, columns, caps, seed, max length;
the robustness settings it ran with, unless overridden), its dataset fingerprint is checked, the suite is built
as `compare` builds it, and each `ok` run is loaded from its folder (`load_run`) and evaluated. results.json is
rewritten atomically after every run, with each run's `robustness` key replaced. The study folder's lock
(:mod:`peftlab.lock`) is held throughout, as `compare` holds it: a study being written is refused, or waited for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from peftlab.errors import ConfigError, PeftlabError
from peftlab.evaluate.kinds import kind_evaluation
from peftlab.lock import StudyLock
from peftlab.study.artifacts import load_run
from peftlab.study.inputs import build_robustness_suite
from peftlab.study.probes import guarded
from peftlab.files import RESULTS_FILE, read_results, write_json_atomic, write_log
from peftlab.study.reload import reload_study


def evaluate_saved_study(run_dir: str | Path, on_run_done: Callable[[dict], None] | None = None, wait: bool = False,
                         on_wait: Callable[[str], None] | None = None, **overrides: Any) -> dict[str, Any]:
    """Evaluate every ok run of the study in ``run_dir``; returns the updated results (also written). Another
    process writing the study: :class:`peftlab.lock.StudyInUse`, or with ``wait`` a wait for it."""
    run_dir = Path(run_dir)
    read_results(run_dir)  # a study folder: checked before the lock file is created in it
    with StudyLock(run_dir, advice="wait for it (--wait) or run this when it has finished").acquire(wait, on_wait):
        return _evaluate(run_dir, read_results(run_dir), on_run_done, overrides)  # read again: it may have changed


def _evaluate(run_dir: Path, results: dict[str, Any], on_run_done: Callable[[dict], None] | None,
              overrides: dict[str, Any]) -> dict[str, Any]:
    header = results["study"]
    study = reload_study(header, run_dir, **overrides)
    study.robustness = build_robustness_suite(study)
    measure = kind_evaluation(study.task.kind).robustness
    if study.robustness is None or measure is None:
        raise ConfigError(f"the robustness evaluation is defined for classification and regression tasks; {run_dir} "
                          f"is a {study.task.kind.name} study")
    header["robustness"] = study.robustness.describe()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for run in results["runs"]:
        if run.get("status") != "ok" or not run.get("artifact"):
            continue
        try:
            model, tokenizer, _ = load_run(run_dir / run["artifact"])
        except PeftlabError as error:  # a run folder deleted or damaged since: say so, evaluate the others
            run["robustness"] = {"status": "failed", "reason": str(error)}
        else:
            run["robustness"] = guarded(
                lambda model=model.to(device): measure(model, tokenizer, study.robustness, device, study.task),
                lambda text: write_log(run_dir, f"{run['method']}.robustness", text))
            del model
        write_json_atomic(run_dir / RESULTS_FILE, results)
        if on_run_done:
            on_run_done(run)
    return results
