"""`peftlab robustness RUN_DIR`: evaluate the robustness of every run a finished study saved, without training.

The study is rebuilt from its results.json header (model, data, subset, split, columns, caps, seed, max length;
the robustness settings it ran with, unless overridden), its dataset fingerprint is checked, the suite is built
as `compare` builds it, and each `ok` run is loaded from its folder (`load_run`) and evaluated. results.json is
rewritten atomically after every run, with each run's `robustness` key replaced.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from peftlab.errors import DataError, PeftlabError
from peftlab.study.artifacts import load_run
from peftlab.study.compare import CompareConfig, build_robustness_suite, measure_robustness, prepare_study
from peftlab.study.results import RESULTS_FILE, write_json_atomic


def read_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PeftlabError(f"{run_dir} is not a peftlab study folder ({RESULTS_FILE}: {error})") from None
    if not isinstance(results, dict) or "study" not in results or "runs" not in results:
        raise PeftlabError(f"{path} is not a peftlab results file (no study/runs)")
    return results


def config_from_header(header: dict[str, Any], run_dir: Path, **overrides: Any) -> CompareConfig:
    """The CompareConfig that rebuilds the study's task and robustness suite; ``overrides`` (not None) win."""
    budget, columns = header["budget"], header["task"]["columns"]
    recorded = (header.get("robustness") or {}).get("settings") or {}
    config = CompareConfig(
        model=header["model"], data=header["data"], methods=list(header["methods"]), subset=header.get("subset"),
        split=header.get("split"), text_column=columns["text"], text_pair_column=columns["text_pair"],
        label_column=columns["label"], max_train_examples=budget["max_train_examples"],
        max_eval_examples=budget["max_eval_examples"], epochs=budget["epochs"], max_steps=budget["max_steps"],
        batch_size=budget["batch_size"], max_length=budget["max_length"], seed=header["seed"], out=str(run_dir),
        robustness=True, robust_set=recorded.get("robust_set"),
    )
    for key, setting in (("perturb_examples", "perturb_examples"), ("perturb_severity", "severity"),
                         ("attack_examples", "attack_examples")):
        if setting in recorded:
            config = replace(config, **{key: recorded[setting]})
    if "query_budget" in recorded.get("attack", {}):
        config = replace(config, attack_query_budget=recorded["attack"]["query_budget"])
    return replace(config, **{key: value for key, value in overrides.items() if value is not None})


def evaluate_saved_study(run_dir: str | Path, on_run_done: Callable[[dict], None] | None = None,
                         **overrides: Any) -> dict[str, Any]:
    """Evaluate every ok run of the study in ``run_dir``; returns the updated results (also written)."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    header = results["study"]
    study = prepare_study(config_from_header(header, run_dir, **overrides))
    if study.task.sha256 != header.get("dataset_sha256"):
        raise DataError(f"the data of {run_dir} ({header['data']}) is not what the study was trained on (its "
                        "fingerprint changed); run `peftlab robustness` where the study's data is unchanged")
    study.robustness = build_robustness_suite(study)
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
            run["robustness"] = measure_robustness(model.to(device), tokenizer, study.robustness, device,
                                                   lambda text, name=run["method"]: _write_log(run_dir, name, text))
            del model
        write_json_atomic(run_dir / RESULTS_FILE, results)
        if on_run_done:
            on_run_done(run)
    return results


def _write_log(run_dir: Path, method: str, text: str) -> None:
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{method}.robustness.log").write_text(text)
