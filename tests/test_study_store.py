"""The study store and resume: transactional rows, a refused foreign study, finished runs never repeated, an
interrupted run continued from its epoch checkpoint with the metrics of an uninterrupted one (also after SIGKILL
at a random point), diverged runs stored as failed, seeds with aggregates, and the learning-rate search."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from conftest import FIXED_RATES

from peftlab.errors import ConfigError
from peftlab.methods import get_method
from peftlab.models import load_tokenizer, resolve_model
from peftlab import CompareConfig, compare
from peftlab.files import STORE_FILE
from peftlab.study.store import StudyStore
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task
from peftlab.train import TrainConfig, train
from peftlab.train.checkpoint import checkpoint_epoch

BATCH = 16


def tiny_config(tiny_bert_dir, tiny_task_csv, out, **overrides) -> CompareConfig:
    settings = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora", "head"], epochs=3,
                    batch_size=BATCH, out=str(out), robustness=False, **FIXED_RATES)
    settings.update(overrides)
    return CompareConfig(**settings)


def comparable(run: dict) -> dict:
    """What must not depend on interruptions or on where a run executed: status, settings, metrics, curves."""
    return {key: run.get(key) for key in ("method", "seed", "run_key", "status", "config", "metrics", "curve")} | {
        "steps": run.get("cost", {}).get("train_steps"), "tokens": run.get("cost", {}).get("train_tokens")}


def rows(out: Path) -> dict[str, dict]:
    return {row["run_key"]: row for row in StudyStore(out / STORE_FILE).runs()}


# --- the store --------------------------------------------------------------------------------------------------

def test_store_rows_and_identity(tmp_path):
    store = StudyStore(tmp_path / STORE_FILE)
    store.check_identity({"model": "m", "budget": {"epochs": 3}})
    store.check_identity({"model": "m", "budget": {"epochs": 3}})  # the same study: accepted
    with pytest.raises(ConfigError, match="differs in budget"):
        store.check_identity({"model": "m", "budget": {"epochs": 4}})

    assert store.start("run/full/seed=0/lr=default", "run", "full", 0, None) == 1
    assert store.run("run/full/seed=0/lr=default")["status"] == "running"
    assert not store.finished("run/full/seed=0/lr=default")
    assert store.start("run/full/seed=0/lr=default", "run", "full", 0, None) == 2
    record = {"method": "full", "status": "ok", "config": {"learning_rate": 2e-5}, "metrics": {"accuracy": 0.75},
              "cost": {"train_seconds": 1.5}, "artifact": "runs/full"}
    store.finish("run/full/seed=0/lr=default", record, 2.5)
    row = StudyStore(tmp_path / STORE_FILE).run("run/full/seed=0/lr=default")  # a new connection reads it back
    assert row["status"] == "ok" and row["metrics"] == {"accuracy": 0.75} and row["record"] == record
    assert row["wall_seconds"] == 2.5 and row["artifact"] == "runs/full" and row["attempts"] == 2


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path):
    (tmp_path / STORE_FILE).write_text("not a database, " * 100)
    with pytest.raises(ConfigError, match="not a readable study store"):
        StudyStore(tmp_path / STORE_FILE)


# --- resume -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tiny_bert_dir, tiny_task_csv):
    tokenizer = load_tokenizer(resolve_model(str(tiny_bert_dir)))
    task = load_task(str(tiny_task_csv), seed=0)
    return encode_task(task, tokenizer, max_length=64), tokenizer, task


class Interrupt(Exception):
    pass


def test_training_continues_from_its_epoch_checkpoint_as_if_uninterrupted(load_tiny_bert, tiny_data, tmp_path):
    """LoRA (random init, dropout) for 4 epochs, interrupted after epoch 2 and continued from the checkpoint:
    the same losses, validation curve, best epoch and final weights as one uninterrupted run."""
    encoded, tokenizer, task = tiny_data
    config = TrainConfig(learning_rate=5e-3, epochs=4, batch_size=BATCH, seed=7)

    def model():
        torch.manual_seed(7)
        method = get_method("lora")
        base = load_tiny_bert()
        return method.apply(base, method.resolve(base, {})[0])

    whole = model()
    expected = train(whole, encoded, tokenizer, config, Accelerator(cpu=True), task.num_labels)

    def stop_after_two(epoch, scores):
        if epoch == 2:
            raise Interrupt

    checkpoint = tmp_path / "last"
    with pytest.raises(Interrupt):
        train(model(), encoded, tokenizer, config, Accelerator(cpu=True), task.num_labels, checkpoint, stop_after_two)
    assert sorted(p.name for p in checkpoint.iterdir()) == ["state.json", "state.safetensors"]
    assert checkpoint_epoch(checkpoint) == 2
    resumed_model = model()
    resumed = train(resumed_model, encoded, tokenizer, config, Accelerator(cpu=True), task.num_labels, checkpoint)
    assert resumed.steps == expected.steps == 4 * 6
    assert resumed.train_loss == expected.train_loss
    assert resumed.validation == expected.validation
    assert resumed.best_epoch == expected.best_epoch
    a, b = whole.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rerunning_a_finished_study_repeats_nothing(tiny_bert_dir, tiny_task_csv, tmp_path):
    config = tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "study", methods=["full", "head"], epochs=1)
    first = compare(config)
    again = compare(config)
    assert [comparable(r) for r in again["runs"]] == [comparable(r) for r in first["runs"]]
    assert {key: row["attempts"] for key, row in rows(tmp_path / "study").items()} == {
        "run/full/seed=0/lr=default": 1, "run/head/seed=0/lr=default": 1}
    assert not (tmp_path / "study" / "checkpoints").exists()  # emptied by the finished runs, then removed
    with pytest.raises(ConfigError, match="holds a different study"):
        compare(tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "study", methods=["full"], epochs=2))


CHILD = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from peftlab import CompareConfig, compare
    compare(CompareConfig(model=sys.argv[1], data=sys.argv[2], methods=["full", "lora", "head"], epochs=4,
                          batch_size=16, out=sys.argv[3], robustness=False, no_tune=True, evaluations_per_epoch=1,
                          patience=None))
""")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_study_killed_at_a_random_point_resumes_to_the_uninterrupted_results(signum, tiny_bert_dir, tiny_task_csv,
                                                                              tmp_path):
    reference = compare(tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "reference", epochs=4))
    out = tmp_path / "killed"
    seed = random.randrange(10**6)
    target = random.Random(seed).choice(["full", "lora", "head"])  # the run to kill inside...
    delay = random.Random(seed).uniform(0.0, 0.3)  # ...this long after its first epoch checkpoint
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_bert_dir), str(tiny_task_csv), str(out)],
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not list((out / "checkpoints").glob(f"*{target}*/last")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the target run's first epoch checkpoint: the study is inside that run
    time.sleep(delay)
    assert child.poll() is None, f"the study ended before the kill ({target}, {delay:.2f} s, seed {seed}): {child.stderr.read()[-2000:]}"
    child.send_signal(signum)
    child.wait()

    before = rows(out)
    finished_before = {key: row["finished_at"] for key, row in before.items() if row["status"] == "ok"}
    assert any(row["status"] == "running" for row in before.values()), before  # killed inside a run
    with sqlite3.connect(out / STORE_FILE) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    resumed = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, epochs=4))
    after = rows(out)
    assert all(after[key]["finished_at"] == finished and after[key]["attempts"] == 1
               for key, finished in finished_before.items()), "a finished run was repeated"
    assert [comparable(r) for r in resumed["runs"]] == [comparable(r) for r in reference["runs"]], f"kill seed {seed}"
    on_disk = json.loads((out / "results.json").read_text())
    assert [comparable(r) for r in on_disk["runs"]] == [comparable(r) for r in reference["runs"]]
    interrupted = [r for r in resumed["runs"] if r["run_key"] not in finished_before]
    assert all(after[r["run_key"]]["attempts"] == 2 for r in interrupted[:1])  # the killed run ran twice
    assert all((out / r["artifact"]).is_dir() for r in resumed["runs"])


