"""The results store: one SQLite file holding runs, every sample's prediction, and scores.

Why SQLite: a run killed at any moment (kill -9 included) must resume without losing or
repeating a sample. Each batch of predictions is written in one transaction, so after a crash
the file holds whole batches only; the primary key (run, sample) makes a sample impossible to
store twice. WAL journaling lets a report read while a run writes.

Several processes may write one store at once, even the same run (two ``vlmzoo eval`` of one
command): a writer waits up to ``BUSY_SECONDS`` for another's transaction, and a prediction
already stored (by whichever process was first) counts as stored, as does an opened run.

A file that cannot serve as a store (not SQLite, damaged, read-only, unreadable, held too long by
another process) is a ``StoreError``: one line naming the file and what to do, never an sqlite3
traceback. Model names and API base URLs are stored and read without URL credentials.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vlmzoo.errors import StoreError
from vlmzoo.urls import public_url
from vlmzoo.names import public_name

BUSY_SECONDS = 30.0  # how long a writer waits for another process's transaction before giving up
OUR_TABLES = ("runs", "predictions", "scores", "sample_scores")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    config TEXT NOT NULL,          -- JSON: everything that determines the outputs, and the versions
    created REAL NOT NULL,
    finished REAL,                 -- set when every sample has a prediction and scores are written
    samples INTEGER,               -- how many samples the run covers
    resources TEXT                 -- JSON: peak memory, weight bytes (measured, not part of the identity)
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    sample_id TEXT NOT NULL,
    position INTEGER NOT NULL,     -- the sample's place in the benchmark, for stable ordering
    prediction TEXT NOT NULL,      -- JSON: what the metrics read (text, ranked labels, a box)
    raw TEXT,                      -- the model's output before answer extraction
    seconds REAL NOT NULL,         -- model time for this sample (its share of the batch)
    extra BLOB,                    -- e.g. embeddings for retrieval (float32 bytes)
    sample TEXT,                   -- JSON: the sample as scored (question, references, images, category)
    PRIMARY KEY (run_id, sample_id)
);
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    metric TEXT NOT NULL,
    value REAL,
    low REAL,
    high REAL,
    samples INTEGER,
    status TEXT NOT NULL,          -- "ok" or "unavailable"
    detail TEXT,                   -- why unavailable
    PRIMARY KEY (run_id, metric)
);
CREATE TABLE IF NOT EXISTS sample_scores (
    run_id TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, sample_id, metric)
);
"""


@dataclass(frozen=True)
class Run:
    run_id: str
    model: str
    benchmark: str
    config: dict
    created: float
    finished: float | None
    samples: int | None
    resources: dict


@dataclass(frozen=True)
class StoredPrediction:
    sample_id: str
    position: int
    prediction: object
    raw: str | None
    seconds: float
    extra: bytes | None
    sample: dict


