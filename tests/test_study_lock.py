"""One writer per study folder, and the store's robustness to bad states: two compares on one --out (one trains,
the other is refused in one line, or waits with --wait and then trains nothing), a lock left by a SIGKILLed process
taken over, a page-corrupted study.sqlite as one error line, the Ctrl-C message, the emptied checkpoints/ removed,
and --restart setting an old store aside.

The two-process tests are deterministic: the process that holds the lock is paused (SIGSTOP) until the other one
has met the lock, so "the first finished before the second started" cannot happen on a slow machine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from peftlab import CompareConfig, compare
from peftlab.cli import interrupted_message
from peftlab.errors import ConfigError
from peftlab.files import CHECKPOINTS_DIR, LOCK_FILE, RESULTS_FILE, STORE_FILE
from peftlab.lock import StudyInUse, StudyLock, lock_holder
from peftlab.study.store import StudyStore
from conftest import FIXED_RATES, FIXED_RATES_CLI

RUN_KEYS = {"run/full/seed=0/lr=default", "run/head/seed=0/lr=default"}
TIMEOUT = 300


def tiny_config(tiny_bert_dir, tiny_task_csv, out, **overrides) -> CompareConfig:
    settings = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "head"], epochs=1,
                    batch_size=16, out=str(out), robustness=False, diagnose=False, **FIXED_RATES)
    settings.update(overrides)
    return CompareConfig(**settings)


def cli_args(tiny_bert_dir, tiny_task_csv, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "peftlab.cli", "compare", "--model", str(tiny_bert_dir), "--data",
            str(tiny_task_csv), "--methods", "full,head", "--epochs", "1", "--batch-size", "16", "--no-robustness",
            "--no-diagnose", *FIXED_RATES_CLI, "--out", str(out), *extra]


def _default_sigint() -> None:
    """Ctrl-C reaches the child even when the tests run in the background of a non-interactive shell (which starts
    them with SIGINT ignored, a disposition children inherit and Python then keeps)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Cli:
    """A `peftlab compare` subprocess whose output goes to files, so that it can be read while it runs."""

    def __init__(self, args: list[str], logs: Path, name: str):
        self.stdout_path, self.stderr_path = logs / f"{name}.out", logs / f"{name}.err"
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(args, stdout=stdout, stderr=stderr,
                                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                                 "OMP_NUM_THREADS": "1"},
                                            preexec_fn=_default_sigint)
        self.pid = self.process.pid

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self) -> int:
        return self.process.wait(timeout=TIMEOUT)

    def describe(self) -> str:
        return f"rc {self.process.poll()}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait()


def wait_for(condition, what: str, *processes: Cli) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        ended = [p for p in processes if p.process.poll() is not None]
        assert not ended, f"ended while waiting for {what}: " + "\n".join(p.describe() for p in ended)
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def holder_pid(out: Path) -> int | None:
    pid = lock_holder(out).get("pid")
    return int(pid) if pid else None


def trained(cli: Cli) -> list[str]:
    """The methods whose run this process executed (the CLI prints `method: ok, ...` after each)."""
    return re.findall(r"^(\w+): ok", cli.stdout, flags=re.MULTILINE)


def store_attempts(out: Path) -> dict[str, int]:
    return {row["run_key"]: row["attempts"] for row in StudyStore(out / STORE_FILE).runs() if row["status"] == "ok"}


# --- one writer -------------------------------------------------------------------------------------------------