def test_a_diverging_run_is_stored_as_failed_and_the_study_goes_on(tiny_bert_dir, tiny_task_csv, tmp_path):
    method_config = tmp_path / "methods.yaml"
    method_config.write_text("lora:\n  learning_rate: 1.0e30\n")
    out = tmp_path / "study"
    config = tiny_config(tiny_bert_dir, tiny_task_csv, out, methods=["lora", "head"], epochs=1,
                         method_config=str(method_config))
    results = compare(config)
    lora, head = results["runs"]
    assert lora["status"] == "failed" and "TrainingDiverged" in lora["reason"] and head["status"] == "ok"
    stored = rows(out)
    assert stored["run/lora/seed=0/lr=default"]["status"] == "failed"
    assert "loss became" in stored["run/lora/seed=0/lr=default"]["reason"]
    assert stored["run/head/seed=0/lr=default"]["status"] == "ok"

    from rich.console import Console

    from peftlab.report import print_table

    console = Console(record=True, width=250)
    print_table(results, console)
    assert "failed: TrainingDiverged" in console.export_text()

    compare(config)  # a failed run is a finished run: not retried unless asked
    assert rows(out)["run/lora/seed=0/lr=default"]["attempts"] == 1
    compare(CompareConfig(**{**config.__dict__, "retry_failed": True}))
    assert rows(out)["run/lora/seed=0/lr=default"]["attempts"] == 2