@dataclass(frozen=True)
class Score:
    metric: str
    value: float | None
    low: float | None
    high: float | None
    samples: int | None
    status: str
    detail: str | None


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a folder: give a file path such as "
                             f"--store {self.path / 'results.db'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create results store {self.path}: its folder {self.path.parent} cannot be "
                             f"made ({e.strerror or e}); pass --store with a path in a folder you can write") from None
        self.db = None
        try:
            # IMMEDIATE: a write transaction takes the write lock when it begins (waiting up to the
            # busy timeout), so two writers never deadlock upgrading a read
            self.db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level="IMMEDIATE")
            self._set_up()
        except BaseException as e:
            if self.db is not None:
                self.db.close()
            if isinstance(e, sqlite3.DatabaseError):
                raise self._error(e) from None
            raise

    def _set_up(self) -> None:
        """WAL journaling and the tables; retried while another process is creating the same file
        (switching a new file to WAL does not always wait for the busy timeout)."""
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables and "runs" not in tables:
                    raise StoreError(f"{self.path} is a SQLite database but not a vlmzoo results store (it holds "
                                     f"{', '.join(sorted(tables)[:5])}): pass --store with another file")
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses no committed batch
                if not set(OUR_TABLES) <= tables:
                    self.db.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _error(self, e: sqlite3.Error) -> StoreError:
        """The sqlite3 error ``e`` as one line naming the store and what to do."""
        p = self.path
        name = (getattr(e, "sqlite_errorname", None) or "").upper()
        text = str(e)
        instead = "or pass --store NEW to use another file"
        if name.startswith("SQLITE_NOTADB") or "not a database" in text:
            return StoreError(f"results store {p} is not a SQLite database (damaged, or another kind of file?): "
                              f"move it aside {instead}")
        if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
            return StoreError(f"results store {p} is damaged ({text}): move it aside (`sqlite3 {p} .recover` may "
                              f"save its rows) {instead}")
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return StoreError(f"results store {p} is read-only (the file, or its folder, cannot be written): make "
                              f"both writable {instead}")
        if _is_busy(e):
            return StoreError(f"results store {p} is busy: another process has held it for over {BUSY_SECONDS:g} s; "
                              f"try again when it is done, {instead}")
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            if p.exists() and not _can(p, os.R_OK):
                return StoreError(f"results store {p} cannot be read by this user (permission denied): give it "
                                  f"read and write access (chmod u+rw {p}) {instead}")
            if not p.exists():
                return StoreError(f"cannot create results store {p}: its folder cannot be written; pass --store "
                                  f"with a path in a folder you can write")
            return StoreError(f"cannot open results store {p} ({text}): check the file and its folder, {instead}")
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            return StoreError(f"results store {p}: the disk is full; free some space {instead}")
        return StoreError(f"results store {p} cannot be used ({text}): check the file, {instead}")

    @contextmanager
    def _sql(self):
        """Around every use of the file: an sqlite3 error about it becomes a StoreError. An
        IntegrityError is a caller's mistake (a row the tables refuse), not the file's: it stays."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._error(e) from None

    def close(self) -> None:
        with self._sql():
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- runs -------------------------------------------------------------------------------------

    def open_run(self, run_id: str, model: str, benchmark: str, config: dict, samples: int) -> Run:
        """The run, created if new. Opened already (a resume, or another process of the same run
        first), it is kept as it is."""
        model, config = _public(model, config)
        with self._sql(), self.db:
            self.db.execute(
                "INSERT INTO runs (run_id, model, benchmark, config, created, samples) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (run_id) DO NOTHING",
                (run_id, model, benchmark, json.dumps(config, sort_keys=True), time.time(), samples))
        return self.run(run_id)

    def run(self, run_id: str) -> Run:
        with self._sql():
            row = self.db.execute("SELECT run_id, model, benchmark, config, created, finished, samples, resources "
                                  "FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        # read without URL credentials too: a store written before they were left out shows none
        model, config = _public(row[1], json.loads(row[3]))
        return Run(row[0], model, row[2], config, row[4], row[5], row[6], json.loads(row[7] or "{}"))

    def runs(self) -> list[Run]:
        with self._sql():
            ids = [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created").fetchall()]
        return [self.run(i) for i in ids]

    def find_runs(self, ref: str) -> list[Run]:
        """Runs whose id starts with ``ref``, or whose model or benchmark equals it (a model name
        with credentials in its URL finds the run stored without them)."""
        return [r for r in self.runs()
                if r.run_id.startswith(ref) or ref in (r.model, r.benchmark) or public_name(ref) == r.model]

    def set_resources(self, run_id: str, resources: dict) -> None:
        with self._sql(), self.db:
            self.db.execute("UPDATE runs SET resources = ? WHERE run_id = ?", (json.dumps(resources), run_id))

    def mark_finished(self, run_id: str) -> None:
        with self._sql(), self.db:
            self.db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))

    # -- predictions ------------------------------------------------------------------------------

    def done_ids(self, run_id: str) -> set[str]:
        with self._sql():
            return {r[0] for r in self.db.execute("SELECT sample_id FROM predictions WHERE run_id = ?",
                                                  (run_id,)).fetchall()}

    def add_predictions(self, run_id: str, rows: list[StoredPrediction]) -> None:
        """One batch, all or nothing. A sample already stored for the run (another process of the
        same run stored it first) counts as stored: its row is kept, the rest of the batch goes in."""
        with self._sql(), self.db:
            self.db.executemany(
                # only the (run, sample) conflict is let pass: a row breaking another rule still fails the batch
                "INSERT INTO predictions (run_id, sample_id, position, prediction, raw, seconds, extra, sample) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id, sample_id) DO NOTHING",
                [(run_id, p.sample_id, p.position, json.dumps(p.prediction), p.raw, p.seconds, p.extra,
                  json.dumps(p.sample)) for p in rows])

    def predictions(self, run_id: str) -> list[StoredPrediction]:
        with self._sql():
            rows = self.db.execute("SELECT sample_id, position, prediction, raw, seconds, extra, sample "
                                   "FROM predictions WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        return [StoredPrediction(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], json.loads(r[6] or "{}"))
                for r in rows]

    # -- scores -----------------------------------------------------------------------------------

    def put_scores(self, run_id: str, scores: list[Score], per_sample: dict[str, dict[str, float]]) -> None:
        """Replace the run's scores (re-scoring is always allowed and never touches predictions)."""
        with self._sql(), self.db:
            self.db.execute("DELETE FROM scores WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM sample_scores WHERE run_id = ?", (run_id,))
            self.db.executemany(
                "INSERT INTO scores (run_id, metric, value, low, high, samples, status, detail) VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, s.metric, s.value, s.low, s.high, s.samples, s.status, s.detail) for s in scores])
            self.db.executemany(
                "INSERT INTO sample_scores (run_id, sample_id, metric, value) VALUES (?,?,?,?)",
                [(run_id, sid, metric, v) for metric, values in per_sample.items() for sid, v in values.items()])

    def scores(self, run_id: str) -> list[Score]:
        with self._sql():
            rows = self.db.execute("SELECT metric, value, low, high, samples, status, detail FROM scores "
                                   "WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        return [Score(*r) for r in rows]

    def sample_scores(self, run_id: str, metric: str) -> dict[str, float]:
        with self._sql():
            rows = self.db.execute("SELECT sample_id, value FROM sample_scores WHERE run_id = ? AND metric = ?",
                                   (run_id, metric)).fetchall()
        return dict(rows)


def _public(model: str, config: dict) -> tuple[str, dict]:
    """A run's model name and config without credentials in URLs (names.public_name and
    urls.public_url): an API run's model name and base URL."""
    config = dict(config)
    if isinstance(config.get("model"), str):
        config["model"] = public_name(config["model"])
    checkpoint = config.get("checkpoint")
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("base_url"), str):
        config["checkpoint"] = {**checkpoint, "base_url": public_url(checkpoint["base_url"])}
    return public_name(model), config


def _is_busy(e: sqlite3.Error) -> bool:
    name = (getattr(e, "sqlite_errorname", None) or "").upper()
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(e) or "busy" in str(e)


def _can(path: Path, mode: int) -> bool:
    """``os.access`` for this process's effective user (the one that opens the file)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)
