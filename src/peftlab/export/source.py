"""Find what to export: the study folder, its results, and the saved run of one method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.files import RESULTS_FILE, RUN_FILE, read_results, read_run_file


@dataclass
class RunSource:
    """One trained run of a study, as `compare` left it."""

    study_dir: Path  # the folder holding results.json
    study: dict  # results.json's `study` block (model, data, budget, seed, versions...)
    record: dict  # this method's record in results.json (metrics, cost, config)
    reference: dict | None  # the `full` record when the study has a successful one (for differences)
    run_folder: Path  # OUT/runs/<method>: the saved method
    info: dict  # the run folder's peftlab_run.json (base model path, labels, max_length)

    @property
    def method(self) -> str:
        return self.record["method"]


def find_run(run_dir: str | Path, method: str) -> RunSource:
    """The run of `method` in the study at `run_dir` (the study's --out folder, or one of its run folders)."""
    study_dir = _study_dir(Path(run_dir))
    results = read_results(study_dir)
    records = {r.get("method"): r for r in results.get("runs", [])}
    if method not in records:
        raise PeftlabError(
            f"method '{method}' is not in the study at {study_dir} (it has: {', '.join(records) or 'no runs'})"
        )
    record = records[method]
    if record.get("status") != "ok":
        raise PeftlabError(
            f"method '{method}' {'was refused' if record.get('status') == 'refused' else 'failed'} in the study at "
            f"{study_dir} ({record.get('reason', 'no reason recorded')}); "
            "there is nothing to export"
        )
    run_folder = study_dir / (record.get("artifact") or f"runs/{method}")
    if not (run_folder / RUN_FILE).is_file():
        raise PeftlabError(f"the saved run of '{method}' is missing: {run_folder} has no {RUN_FILE}")
    full = records.get("full")
    reference = full if full is not None and full.get("status") == "ok" and method != "full" else None
    return RunSource(study_dir, results.get("study", {}), record, reference, run_folder, read_run_file(run_folder))


def _study_dir(run_dir: Path) -> Path:
    """Accept the study folder itself or a run folder inside it (OUT/runs/<method>)."""
    if not run_dir.is_dir():
        raise PeftlabError(f"no such study folder: {run_dir} (pass the --out folder of `peftlab compare`)")
    if not (run_dir / RESULTS_FILE).is_file() and (run_dir / RUN_FILE).is_file():
        if (run_dir.parent.parent / RESULTS_FILE).is_file():
            return run_dir.parent.parent
    return run_dir
