"""Experiment trackers (`--report-to`): a tiny study logged to TensorBoard and MLflow and read back with their own
readers (the steps and values equal results.json's); an unknown or uninstalled tracker is one line before anything
trains; a tracker that fails leaves the run `ok` with its `tracking` failed; the tracker is not part of the study."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from peftlab import CompareConfig, compare
from peftlab import trackers
from peftlab.cli import main
from peftlab.errors import ConfigError
from peftlab.files import RUN_FILE, STORE_FILE
from peftlab.study.store import StudyStore
from peftlab.trackers import (MlflowTracker, StudyInfo, TensorBoardTracker, WandbTracker, run_folder_name,
                              run_scalars)
from conftest import FIXED_RATES

def tiny_config(tiny_bert_dir, tiny_task_csv, out, **overrides) -> CompareConfig:
    settings = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["head", "lora"], epochs=2,
                    batch_size=16, out=str(out), robustness=False, diagnose=False, **FIXED_RATES)
    settings.update(overrides)
    return CompareConfig(**settings)


def scalar_series(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_a_study_is_logged_to_tensorboard_and_mlflow(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, report_to=["tensorboard", "mlflow"]))
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert [run["status"] for run in runs] == ["ok", "ok"]
    assert all(run["tracking"] == {"tensorboard": {"status": "ok"}, "mlflow": {"status": "ok"}} for run in runs)

    client = MlflowClient(MlflowTracker.tracking_uri(out))
    experiment = client.get_experiment_by_name(f"peftlab/{out.name}")
    logged = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(logged) == {run["run_key"] for run in runs}
    for run in runs:
        losses, validation = run["curve"]["train_loss"], run["curve"]["validation"]
        assert len(losses) == run["cost"]["train_steps"] > 0 and len(validation) == 2
        last = len(losses)

        # TensorBoard: the event files of OUT/tensorboard/<run key>/, read by tensorboard's own reader
        events = EventAccumulator(str(out / "tensorboard" / run_folder_name(run["run_key"])))
        events.Reload()
        assert {"train/loss", "validation/accuracy", "validation/loss", "metrics/accuracy",
                "cost/trainable_params"} <= set(events.Tags()["scalars"])
        steps, values = zip(*scalar_series(events, "train/loss"))
        assert list(steps) == list(range(1, last + 1))
        assert list(values) == pytest.approx(losses, rel=1e-6)  # event files hold float32
        assert scalar_series(events, "validation/accuracy") == [
            (entry["step"], pytest.approx(entry["accuracy"], rel=1e-6)) for entry in validation]  # at its step
        assert scalar_series(events, "metrics/accuracy") == [(last, pytest.approx(run["metrics"]["accuracy"]))]
        assert scalar_series(events, "metrics/macro_f1") == [(last, pytest.approx(run["metrics"]["macro_f1"]))]
        assert scalar_series(events, "cost/trainable_params") == [(last, run["cost"]["trainable_params"])]
        assert run["method"] in events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()

        # MLflow: the SQLite store in OUT/mlruns/, read by MlflowClient
        mlflow_run = logged[run["run_key"]]
        run_id = mlflow_run.info.run_id
        history = client.get_metric_history(run_id, "train/loss")
        assert [(metric.step, metric.value) for metric in history] == list(enumerate(losses, start=1))
        assert [(metric.step, metric.value) for metric in client.get_metric_history(run_id, "validation/loss")] == [
            (entry["step"], entry["loss"]) for entry in validation]
        assert mlflow_run.data.metrics["metrics/accuracy"] == run["metrics"]["accuracy"]
        assert mlflow_run.data.metrics["metrics/test_loss"] == run["metrics"]["test_loss"]
        assert mlflow_run.data.metrics["cost/train_tokens"] == run["cost"]["train_tokens"]
        params = mlflow_run.data.params
        assert params["method"] == run["method"] and params["seed"] == str(run["seed"])
        assert float(params["config.learning_rate"]) == run["config"]["learning_rate"]
        assert json.loads(params["study.methods"]) == ["head", "lora"]
        assert mlflow_run.data.tags["peftlab.artifact"] == str((out / run["artifact"]).resolve())
        assert mlflow_run.info.status == "FINISHED"
        assert [artifact.path for artifact in client.list_artifacts(run_id)] == [RUN_FILE]  # not the weights
    assert all(name in ("mlflow.db", "artifacts") for name in (path.name for path in (out / "mlruns").iterdir()))


def test_unknown_or_missing_tracker_is_one_line_before_anything_trains(tiny_bert_dir, tiny_task_csv, tmp_path,
                                                                      monkeypatch, capsys):
    with pytest.raises(ConfigError, match="--report-to supports tensorboard, mlflow, wandb, got comet"):
        tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "a", report_to=["tensorboard", "comet"]).check()
    monkeypatch.setattr(sys, "argv", ["peftlab", "compare", "--model", str(tiny_bert_dir), "--data",
                                      str(tiny_task_csv), "--out", str(tmp_path / "b"), "--report-to", "tensorboard,comet"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()  # the CLI: one `error:` line, exit 2, nothing written
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(error.splitlines()) == 1
    assert error.startswith("error: --report-to supports tensorboard, mlflow, wandb, got comet")
    assert not (tmp_path / "b").exists()

    monkeypatch.setattr(trackers, "MlflowClient", None)  # as without the mlflow package
    with pytest.raises(ConfigError, match=r"--report-to mlflow needs the mlflow-skinny package: pip install "
                                          r"'peftlab\[trackers\]'"):
        tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "c", report_to=["mlflow"]).check()


def test_a_failing_tracker_never_fails_the_run_and_is_not_part_of_the_study(tiny_bert_dir, tiny_task_csv, tmp_path,
                                                                            monkeypatch, caplog):
    def disk_full(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardTracker, "log_run", disk_full)
    out = tmp_path / "study"
    with caplog.at_level(logging.WARNING, logger="peftlab.trackers"):
        first = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, methods=["head"], report_to=["tensorboard"]))
    (run,) = first["runs"]
    assert run["status"] == "ok" and run["metrics"]["accuracy"] is not None
    assert run["tracking"] == {"tensorboard": {"status": "failed",
                                               "reason": "OSError: [Errno 28] No space left on device"}}
    assert "tensorboard: logging run run/head/seed=0/lr=default failed (OSError" in caplog.text
    assert "No space left" in (out / "logs" / f"{run_folder_name(run['run_key'])}.tracking.tensorboard.log").read_text()
    identity = StudyStore(out / STORE_FILE).get("identity")

    # the same study without the tracker: resumed (identity unchanged, the finished run not repeated)
    again = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, methods=["head"]))
    assert StudyStore(out / STORE_FILE).get("identity") == identity
    assert again["runs"] == first["runs"]
    assert StudyStore(out / STORE_FILE).run(run["run_key"])["attempts"] == 1


def test_scalars_skip_what_is_not_a_number():
    record = {"curve": {"train_loss": [1.0, float("nan"), 0.5], "validation": [{"epoch": 1, "accuracy": 0.5,
                                                                                  "note": "x"}]},
              "metrics": {"accuracy": 0.75, "best_epoch": 1, "flag": True}, "cost": {"inference_ms_per_example": None}}
    assert run_scalars(record) == [("train/loss", 1, 1.0), ("train/loss", 3, 0.5), ("validation/accuracy", 1, 0.5),
                                   ("metrics/accuracy", 3, 0.75), ("metrics/best_epoch", 3, 1.0)]


@pytest.mark.skipif(not WandbTracker.available(), reason="wandb is not installed (pip install wandb)")
def test_wandb_offline_runs_land_in_the_study_folder(tiny_bert_dir, tiny_task_csv, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B's own switch, honoured: nothing leaves the machine
    out = tmp_path / "study"
    (run,) = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, methods=["head"], report_to=["wandb"]))["runs"]
    assert run["status"] == "ok" and run["tracking"] == {"wandb": {"status": "ok"}}
    (folder,) = (out / "wandb").glob("offline-run-*")
    (data,) = folder.glob("run-*.wandb")  # W&B's binary run log (read by `wandb sync`, which needs a server)
    content = data.read_bytes()
    assert run["run_key"].encode() in content and b"train/loss" in content and b"metrics/accuracy" in content
    assert "wandb:" not in capfd.readouterr().out  # W&B's console output stays out of the driver's


def test_a_retried_run_replaces_its_earlier_attempt(tmp_path):
    study = StudyInfo(tmp_path, {"methods": ["lora"]})
    failed = {"run_key": "run/lora/seed=0/lr=default", "method": "lora", "seed": 0, "status": "failed",
              "reason": "RuntimeError: diverged", "config": {"learning_rate": 1.0}, "curve": {}, "metrics": {}, "cost": {}}
    retried = {**failed, "status": "ok", "reason": None, "curve": {"train_loss": [0.7, 0.6], "validation": []},
               "metrics": {"accuracy": 0.8}}
    for record in (failed, retried):
        MlflowTracker(study).log_run(record)
        TensorBoardTracker(study).log_run(record)
    client = MlflowClient(MlflowTracker.tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name(study.name).experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics == {"train/loss": 0.6, "metrics/accuracy": 0.8}
    events = EventAccumulator(str(tmp_path / "tensorboard" / run_folder_name(failed["run_key"])))
    events.Reload()
    assert scalar_series(events, "train/loss") == [(1, pytest.approx(0.7)), (2, pytest.approx(0.6))]
