"""Leaderboards: runs of one benchmark side by side, with intervals and paired tests.

Everything here reads the results store only: no model is loaded and no data set is needed,
because each stored prediction keeps the sample it was scored against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlmzoo.errors import InputError
from vlmzoo.evaluation.metrics import get_metric
from vlmzoo.evaluation.records import metric_inputs, sample_of
from vlmzoo.evaluation.stats import PairedDifference, mcnemar, paired_bootstrap
from vlmzoo.evaluation.store import Run, Score, Store


@dataclass
class Entry:
    run: Run
    scores: dict[str, Score]
    samples: int
    samples_per_s: float | None
    peak_rss_mb: float | None
    weight_bytes: int | None
    api_usage: dict | None = None  # API models: requests, retries, tokens, cost_usd (None if no price)

    @property
    def cost_usd(self) -> float | None:
        return (self.api_usage or {}).get("cost_usd")


@dataclass
class Leaderboard:
    benchmark: str
    metrics: list[str]
    entries: list[Entry]  # best first on the primary (first) metric
    # per metric: (model b, model a, paired difference b - a, McNemar p or None) against the leader
    tests: dict[str, list[tuple[str, str, PairedDifference, float | None]]] = field(default_factory=dict)


def resolve_runs(store: Store, refs: list[str]) -> list[Run]:
    """Runs named by id prefix, model name or benchmark name (all of that benchmark's runs)."""
    if not refs:
        runs = store.runs()
        if not runs:
            raise InputError(f"{store.path} holds no runs yet; run `vlmzoo eval` first")
        return runs
    out: list[Run] = []
    for ref in refs:
        found = store.find_runs(ref)
        if not found:
            known = ", ".join(f"{r.run_id[:8]} ({r.model} on {r.benchmark})" for r in store.runs()[:10])
            raise InputError(f"no run matches {ref!r} in {store.path}; runs: {known or 'none'}")
        out.extend(r for r in found if r.run_id not in {x.run_id for x in out})
    return out


def leaderboard(store: Store, runs: list[Run], *, resamples: int = 1000, seed: int = 0) -> Leaderboard:
    benchmarks = {r.benchmark for r in runs}
    if len(benchmarks) != 1:
        raise InputError(f"compare runs of one benchmark at a time; got {', '.join(sorted(benchmarks))}")
    unfinished = [r for r in runs if r.finished is None]
    if unfinished:
        names = ", ".join(f"{r.run_id[:8]} ({r.model})" for r in unfinished)
        raise InputError(f"run(s) not finished: {names}; start the same `vlmzoo eval` again to resume them")
    entries = []
    for run in runs:
        stored = store.predictions(run.run_id)
        seconds = sum(p.seconds for p in stored)
        entries.append(Entry(run, {s.metric: s for s in store.scores(run.run_id)}, len(stored),
                             len(stored) / seconds if seconds > 0 else None,
                             run.resources.get("peak_rss_mb"), run.resources.get("weight_bytes"),
                             run.resources.get("api_usage")))
    metrics = [m for m in entries[0].scores] if entries else []
    # the first metric every run could score (a NaN score comes back from SQLite as NULL)
    primary = next((m for m in metrics if all(e.scores.get(m) and e.scores[m].status == "ok"
                                              and e.scores[m].value is not None for e in entries)), None)
    if primary:
        entries.sort(key=lambda e: -e.scores[primary].value)
    board = Leaderboard(next(iter(benchmarks)), metrics, entries)
    if len(entries) > 1:
        board.tests = paired_tests(store, entries, metrics, resamples=resamples, seed=seed)
    return board


def paired_tests(store: Store, entries: list[Entry], metrics: list[str], *, resamples: int, seed: int):
    """Each model against the leader on the samples both have, per metric."""
    task = entries[0].run.config.get("task")
    stored = {e.run.run_id: {p.sample_id: p for p in store.predictions(e.run.run_id)} for e in entries}
    leader = entries[0]
    tests: dict[str, list] = {}
    for name in metrics:
        if any(e.scores.get(name) is None or e.scores[name].status != "ok" for e in entries):
            continue
        metric = get_metric(name)
        for other in entries[1:]:
            a, b = stored[other.run.run_id], stored[leader.run.run_id]
            shared = [sid for sid in a if sid in b]
            if not shared:
                continue
            samples = [sample_of(b[sid].sample) for sid in shared]
            rows_a = metric.rows(metric_inputs(task, [a[s] for s in shared]), samples)
            rows_b = metric.rows(metric_inputs(task, [b[s] for s in shared]), samples)
            diff = paired_bootstrap(rows_a, rows_b, metric.aggregate, resamples=resamples, seed=seed)
            p_mcnemar = mcnemar(rows_a[:, 0], rows_b[:, 0]) if metric.binary else None
            tests.setdefault(name, []).append((leader.run.model, other.run.model, diff, p_mcnemar))
    return tests


def as_dict(board: Leaderboard) -> dict:
    return {
        "benchmark": board.benchmark,
        "metrics": board.metrics,
        "entries": [{
            "run_id": e.run.run_id, "model": e.run.model, "samples": e.samples,
            "samples_per_s": e.samples_per_s, "peak_rss_mb": e.peak_rss_mb, "weight_bytes": e.weight_bytes,
            "api_usage": e.api_usage,
            "scores": {m: {"value": s.value, "low": s.low, "high": s.high, "status": s.status, "detail": s.detail}
                       for m, s in e.scores.items()},
        } for e in board.entries],
        "paired_tests": {m: [{"leader": lead, "other": other, "difference": d.difference, "low": d.low,
                              "high": d.high, "p_bootstrap": d.p_value, "p_mcnemar": p}
                             for lead, other, d, p in rows] for m, rows in board.tests.items()},
    }
