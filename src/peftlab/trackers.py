"""Experiment trackers (`--report-to tensorboard,mlflow,wandb`, the HF Trainer's convention): every run of a study
logged from its record once it finished, in the driver process, so that every backend logs alike.

What a run logs, the same in each tracker (:func:`run_scalars`, :func:`run_params`):

- its configuration: method, seed, learning rate and method settings (``config``), and the study's whole
  configuration (``study.<option>``);
- ``train/loss`` at every training step (1, 2, ...), the record's ``curve.train_loss``;
- ``validation/<metric>`` per evaluation, at the step of its epoch number (``curve.validation``);
- ``metrics/<key>`` (the test metrics and the best validation epoch) and ``cost/<key>``, at the last step;
- its artifact: the saved run's folder (a tag / text), and for MLflow its small ``peftlab_run.json`` as an artifact
  (never the weights).

The study is the experiment (MLflow), the group (W&B) or the log folder's parent (TensorBoard). The stores live in
the study folder: ``OUT/tensorboard/<run key>/``, ``OUT/mlruns/`` (an SQLite store, ``mlflow.db``, with its
artifacts beside it; MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE is set), ``OUT/wandb/`` (W&B's
own folders; ``WANDB_MODE=offline`` is honoured, as W&B itself reads it; without it W&B needs its login).

A tracker that fails while logging never fails the run: :func:`log_run` returns ``{name: {"status": "ok"}}`` or
``{"status": "failed", "reason": ...}`` per tracker (the record's ``tracking``), writes the traceback to
OUT/logs/<run>.tracking.<name>.log and logs one line. The optional packages are imported here at module level, each
inside ``try``; :func:`check_trackers` names the `pip install` of a missing one before anything trains.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError
from peftlab.files import RUN_FILE, jsonable, short_reason, write_log

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:  # the tensorboard package is missing (torch imports it on demand)
    SummaryWriter = None
try:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
except ImportError:
    MlflowClient = None
try:
    import wandb
except ImportError:
    wandb = None

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlruns"
MLFLOW_DB = "mlflow.db"
WANDB_DIR = "wandb"
INSTALL_HINT = "pip install 'peftlab[trackers]'"


# --- what a run logs: the same scalars and parameters in every tracker --------------------------------------------

def run_scalars(record: dict) -> list[tuple[str, int, float]]:
    """(name, step, value) of everything numeric a run's record measured, in logging order."""
    curve = record.get("curve") or {}
    losses = curve.get("train_loss") or []
    scalars = [("train/loss", step, loss) for step, loss in enumerate(losses, start=1) if _number(loss)]
    for evaluation in curve.get("validation") or []:  # at its training step (older records: at its epoch)
        step = evaluation.get("step", evaluation.get("epoch"))
        scalars += [(f"validation/{key}", step, value) for key, value in evaluation.items()
                    if key not in ("epoch", "step", "progress") and _number(value)]
    last = max(len(losses), 1)
    for group in ("metrics", "cost"):
        scalars += [(f"{group}/{key}", last, value) for key, value in (record.get(group) or {}).items()
                    if _number(value)]
    return [(name, int(step), float(value)) for name, step, value in scalars]


def run_params(record: dict, study_config: dict) -> dict[str, Any]:
    """The run's configuration, flat: method, seed, its settings and learning rate, then the study's options."""
    params = {"method": record.get("method"), "seed": record.get("seed"), "run_key": record.get("run_key")}
    params.update({f"config.{key}": value for key, value in (record.get("config") or {}).items()})
    params.update({f"study.{key}": value for key, value in study_config.items()})
    return jsonable(params)


