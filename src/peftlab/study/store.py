"""The study store: one SQLite file (OUT/study.sqlite) holding the study's identity and every run's state.

Each run is a row keyed by its run key (method, seed, learning rate; tuning trials have their own keys) with its
status (`running`, `ok`, `failed`, and for tuning trials `pruned`), configuration, metrics, cost and timings,
artifact folder and the full record as JSON. Every write is one transaction (the stdlib ``sqlite3`` connection as
a context manager commits or rolls back), so a process killed at any point leaves the last committed state:
a run is either finished with its whole record or not finished. results.json is derived from the store.

Only one process writes (the study's driver); worker processes and Ray tasks return their records to it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError
from peftlab.files import jsonable

FINISHED = ("ok", "failed", "pruned")

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
    status TEXT NOT NULL,           -- running, ok, failed, pruned
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
        try:
            with self._connect() as connection:
                connection.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise ConfigError(f"{self.path} is not a readable study store ({error}); pass another --out") from None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60)
        connection.row_factory = sqlite3.Row
        return connection

    def _execute(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        connection = self._connect()
        try:
            with connection:  # one transaction: committed on success, rolled back on error
                return connection.execute(sql, parameters).fetchall()
        finally:
            connection.close()

    # --- the study's identity ----------------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        rows = self._execute("SELECT value FROM study WHERE name = ?", (name,))
        return json.loads(rows[0]["value"]) if rows else None

    def put(self, name: str, value: Any) -> None:
        self._execute("INSERT INTO study (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                      (name, _dump(value)))

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Record what defines the study on first use; a different study in the same folder is refused."""
        stored = self.get("identity")
        if stored is None:
            self.put("identity", identity)
            return
        changed = sorted(key for key in set(stored) | set(identity) if stored.get(key) != jsonable(identity.get(key)))
        if changed:
            raise ConfigError(f"{self.path.parent} holds a different study (it differs in {', '.join(changed)}); "
                              "re-run with the same options to resume it, or pass another --out")

    # --- runs ----------------------------------------------------------------------------------------------------

    def run(self, run_key: str) -> dict[str, Any] | None:
        rows = self._execute("SELECT * FROM runs WHERE run_key = ?", (run_key,))
        return _row(rows[0]) if rows else None

    def runs(self, phase: str | None = None) -> list[dict[str, Any]]:
        sql, parameters = "SELECT * FROM runs", ()
        if phase:
            sql, parameters = sql + " WHERE phase = ?", (phase,)
        return [_row(row) for row in self._execute(sql + " ORDER BY rowid", parameters)]

    def start(self, run_key: str, phase: str, method: str, seed: int, learning_rate: float | None) -> int:
        """Mark a run as running (counting the attempt); returns how many times it has been started."""
        self._execute(
            "INSERT INTO runs (run_key, phase, method, seed, learning_rate, status, attempts, started_at) "
            "VALUES (?, ?, ?, ?, ?, 'running', 1, ?) ON CONFLICT(run_key) DO UPDATE SET status = 'running', "
            "attempts = attempts + 1, started_at = excluded.started_at",
            (run_key, phase, method, seed, learning_rate, _now()))
        return self.run(run_key)["attempts"]

    def finish(self, run_key: str, record: dict[str, Any], wall_seconds: float | None = None) -> None:
        """Store a run's final record (status ok, failed or pruned) in one transaction."""
        self._execute(
            "UPDATE runs SET status = ?, config = ?, metrics = ?, cost = ?, artifact = ?, reason = ?, record = ?, "
            "finished_at = ?, wall_seconds = ? WHERE run_key = ?",
            (record["status"], _dump(record.get("config")), _dump(record.get("metrics")), _dump(record.get("cost")),
             record.get("artifact"), record.get("reason"), _dump(record), _now(), wall_seconds, run_key))

    def finished(self, run_key: str) -> bool:
        row = self.run(run_key)
        return row is not None and row["status"] in FINISHED


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    for key in ("config", "metrics", "cost", "record"):
        data[key] = json.loads(data[key]) if data[key] is not None else None
    return data
