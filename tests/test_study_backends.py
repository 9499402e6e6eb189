"""Where runs execute: two local worker processes and a local 2-CPU Ray cluster give the local backend's results,
and land in the same store."""

from __future__ import annotations

import pytest

from peftlab import CompareConfig, compare
from peftlab.files import STORE_FILE
from peftlab.study.store import StudyStore
from conftest import FIXED_RATES


def comparable(run: dict) -> dict:
    return {key: run.get(key) for key in ("method", "seed", "run_key", "status", "config", "metrics", "curve")}


@pytest.fixture(scope="module")
def local_results(tiny_bert_dir, tiny_task_csv, tmp_path_factory):
    config = study_config(tiny_bert_dir, tiny_task_csv, tmp_path_factory.mktemp("local"))
    return compare(config)


def study_config(tiny_bert_dir, tiny_task_csv, out, **overrides) -> CompareConfig:
    return CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "head"], epochs=2,
                         batch_size=16, out=str(out), robustness=False, **{**FIXED_RATES, **overrides})


def test_worker_processes_give_the_local_results(local_results, tiny_bert_dir, tiny_task_csv, tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # one torch thread per worker, as the in-process tests use
    results = compare(study_config(tiny_bert_dir, tiny_task_csv, tmp_path, workers=2, report_to=["tensorboard"]))
    assert [comparable(r) for r in results["runs"]] == [comparable(r) for r in local_results["runs"]]
    assert {row["status"] for row in StudyStore(tmp_path / STORE_FILE).runs()} == {"ok"}
    # the driver logs the records the workers returned (peftlab.trackers; tests/test_trackers.py reads them back)
    assert all(r["tracking"] == {"tensorboard": {"status": "ok"}} for r in results["runs"])
    assert sorted(path.name for path in (tmp_path / "tensorboard").iterdir()) == [
        "run_full_seed=0_lr=default", "run_head_seed=0_lr=default"]


def test_a_local_two_cpu_ray_cluster_gives_the_local_results(local_results, tiny_bert_dir, tiny_task_csv, tmp_path):
    ray = pytest.importorskip("ray")
    from peftlab.study.backends import _worker_environment

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": _worker_environment()})
    try:
        results = compare(study_config(tiny_bert_dir, tiny_task_csv, tmp_path, backend="ray", report_to=["mlflow"]))
    finally:
        ray.shutdown()
    assert [comparable(r) for r in results["runs"]] == [comparable(r) for r in local_results["runs"]]
    rows = StudyStore(tmp_path / STORE_FILE).runs()
    assert [(row["run_key"], row["status"], row["attempts"]) for row in rows] == [
        ("run/full/seed=0/lr=default", "ok", 1), ("run/head/seed=0/lr=default", "ok", 1)]
    assert all((tmp_path / r["artifact"] / "peftlab_run.json").is_file() for r in results["runs"])
    assert all(r["tracking"] == {"mlflow": {"status": "ok"}} for r in results["runs"])  # logged by the driver