def run_folder_name(run_key: str) -> str:
    """A run key as one folder name (`run/lora/seed=0/lr=default` -> `run_lora_seed=0_lr=default`)."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", run_key)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class StudyInfo:
    """What a tracker knows of the study: its folder, its name (the experiment / group) and its configuration."""

    def __init__(self, out: Path, config: dict, tags: dict[str, Any] | None = None):
        self.out = Path(out).resolve()
        self.name = f"peftlab/{self.out.name}"
        self.config = config
        self.tags = {key: _text(value) for key, value in (tags or {}).items() if value is not None}

    def artifact(self, record: dict) -> Path | None:
        return self.out / record["artifact"] if record.get("artifact") else None


# --- the trackers -------------------------------------------------------------------------------------------------

class Tracker:
    """One experiment tracker: ``available`` (its package is installed) and ``log_run`` (one finished run)."""

    name = ""
    package = ""  # what `pip install` installs it

    @classmethod
    def available(cls) -> bool:
        raise NotImplementedError

    def __init__(self, study: StudyInfo):
        self.study = study

    def log_run(self, record: dict) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """OUT/tensorboard/<run key>/: one event folder per run (`tensorboard --logdir OUT/tensorboard`)."""

    name, package = "tensorboard", "tensorboard"

    @classmethod
    def available(cls) -> bool:
        return SummaryWriter is not None

    def log_run(self, record: dict) -> None:
        folder = self.study.out / TENSORBOARD_DIR / run_folder_name(record["run_key"])
        shutil.rmtree(folder, ignore_errors=True)  # a retried run replaces its earlier attempt's events
        writer = SummaryWriter(log_dir=str(folder))
        try:
            for name, step, value in run_scalars(record):
                writer.add_scalar(name, value, global_step=step)
            settings = {"status": record.get("status"), **run_params(record, self.study.config)}
            writer.add_text("config", "```\n" + json.dumps(settings, indent=2) + "\n```")
            artifact = self.study.artifact(record)
            if artifact:
                writer.add_text("artifact", str(artifact))
            if record.get("reason"):
                writer.add_text("reason", record["reason"])
        finally:
            writer.close()


class MlflowTracker(Tracker):
    """An SQLite store in OUT/mlruns/ (no server): the study is the experiment, each run an MLflow run named by its
    key. Read it with `mlflow ui --backend-store-uri sqlite:///OUT/mlruns/mlflow.db`."""

    name, package = "mlflow", "mlflow-skinny"
    BATCH = 1000  # log_batch's limit of metrics per call (params: 100)

    @classmethod
    def available(cls) -> bool:
        return MlflowClient is not None

    @staticmethod
    def tracking_uri(out: Path) -> str:
        return f"sqlite:///{Path(out).resolve() / MLFLOW_DIR / MLFLOW_DB}"

    def log_run(self, record: dict) -> None:
        folder = self.study.out / MLFLOW_DIR
        folder.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=self.tracking_uri(self.study.out))
        experiment = client.get_experiment_by_name(self.study.name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            self.study.name, artifact_location=(folder / "artifacts").as_uri(), tags=self.study.tags)
        artifact = self.study.artifact(record)
        tags = {"mlflow.runName": record["run_key"], "peftlab.status": record.get("status", ""),
                "peftlab.method": str(record.get("method")), "peftlab.seed": str(record.get("seed")),
                **({"peftlab.artifact": str(artifact)} if artifact else {}),
                **({"peftlab.reason": record["reason"][:5000]} if record.get("reason") else {})}
        earlier = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.runName` = '{record['run_key']}'")
        for run in earlier:  # a retried run replaces its earlier attempt, as in TensorBoard
            client.delete_run(run.info.run_id)
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        try:
            params = [Param(key, _text(value)[:6000]) for key, value in run_params(record, self.study.config).items()]
            for start in range(0, len(params), 100):
                client.log_batch(run_id, params=params[start:start + 100])
            now = int(time.time() * 1000)
            metrics = [Metric(name, value, now, step) for name, step, value in run_scalars(record)]
            for start in range(0, len(metrics), self.BATCH):
                client.log_batch(run_id, metrics=metrics[start:start + self.BATCH])
            if artifact and (artifact / RUN_FILE).is_file():
                client.log_artifact(run_id, str(artifact / RUN_FILE))
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED" if record.get("status") in ("ok", "refused") else "FAILED")


class WandbTracker(Tracker):
    """W&B runs in OUT/wandb/, grouped by the study; `WANDB_MODE=offline` (W&B reads it) keeps them local for a
    later `wandb sync`."""

    name, package = "wandb", "wandb"

    @classmethod
    def available(cls) -> bool:
        return wandb is not None

    def log_run(self, record: dict) -> None:
        folder = self.study.out / WANDB_DIR  # W&B writes its runs to <dir>/wandb/
        folder.mkdir(parents=True, exist_ok=True)
        artifact = self.study.artifact(record)
        run = wandb.init(project="peftlab", group=self.study.name, name=record["run_key"], dir=str(self.study.out),
                         config={"status": record.get("status"), **run_params(record, self.study.config),
                                 "artifact": str(artifact) if artifact else None},
                         tags=[str(record.get("method"))], reinit="create_new",
                         settings=wandb.Settings(console="off", silent=True))  # the driver's output stays its own
        try:
            run.define_metric("step")
            run.define_metric("*", step_metric="step")  # steps of train/loss, epochs of validation/*
            by_step: dict[int, dict[str, float]] = {}
            for name, step, value in run_scalars(record):
                by_step.setdefault(step, {})[name] = value
            for step, values in sorted(by_step.items()):
                run.log({**values, "step": step})
        finally:
            run.finish(exit_code=0 if record.get("status") in ("ok", "refused") else 1)


TRACKERS: dict[str, type[Tracker]] = {tracker.name: tracker for tracker in (TensorBoardTracker, MlflowTracker,
                                                                          WandbTracker)}


def check_trackers(names: list[str]) -> None:
    """One-line ConfigErrors for an unknown tracker name or a tracker whose package is missing."""
    unknown = [name for name in names if name not in TRACKERS]
    if unknown:
        raise ConfigError(f"--report-to supports {', '.join(TRACKERS)}, got {', '.join(unknown)}")
    missing = [TRACKERS[name] for name in names if not TRACKERS[name].available()]
    if missing:
        packages = " ".join(tracker.package for tracker in missing)
        raise ConfigError(f"--report-to {','.join(tracker.name for tracker in missing)} needs the "
                          f"{packages} package: {INSTALL_HINT} (or pip install {packages})")


def make_trackers(names: list[str], study: StudyInfo) -> list[Tracker]:
    return [TRACKERS[name](study) for name in dict.fromkeys(names)]


def log_run(trackers: list[Tracker], record: dict) -> dict[str, dict]:
    """Log one finished run to every tracker; a tracker's failure is its own ``failed`` entry, never the run's."""
    outcome = {}
    for tracker in trackers:
        try:
            tracker.log_run(record)
            outcome[tracker.name] = {"status": "ok"}
        except Exception as error:  # noqa: BLE001 - a tracker (disk full, library error) must not fail the run
            reason = short_reason(error)
            outcome[tracker.name] = {"status": "failed", "reason": reason}
            name = f"{run_folder_name(record.get('run_key', 'run'))}.tracking.{tracker.name}"
            try:
                write_log(tracker.study.out, name, traceback.format_exc())
            except OSError:  # the disk that failed the tracker may fail the log too
                pass
            logger.warning("%s: logging run %s failed (%s)", tracker.name, record.get("run_key"), reason)
    return outcome
