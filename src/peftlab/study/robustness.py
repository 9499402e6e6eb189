"""`peftlab robustness RUN_DIR`: evaluate the robustness of every run a finished study saved, without training.

The study is rebuilt from its results.json header (model, data, subset, split, columns, caps, seed, max length;
the robustness settings it ran with, unless overridden), its dataset fingerprint is checked, the suite is built
as `compare` builds it, and each `ok` run is loaded from its folder (`load_run`) and evaluated. results.json is
rewritten atomically after every run, with each run's `robustness` key replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from peftlab.errors import ConfigError, PeftlabError
from peftlab.evaluate.robustness import evaluate_robustness
from peftlab.study.artifacts import load_run
from peftlab.study.inputs import build_robustness_suite
from peftlab.study.probes import guarded
from peftlab.files import RESULTS_FILE, read_results, write_json_atomic, write_log
from peftlab.study.reload import reload_study


def evaluate_saved_study(run_dir: str | Path, on_run_done: Callable[[dict], None] | None = None,
                         **overrides: Any) -> dict[str, Any]:
    """Evaluate every ok run of the study in ``run_dir``; returns the updated results (also written)."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    header = results["study"]
    study = reload_study(header, run_dir, **overrides)
    study.robustness = build_robustness_suite(study)
    if study.robustness is None:
        raise ConfigError(f"the robustness evaluation is defined for classification tasks; {run_dir} is a "
                          f"{study.task.kind.name} study")
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
                lambda model=model.to(device): evaluate_robustness(model, tokenizer, study.robustness, device),
                lambda text: write_log(run_dir, f"{run['method']}.robustness", text))
            del model
        write_json_atomic(run_dir / RESULTS_FILE, results)
        if on_run_done:
            on_run_done(run)
    return results
