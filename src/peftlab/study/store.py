"""The study store: one SQLite file (OUT/study.sqlite) holding the study's identity and every run's state.

Each run is a row keyed by its run key (method, seed, learning rate; tuning trials have their own keys) with its
status (`running`, `ok`, `failed`, `refused`, and for tuning trials `pruned`), configuration, metrics, cost and timings,
artifact folder and the full record as JSON. Every write is one transaction (the stdlib ``sqlite3`` connection as
a context manager commits or rolls back), so a process killed at any point leaves the last committed state:
a run is either finished with its whole record or not finished. results.json is derived from the store.

Only one process writes (the study's driver, holding the folder's lock: :mod:`peftlab.lock`); worker processes
and Ray tasks return their records to it.

A file that is not a store, or a store damaged inside (a page overwritten: ``PRAGMA quick_check`` on opening,
and any ``sqlite3.DatabaseError`` on a later read or write), is one :class:`ConfigError` saying what is left and
what to do. :func:`set_aside` moves a store away (``--restart``) so that the study starts again.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError
from peftlab.files import CHECKPOINTS_DIR, RESULTS_FILE, RUNS_DIR, STORE_FILE, error_line, jsonable
from peftlab.methods import split_variant

OVERRIDES = "method_overrides"  # the identity's per-method settings (study.inputs.study_identity)

FINISHED = ("ok", "failed", "pruned", "refused")

SCHEMA = """
CREATE TABLE IF NOT EXISTS study (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    phase TEXT NOT NULL,            -- 'run' (a measured run of the study) or 'tune' (a learning-rate trial)
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    learning_rate REAL,             -- NULL: the method's default (or configured) learning rate
    status TEXT NOT NULL,           -- running, ok, failed, refused, pruned
    config TEXT,                    -- JSON: the run's method settings and learning rate
    metrics TEXT,                   -- JSON
    cost TEXT,                      -- JSON: parameters, memory, train seconds, tokens...
    artifact TEXT,                  -- folder under OUT, when saved
    reason TEXT,                    -- why it failed
    record TEXT,                    -- JSON: the whole run record as written to results.json
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    wall_seconds REAL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(jsonable(value), allow_nan=True)


class StudyStore:
    """Transactional access to OUT/study.sqlite."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = None
        try:
            connection = self._connect()
            with connection:
                connection.executescript(SCHEMA)
            problem = connection.execute("PRAGMA quick_check").fetchone()[0]  # reads every page: damage shows now
        except sqlite3.DatabaseError as error:
            raise self._damaged(error) from None
        finally:
            if connection is not None:
                connection.close()
        if problem != "ok":
            raise self._damaged(problem)

    def _damaged(self, error: BaseException | str) -> ConfigError:
        return ConfigError(
            f"{self.path} is not a readable study store: it is damaged ({_short(error)}); the runs' artifacts "
            f"({RUNS_DIR}/) and {RESULTS_FILE} beside it are still there; move {self.path.name} away (--restart "
            "does, keeping it as a .bak) or pass another --out to start the study again")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60)
        connection.row_factory = sqlite3.Row
        return connection

    def _execute(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        try:
            connection = self._connect()
        except sqlite3.DatabaseError as error:
            raise self._damaged(error) from None
        try:
            with connection:  # one transaction: committed on success, rolled back on error
                return connection.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as error:
            raise self._damaged(error) from None
        finally:
            connection.close()

    # --- the study's identity ----------------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        rows = self._execute("SELECT value FROM study WHERE name = ?", (name,))
        return self._json(rows[0]["value"]) if rows else None

    def put(self, name: str, value: Any) -> None:
        self._execute("INSERT INTO study (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                      (name, _dump(value)))

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Record what defines the study on first use; a different study in the same folder is refused."""
        stored = self.get("identity")
        if stored is None:
            self.put("identity", identity)
            return
        identity = jsonable(identity)
        changed = sorted(key for key in set(stored) | set(identity) if not _same_part(key, stored.get(key),
                                                                                     identity.get(key)))
        if changed:
            raise ConfigError(f"{self.path.parent} holds a different study (it differs in {', '.join(changed)}); "
                              "re-run with the same options to resume it, pass another --out, or add --restart to "
                              f"move its store aside ({self.path.name}.<time>.bak, artifacts kept) and start again")
        if stored != identity:  # variants added: they are part of the study from now on
            overrides = {**(stored.get(OVERRIDES) or {}), **(identity.get(OVERRIDES) or {})}
            self.put("identity", {**identity, OVERRIDES: overrides})

    def _json(self, text: str | None) -> Any:
        try:
            return json.loads(text) if text is not None else None
        except ValueError as error:  # bytes changed inside a row: valid pages, unreadable values
            raise self._damaged(f"a stored value is not JSON: {error}") from None

    def _row(self, row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        for key in ("config", "metrics", "cost", "record"):
            data[key] = self._json(data[key])
        return data

    # --- runs ----------------------------------------------------------------------------------------------------

    def run(self, run_key: str) -> dict[str, Any] | None:
        rows = self._execute("SELECT * FROM runs WHERE run_key = ?", (run_key,))
        return self._row(rows[0]) if rows else None

    def runs(self, phase: str | None = None) -> list[dict[str, Any]]:
        sql, parameters = "SELECT * FROM runs", ()
        if phase:
            sql, parameters = sql + " WHERE phase = ?", (phase,)
        return [self._row(row) for row in self._execute(sql + " ORDER BY rowid", parameters)]

    def start(self, run_key: str, phase: str, method: str, seed: int, learning_rate: float | None) -> int:
        """Mark a run as running (counting the attempt); returns how many times it has been started."""
        self._execute(
            "INSERT INTO runs (run_key, phase, method, seed, learning_rate, status, attempts, started_at) "
            "VALUES (?, ?, ?, ?, ?, 'running', 1, ?) ON CONFLICT(run_key) DO UPDATE SET status = 'running', "
            "attempts = attempts + 1, started_at = excluded.started_at",
            (run_key, phase, method, seed, learning_rate, _now()))
        return self.run(run_key)["attempts"]

    def finish(self, run_key: str, record: dict[str, Any], wall_seconds: float | None = None) -> None:
        """Store a run's final record (status ok, failed, refused or pruned) in one transaction."""
        self._execute(
            "UPDATE runs SET status = ?, config = ?, metrics = ?, cost = ?, artifact = ?, reason = ?, record = ?, "
            "finished_at = ?, wall_seconds = ? WHERE run_key = ?",
            (record["status"], _dump(record.get("config")), _dump(record.get("metrics")), _dump(record.get("cost")),
             record.get("artifact"), record.get("reason"), _dump(record), _now(), wall_seconds, run_key))

    def finished(self, run_key: str) -> bool:
        row = self.run(run_key)
        return row is not None and row["status"] in FINISHED


def set_aside(folder: str | Path) -> Path | None:
    """Move a study folder's store aside so that the study starts again (``--restart``): study.sqlite (with any
    journal SQLite left beside it) and results.json become ``<name>.<UTC time>.bak``; the epoch checkpoints of
    unfinished runs (which would resume under the new study) are deleted; the runs' artifacts stay (each is
    replaced when the new study saves that run). Returns the store's new path, or None when there was none."""
    folder = Path(folder)
    store = folder / STORE_FILE
    if not store.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix, n = f".{stamp}.bak", 1
    while (folder / f"{STORE_FILE}{suffix}").exists():
        suffix, n = f".{stamp}-{n}.bak", n + 1
    for name in (STORE_FILE, f"{STORE_FILE}-journal", f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", RESULTS_FILE):
        if (folder / name).exists():
            os.replace(folder / name, folder / f"{name}{suffix}")
    shutil.rmtree(folder / CHECKPOINTS_DIR, ignore_errors=True)
    return folder / f"{STORE_FILE}{suffix}"


def _short(error: BaseException | str, limit: int = 80) -> str:
    """SQLite's message in one short printable line (a decoding error quotes the damaged bytes)."""
    text = "".join(c if c.isascii() and c.isprintable() else "?" for c in error_line(error, limit=None))
    return text if len(text) <= limit else text[:limit] + "..."


def _same_part(key: str, stored: Any, new: Any) -> bool:
    """Whether one part of the study's identity is unchanged. The per-method overrides may gain or lose the entries of
    variants (``lora[r=4]``), whose settings are in their names: adding a variant to --methods (or --sweep) adds
    runs to the same study. An entry in both must be equal, and a plain method's entry may not appear or go: its
    stored runs were made without it, or with it."""
    if key != OVERRIDES or not isinstance(stored, dict) or not isinstance(new, dict):
        return stored == new
    names = {name for name in set(stored) | set(new)
             if not split_variant(name)[1] or (name in stored and name in new)}
    return all(stored.get(name) == new.get(name) for name in names)