def test_two_compares_started_together_one_trains_the_other_is_refused(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    both = [Cli(cli_args(tiny_bert_dir, tiny_task_csv, out), tmp_path, name) for name in ("a", "b")]
    try:
        # Whichever takes the lock first is paused while holding it: the other surely meets it.
        wait_for(lambda: holder_pid(out) in {cli.pid for cli in both}, "a process to take the lock")
        winner = next(cli for cli in both if cli.pid == holder_pid(out))
        loser = next(cli for cli in both if cli is not winner)
        winner.stop()
        assert loser.wait() == 2, loser.describe()
        winner.resume()
        assert winner.wait() == 0, winner.describe()
    finally:
        for cli in both:
            cli.kill()
    lines = [line for line in loser.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in loser.stderr + loser.stdout, loser.describe()
    assert re.fullmatch(rf"error: the study in {re.escape(str(out))} is in use by process {winner.pid} \(started at "
                        r"[0-9T:+-]+\); wait for it \(--wait\) or pass another --out", lines[0]), lines[0]
    assert trained(loser) == [] and sorted(trained(winner)) == ["full", "head"]
    assert store_attempts(out) == dict.fromkeys(RUN_KEYS, 1)  # every run trained once
    assert lock_holder(out) == {}  # released by the winner on exit


def test_with_wait_the_second_compare_waits_then_finds_every_run_finished(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    first = Cli(cli_args(tiny_bert_dir, tiny_task_csv, out), tmp_path, "first")
    second = None
    try:
        wait_for(lambda: holder_pid(out) == first.pid, "the first compare to take the lock", first)
        first.stop()
        second = Cli(cli_args(tiny_bert_dir, tiny_task_csv, out, "--wait"), tmp_path, "second")
        wait_for(lambda: f"process {first.pid} " in second.stderr, "the second compare to wait", second)
        assert any(line.startswith(f"waiting: the study in {out} is in use by process {first.pid} (started at")
                   for line in second.stderr.splitlines()), second.describe()
        assert second.process.poll() is None
        first.resume()
        assert first.wait() == 0, first.describe()
        assert second.wait() == 0, second.describe()
    finally:
        first.kill()
        if second:
            second.kill()
    assert sorted(trained(first)) == ["full", "head"]
    assert trained(second) == [], "the waiting compare trained again what the first one finished"
    assert f"results: {out}/results.json" in second.stdout
    assert store_attempts(out) == dict.fromkeys(RUN_KEYS, 1)


LOCK_AND_SLEEP = textwrap.dedent("""
    import sys, time
    from peftlab.lock import StudyLock
    StudyLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "study"
    child = subprocess.Popen([sys.executable, "-c", LOCK_AND_SLEEP, str(out)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StudyInUse, match=rf"in use by process {child.pid} \(started at .*\); wait for it"):
            StudyLock(out).acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert holder_pid(out) == child.pid  # its text is left behind, but the kernel released its lock
    with StudyLock(out).acquire() as lock:
        assert lock.held and holder_pid(out) == os.getpid()
    assert lock_holder(out) == {} and (out / LOCK_FILE).is_file()  # released; the file stays (see peftlab.lock)


def test_a_lock_is_waited_for_and_a_second_holder_in_one_process_is_refused(tmp_path):
    held = StudyLock(tmp_path).acquire()
    with pytest.raises(StudyInUse, match=f"process {os.getpid()} "):
        StudyLock(tmp_path).acquire()  # flock is per open file: a second acquire, even here, is refused
    told = []
    with pytest.raises(StudyInUse):
        StudyLock(tmp_path).acquire(wait=False, on_wait=told.append)
    assert told == []
    held.release()
    held.release()  # twice is harmless
    with StudyLock(tmp_path).acquire(wait=True, on_wait=told.append):
        assert told == []  # free: nothing to wait for


# --- a damaged store --------------------------------------------------------------------------------------------

def _corrupt(path: Path, where: str) -> None:
    """Overwrite 512 bytes of a valid store: a b-tree page's header, or the middle of the file (row contents)."""
    size = path.stat().st_size
    assert size >= 4 * 4096, size
    with open(path, "r+b") as handle:
        handle.seek(4096 * 2 if where == "page header" else size // 2)
        handle.write(b"\xff" * 512)


def _filled_store(path: Path) -> StudyStore:
    store = StudyStore(path)
    store.check_identity({"model": "m"})
    for i in range(40):
        key = f"run/m{i}/seed=0/lr=default"
        store.start(key, "run", f"m{i}", 0, None)
        store.finish(key, {"status": "ok", "metrics": {"accuracy": 0.5}, "curve": list(range(200))}, 1.0)
    return store


@pytest.mark.parametrize("where", ["page header", "middle"])
def test_a_page_corrupted_store_is_one_clear_error(tmp_path, where):
    path = tmp_path / STORE_FILE
    _filled_store(path)
    _corrupt(path, where)
    with pytest.raises(ConfigError) as caught:
        store = StudyStore(path)
        store.get("identity")
        store.runs()
    message = str(caught.value)
    assert "is not a readable study store: it is damaged (" in message and "\n" not in message
    assert "move study.sqlite away" in message and "results.json beside it are still there" in message
    assert message.isascii() and len(message) - len(str(path)) < 330, message  # no damaged bytes at length


def test_a_page_corrupted_store_through_the_cli_then_restart(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    compare(tiny_config(tiny_bert_dir, tiny_task_csv, out))
    with StudyStore(out / STORE_FILE)._connect() as connection:  # grow the file past a few pages
        connection.execute("CREATE TABLE padding (value TEXT)")
        connection.executemany("INSERT INTO padding VALUES (?)", [("x" * 1000,) for _ in range(40)])
    connection.close()
    _corrupt(out / STORE_FILE, "page header")
    done = subprocess.run(cli_args(tiny_bert_dir, tiny_task_csv, out), capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert lines[0].startswith(f"error: {out / STORE_FILE} is not a readable study store: it is damaged"), lines[0]

    results = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, restart=True))  # sets it aside, runs again
    assert [run["status"] for run in results["runs"]] == ["ok", "ok"]
    backups = sorted(out.glob(f"{STORE_FILE}.*.bak"))
    assert len(backups) == 1 and re.fullmatch(r"study\.sqlite\.\d{8}T\d{6}Z\.bak", backups[0].name)
    assert len(list(out.glob(f"{RESULTS_FILE}.*.bak"))) == 1
    assert store_attempts(out) == dict.fromkeys(RUN_KEYS, 1)


# --- restart, interrupt, checkpoints ----------------------------------------------------------------------------

def test_a_changed_study_names_restart_and_restart_sets_the_old_store_aside(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    first = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out))
    assert not (out / CHECKPOINTS_DIR).exists()  # the emptied checkpoints/ is removed at the end
    (out / CHECKPOINTS_DIR / "run_left_by_the_old_study").mkdir(parents=True)
    with pytest.raises(ConfigError) as caught:
        compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, epochs=2, retry_failed=True))
    message = str(caught.value)
    assert "holds a different study (it differs in budget)" in message and "\n" not in message
    assert "pass another --out" in message and "add --restart" in message

    second = compare(tiny_config(tiny_bert_dir, tiny_task_csv, out, epochs=2, restart=True))
    backup = next(out.glob(f"{STORE_FILE}.*.bak"))
    old = StudyStore(backup)
    assert old.get("identity")["budget"]["epochs"] == 1 and len(old.runs()) == 2  # the old study, intact
    assert StudyStore(out / STORE_FILE).get("identity")["budget"]["epochs"] == 2
    assert [run["cost"]["train_steps"] for run in second["runs"]] == [2 * r["cost"]["train_steps"] for r in first["runs"]]
    assert store_attempts(out) == dict.fromkeys(RUN_KEYS, 1)
    assert all((out / run["artifact"]).is_dir() for run in second["runs"])
    assert not (out / CHECKPOINTS_DIR).exists()  # the old study's checkpoints do not resume under the new one


def test_the_interrupt_message_says_whether_a_run_had_finished(tmp_path):
    assert interrupted_message(tmp_path) == (f"interrupted; no run had finished (re-run the same command to start "
                                             f"the study in {tmp_path} again)")
    (tmp_path / RESULTS_FILE).write_text("{}")
    assert interrupted_message(tmp_path) == f"interrupted; the runs that finished are in {tmp_path}/results.json"


def test_ctrl_c_before_any_run_finished(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    cli = Cli(cli_args(tiny_bert_dir, tiny_task_csv, out, "--max-steps", "100000"), tmp_path, "interrupted")
    try:
        wait_for(lambda: holder_pid(out) == cli.pid, "the compare to take the lock", cli)
        os.kill(cli.pid, signal.SIGINT)
        assert cli.wait() == 130, cli.describe()
    finally:
        cli.kill()
    assert "no run had finished" in cli.stderr and "Traceback" not in cli.stderr, cli.describe()
    assert not (out / RESULTS_FILE).exists() and lock_holder(out) == {}
