"""The results store: one SQLite file holding runs, every sample's prediction, and scores.

Why SQLite: a run killed at any moment (kill -9 included) must resume without losing or
repeating a sample. Each batch of predictions is written in one transaction, so after a crash
the file holds whole batches only; the primary key (run, sample) makes a sample impossible to
store twice. WAL journaling lets a report read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from vlmzoo.errors import VlmzooError

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
        if self.path.exists() and self.path.is_dir():
            raise VlmzooError(f"results store {self.path} is a folder; give a file path such as results.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses no committed batch
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise VlmzooError(f"{self.path} is not a vlmzoo results store: {e}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- runs -------------------------------------------------------------------------------------

    def open_run(self, run_id: str, model: str, benchmark: str, config: dict, samples: int) -> Run:
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO runs (run_id, model, benchmark, config, created, samples) VALUES (?,?,?,?,?,?)",
                (run_id, model, benchmark, json.dumps(config, sort_keys=True), time.time(), samples))
        return self.run(run_id)

    def run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT run_id, model, benchmark, config, created, finished, samples, resources "
                              "FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise VlmzooError(f"no run {run_id!r} in {self.path}")
        return Run(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], json.loads(row[7] or "{}"))

    def runs(self) -> list[Run]:
        ids = [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created")]
        return [self.run(i) for i in ids]

    def find_runs(self, ref: str) -> list[Run]:
        """Runs whose id starts with ``ref``, or whose model or benchmark equals it."""
        return [r for r in self.runs() if r.run_id.startswith(ref) or ref in (r.model, r.benchmark)]

    def set_resources(self, run_id: str, resources: dict) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET resources = ? WHERE run_id = ?", (json.dumps(resources), run_id))

    def mark_finished(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))

    # -- predictions ------------------------------------------------------------------------------

    def done_ids(self, run_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT sample_id FROM predictions WHERE run_id = ?", (run_id,))}

    def add_predictions(self, run_id: str, rows: list[StoredPrediction]) -> None:
        """One batch, all or nothing."""
        with self.db:
            self.db.executemany(
                "INSERT INTO predictions (run_id, sample_id, position, prediction, raw, seconds, extra, sample) "
                "VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, p.sample_id, p.position, json.dumps(p.prediction), p.raw, p.seconds, p.extra,
                  json.dumps(p.sample)) for p in rows])

    def predictions(self, run_id: str) -> list[StoredPrediction]:
        rows = self.db.execute("SELECT sample_id, position, prediction, raw, seconds, extra, sample FROM predictions "
                               "WHERE run_id = ? ORDER BY position", (run_id,))
        return [StoredPrediction(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], json.loads(r[6] or "{}"))
                for r in rows]

    # -- scores -----------------------------------------------------------------------------------

    def put_scores(self, run_id: str, scores: list[Score], per_sample: dict[str, dict[str, float]]) -> None:
        """Replace the run's scores (re-scoring is always allowed and never touches predictions)."""
        with self.db:
            self.db.execute("DELETE FROM scores WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM sample_scores WHERE run_id = ?", (run_id,))
            self.db.executemany(
                "INSERT INTO scores (run_id, metric, value, low, high, samples, status, detail) VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, s.metric, s.value, s.low, s.high, s.samples, s.status, s.detail) for s in scores])
            self.db.executemany(
                "INSERT INTO sample_scores (run_id, sample_id, metric, value) VALUES (?,?,?,?)",
                [(run_id, sid, metric, v) for metric, values in per_sample.items() for sid, v in values.items()])

    def scores(self, run_id: str) -> list[Score]:
        rows = self.db.execute("SELECT metric, value, low, high, samples, status, detail FROM scores "
                               "WHERE run_id = ? ORDER BY rowid", (run_id,))
        return [Score(*r) for r in rows]

    def sample_scores(self, run_id: str, metric: str) -> dict[str, float]:
        rows = self.db.execute("SELECT sample_id, value FROM sample_scores WHERE run_id = ? AND metric = ?",
                               (run_id, metric))
        return dict(rows.fetchall())
