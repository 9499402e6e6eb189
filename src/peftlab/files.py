"""The study folder's files: their names, atomic writes, JSON values, and reading results.json back.

The leaf of peftlab's upper floors: every module may import it, and it imports nothing of peftlab but the errors.
A study folder (``--out``) holds::

    results.json        derived from the store after every run (RESULTS_FILE)
    study.sqlite        the study store (STORE_FILE)
    diagnosis.json      the diagnosis, when one ran (DIAGNOSIS_FILE)
    report.html         the report
    runs/<name>/        one trained run each, with peftlab_run.json (RUN_FILE)
    checkpoints/        epoch checkpoints of unfinished runs: <key>/last/, safetensors + JSON (CHECKPOINTS_DIR)
    logs/<name>.log     tracebacks of failed runs and probes (LOGS_DIR)
    .peftlab.lock       the one-writer lock, held by the process writing the study (LOCK_FILE, peftlab.lock)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError, PeftlabError

RESULTS_FILE = "results.json"
STORE_FILE = "study.sqlite"
DIAGNOSIS_FILE = "diagnosis.json"
STUDY_CONFIG_FILE = "study.yaml"  # the effective configuration: `peftlab compare --config OUT/study.yaml` re-runs it
RUN_FILE = "peftlab_run.json"
RUNS_DIR = "runs"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
LOCK_FILE = ".peftlab.lock"


def jsonable(value: Any) -> Any:
    """Plain JSON values from settings objects (enums, sets, dataclasses, paths, numpy scalars)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    write_text_atomic(path, json.dumps(jsonable(data), indent=2, allow_nan=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename (JSON, reports, figures, tables)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable_folder(folder: str | Path, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) if missing and write and remove a probe file in it: the ConfigError for an
    output folder that cannot be written comes before any work, not after it. Returns the folder."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} is a file; pass a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".peftlab-write-check.", suffix=".tmp")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = f" ({error.filename})" if error.filename and Path(error.filename) != folder else ""
        raise ConfigError(f"cannot write to {option} {folder}: {reason}{where}; pick a folder you can write") from None
    return folder


def write_results(out: Path, results: dict[str, Any]) -> None:
    write_json_atomic(Path(out) / RESULTS_FILE, results)


def read_results(study_dir: Path) -> dict[str, Any]:
    """results.json of a study folder, checked to be one; a PeftlabError saying what to pass otherwise."""
    path = Path(study_dir) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except OSError:
        raise PeftlabError(f"{study_dir} is not a study folder: it has no {RESULTS_FILE} (pass the --out folder of "
                           "`peftlab compare`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftlabError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(results, dict) or not isinstance(results.get("study"), dict) or not isinstance(results.get("runs"), list):
        raise PeftlabError(f"{path} is not a peftlab results file (no study/runs)")
    return results


def read_run_file(directory: str | Path) -> dict:
    """peftlab_run.json of a trained run's folder."""
    path = Path(directory) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PeftlabError(f"{directory} is not a peftlab run folder ({RUN_FILE}: {error})") from None


def write_log(out: Path, name: str, text: str) -> Path:
    """OUT/logs/<name>.log (a failed run's or probe's traceback); returns its path."""
    path = Path(out) / LOGS_DIR / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_line(error: BaseException | str, limit: int | None = 200) -> str:
    """The first line of an exception's message (its type's name when it has none), at most ``limit`` characters (None: all of it):
    what a one-line error or a record's reason quotes of it."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def short_reason(error: BaseException, limit: int = 200) -> str:
    """An exception as one line for a record's ``reason``: its type and the first line of its message."""
    return f"{type(error).__name__}: {error_line(error, limit) if str(error).strip() else ''}"


def trial_objective(trial: dict) -> str:
    """The validation score a tuning trial of results.json was judged by: its ``objective`` (the task's selection
    metric); trials recorded before the key existed were judged by accuracy."""
    return trial.get("objective", "accuracy")
