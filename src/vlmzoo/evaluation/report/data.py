"""What the HTML report shows, read from the store: leaderboards, model sizes, per-category
means and the samples where models disagree. No HTML here (that is page.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from vlmzoo.errors import InputError
from vlmzoo.evaluation.compare import Entry, Leaderboard, leaderboard
from vlmzoo.evaluation.store import Run, Store, StoredPrediction

BYTES_PER_PARAMETER = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}
NO_CATEGORY = "(no category)"


@dataclass
class CategoryTable:
    metric: str
    counts: dict[str, int]  # category -> samples in it (over all runs)
    means: dict[tuple[str, str], float]  # (run id, category) -> mean per-sample score


@dataclass
class BenchmarkView:
    board: Leaderboard
    primary: str | None  # the metric the scatters plot
    sizes: dict[str, tuple[float, str]]  # run id -> (parameters, where the number comes from)
    predictions: dict[str, dict[str, StoredPrediction]]  # run id -> sample id -> prediction
    sample_scores: dict[str, dict[str, dict[str, float]]]  # run id -> metric -> sample id -> score
    categories: list[CategoryTable] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)  # sample ids, most telling first


def check_runs(runs: list[Run]) -> None:
    if not runs:
        raise InputError("no runs to report on; name run ids, model names or a benchmark")
    unfinished = [r for r in runs if r.finished is None]
    if unfinished:
        names = ", ".join(f"{r.run_id[:8]} ({r.model} on {r.benchmark})" for r in unfinished)
        raise InputError(f"run(s) not finished: {names}; start the same `vlmzoo eval` again to finish them")


def gather(store: Store, runs: list[Run], *, resamples: int = 1000) -> list[BenchmarkView]:
    """One view per benchmark, in the order the benchmarks first appear among ``runs``."""
    check_runs(runs)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.benchmark, []).append(run)
    return [benchmark_view(store, group, resamples=resamples) for group in groups.values()]


def benchmark_view(store: Store, runs: list[Run], *, resamples: int) -> BenchmarkView:
    board = leaderboard(store, runs, resamples=resamples)
    predictions = {r.run_id: {p.sample_id: p for p in store.predictions(r.run_id)} for r in runs}
    scores = {r.run_id: {m: s for m in board.metrics if (s := store.sample_scores(r.run_id, m))} for r in runs}
    view = BenchmarkView(board, primary_metric(board), {}, predictions, scores)
    for entry in board.entries:
        size = model_size(entry)
        if size is not None:
            view.sizes[entry.run.run_id] = size
    view.categories = category_tables(view)
    view.disagreements = disagreements(view)
    return view


def primary_metric(board: Leaderboard) -> str | None:
    """The first metric every model has a score for (the leaderboard's ranking), else the first any has."""
    def ok(entry: Entry, metric: str) -> bool:
        return entry.scores.get(metric) is not None and entry.scores[metric].status == "ok"

    for wanted in (all, any):
        for m in board.metrics:
            if wanted(ok(e, m) for e in board.entries):
                return m
    return None


def model_size(entry: Entry) -> tuple[float, str] | None:
    """Parameters from the measured weight bytes and the run's dtype, else from the catalog card."""
    dtype = str(entry.run.config.get("dtype", "")).removeprefix("torch.")
    if entry.weight_bytes and dtype in BYTES_PER_PARAMETER:
        return entry.weight_bytes / BYTES_PER_PARAMETER[dtype], f"{dtype} weights"
    from vlmzoo.catalog import find

    for name in (entry.run.model, entry.run.config.get("model")):
        found = find(name) if isinstance(name, str) else None
        params_b = found and (found.checkpoint.params_b or found.card.params_b)
        if params_b:
            return params_b * 1e9, "catalog card"
    return None


def category_of(prediction: StoredPrediction) -> str:
    return prediction.sample.get("category") or NO_CATEGORY


def category_tables(view: BenchmarkView) -> list[CategoryTable]:
    """Per per-sample metric: each model's mean score per sample category. None when no sample
    has a category (one "(no category)" row would only repeat the leaderboard)."""
    category = {sid: category_of(p) for preds in view.predictions.values() for sid, p in preds.items()}
    if set(category.values()) <= {NO_CATEGORY}:
        return []
    counts: dict[str, int] = {}
    for c in category.values():
        counts[c] = counts.get(c, 0) + 1
    tables = []
    for metric in view.board.metrics:
        sums: dict[tuple[str, str], list[float]] = {}
        for run_id, by_metric in view.sample_scores.items():
            for sid, value in by_metric.get(metric, {}).items():
                sums.setdefault((run_id, category.get(sid, NO_CATEGORY)), []).append(value)
        if sums:
            tables.append(CategoryTable(metric, dict(sorted(counts.items())),
                                        {k: sum(v) / len(v) for k, v in sums.items()}))
    return tables


def _prediction_key(p: StoredPrediction) -> str:
    return json.dumps(p.prediction, sort_keys=True)


def disagreements(view: BenchmarkView) -> list[str]:
    """Samples at least two models answered differently or scored differently on; the widest
    spread on the primary metric first, then benchmark order."""
    runs = [e.run.run_id for e in view.board.entries]
    position: dict[str, int] = {}
    for preds in view.predictions.values():
        for sid, p in preds.items():
            position.setdefault(sid, p.position)
    found = []
    for sid, place in position.items():
        having = [r for r in runs if sid in view.predictions[r]]
        if len(having) < 2:
            continue
        answers = {_prediction_key(view.predictions[r][sid]) for r in having}
        metrics = {m for r in having for m in view.sample_scores[r]}
        spreads = {m: _spread([view.sample_scores[r].get(m, {}).get(sid) for r in having]) for m in metrics}
        if len(answers) > 1 or any(s > 1e-9 for s in spreads.values()):
            found.append((-spreads.get(view.primary, 0.0), place, sid))
    return [sid for _, _, sid in sorted(found)]


def _spread(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return max(present) - min(present) if len(present) > 1 else 0.0
