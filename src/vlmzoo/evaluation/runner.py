"""``vlmzoo eval``: run models over a benchmark into the results store, resumably, then score.

A run is identified by a hash of what determines its outputs (checkpoint, dtype, benchmark
definition and data, prompts, generation options, library versions). Starting the same run
again skips every sample already stored, so a killed run resumes where it stopped and a
finished one is only re-scored. Images for the next batches are decoded in a background
thread while the model works on the current one; inputs of other modalities (sounds, depth
maps, ...) become typed inputs (``vlmzoo.modalities``) that the model reads itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from vlmzoo.engine.prefetch import prefetched
from vlmzoo.errors import InputError, VlmzooError
from vlmzoo.evaluation.metrics import get_metric
from vlmzoo.evaluation.records import TASKS, Batch, metric_inputs, sample_record
from vlmzoo.evaluation.sample import Sample
from vlmzoo.evaluation.stats import bootstrap_ci
from vlmzoo.evaluation.store import Score, StoredPrediction, Store

DEFAULT_STORE = "vlmzoo-results.db"


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = None
    batch_size: int | None = None
    dtype: str | None = None
    device: str | None = None
    max_new_tokens: int | None = None
    seed: int = 0
    resamples: int = 1000


@dataclass
class RunResult:
    run_id: str
    model: str
    benchmark: str
    predicted: int  # samples predicted in this call (0 when everything was already stored)
    resumed: int  # samples that were already stored
    scores: list[Score] = field(default_factory=list)
    # wall time of this call's phases: loading the model, predicting (model calls, image
    # decoding, storing), scoring (metrics and intervals)
    seconds: dict[str, float] = field(default_factory=dict)


# -- identity -------------------------------------------------------------------------------------


def checkpoint_fingerprint(path: Path) -> dict:
    """What identifies the checkpoint on disk, cheaply: the HF snapshot commit when the folder
    is one, and the name, size and modification time of every file (weights are not hashed:
    gigabytes per run start would be too slow)."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    commit = path.name if path.parent.name == "snapshots" else None
    return {"commit": commit, "files": hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("vlmzoo", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _data_fingerprint(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps(sample_record(s), sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_config(resolved, bench, samples: list[Sample], opts: EvalOptions, classes=()) -> dict:
    """Everything that determines a run's outputs; its hash is the run id.

    Credentials are not part of it: an API model's name and base URL enter without a
    ``user:password@`` or credential query parameters (``public_url``), so runs that differ only
    in a password or token are one run, and no credential reaches the store.
    """
    return {
        "model": resolved.name,
        # an API model has no folder: the provider, model id and endpoint (without credentials) identify it
        "checkpoint": resolved.api.identity() if resolved.api is not None else checkpoint_fingerprint(resolved.path),
        "dtype": str(resolved.dtype).removeprefix("torch."),
        "device": resolved.device,
        "benchmark": bench.name,
        "task": bench.task,
        "prompt": bench.prompt,
        "templates": list(bench.templates or []),
        "classes": list(classes),
        "extract": bench.extract,
        "generation": {"max_new_tokens": _max_new_tokens(bench, opts), "do_sample": False},
        "data": _data_fingerprint(samples),
        "samples": len(samples),
        "seed": opts.seed,
        "versions": _versions(),
    }


def run_id_of(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _max_new_tokens(bench, opts: EvalOptions) -> int:
    return opts.max_new_tokens or bench.max_new_tokens


# -- predicting -----------------------------------------------------------------------------------


def _load_batch(batch: list[tuple[int, Sample]]):
    """The batch's inputs: images decoded, other modalities as typed inputs (``Audio(path)``, ...)."""
    from vlmzoo.errors import ImageError
    from vlmzoo.images import load_image
    from vlmzoo.modalities import TYPED

    typed = {kind.modality: kind for kind in TYPED}
    inputs = []
    for _, s in batch:
        try:
            inputs.append([load_image(p) if s.modality == "image" else typed[s.modality](p) for p in s.images])
        except ImageError as e:  # the data set is broken here: say where, keep what is stored
            raise InputError(f"sample {s.id}: {e}") from None
    return batch, inputs


def _check_modality(model, name: str, bench, modality: str) -> None:
    """A benchmark of sounds, depth maps, ... needs a model that embeds them (ImageBind)."""
    takes = getattr(model, "embed_modalities", ("text", "image"))
    if modality != "image" and modality not in takes:
        raise InputError(f"{name} does not take {modality} inputs, which benchmark {bench.name} holds "
                         f"(it takes: {', '.join(m for m in takes if m != 'text')})")


def _predict(model, bench, samples: list[Sample], inputs: list[list], opts: EvalOptions, classes=()):
    """(prediction, raw output, extra bytes) per sample of one batch, for the benchmark's task."""
    io = TASKS.get(bench.task)
    if io is None:
        raise InputError(f"benchmark task {bench.task!r} is not one vlmzoo can run")
    batch = Batch(bench, samples, inputs, _max_new_tokens(bench, opts), tuple(classes))
    return [io.stored(result, bench) for result in io.call(model, batch)]


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True, leave=True)


def evaluate(model_name: str, bench, store: Store, opts: EvalOptions = EvalOptions(),
             load: Callable | None = None, progress: bool = True) -> RunResult:
    """Predict every sample not yet stored for this run, then score the whole run."""
    from vlmzoo.loading import load_resolved, resolve

    samples = list(bench.samples(limit=opts.limit))
    if not samples:
        raise InputError(f"benchmark {bench.name} has no samples" + (f" within --limit {opts.limit}" if opts.limit else ""))
    resolved = resolve(model_name, device=opts.device, dtype=opts.dtype)
    classes = bench.class_names(samples) if bench.task == "classify" else ()
    config = run_config(resolved, bench, samples, opts, classes)
    run_id = run_id_of(config)
    store.open_run(run_id, resolved.name, bench.name, config, len(samples))
    done = store.done_ids(run_id)
    todo = [(i, s) for i, s in enumerate(samples) if s.id not in done]
    seconds = {"load": 0.0, "predict": 0.0}
    if todo:
        t0 = time.perf_counter()
        model = (load or load_resolved)(resolved)
        seconds["load"] = time.perf_counter() - t0
        if bench.task not in model.tasks:
            raise InputError(f"{resolved.name} does not do {bench.task!r} (it does: {', '.join(sorted(model.tasks))})")
        _check_modality(model, resolved.name, bench, samples[0].modality)
        batch_size = opts.batch_size or model.batch_size
        bar = _progress(len(samples), f"{resolved.name} on {bench.name}") if progress else None
        if bar is not None:
            bar.update(len(samples) - len(todo))
        t0 = time.perf_counter()
        for batch, inputs in prefetched(todo, batch_size, _load_batch, depth=2, workers=1):
            t = time.perf_counter()
            outs = _predict(model, bench, [s for _, s in batch], inputs, opts, classes)
            each = (time.perf_counter() - t) / len(batch)
            store.add_predictions(run_id, [
                StoredPrediction(s.id, pos, pred, raw, each, extra, sample_record(s))
                for (pos, s), (pred, raw, extra) in zip(batch, outs)])
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        seconds["predict"] = time.perf_counter() - t0
        store.set_resources(run_id, _resources(model, store.run(run_id).resources))
    t0 = time.perf_counter()
    scores = score_run(store, run_id, bench, samples, resamples=opts.resamples, seed=opts.seed)
    seconds["score"] = time.perf_counter() - t0
    store.mark_finished(run_id)
    return RunResult(run_id, resolved.name, bench.name, len(todo), len(samples) - len(todo), scores, seconds)


def _resources(model, before: dict) -> dict:
    """Peak resident memory of this process (the most a run needed, across resumes), the
    bytes of the model's weights, and for API models the requests, tokens and cost (summed
    across resumes; cost None when the price is unknown)."""
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    out = {"peak_rss_mb": max(peak_mb, before.get("peak_rss_mb", 0.0)), "weight_bytes": model.weight_bytes()}
    usage = getattr(model, "usage", None)
    if usage is not None:
        earlier = before.get("api_usage") or {}
        now = dataclasses.asdict(usage)
        out["api_usage"] = {k: None if v is None or (k in earlier and earlier[k] is None) else v + (earlier.get(k) or 0)
                            for k, v in now.items()}
    return out


# -- scoring --------------------------------------------------------------------------------------


def score_run(store: Store, run_id: str, bench, samples: list[Sample], *, resamples: int = 1000,
              seed: int = 0) -> list[Score]:
    """Scores with bootstrap intervals from the stored predictions (never re-runs a model)."""
    from vlmzoo.evaluation.metrics.captions import MetricUnavailable

    stored = store.predictions(run_id)
    by_id = {s.id: s for s in samples}
    missing = [s.id for s in samples if s.id not in {p.sample_id for p in stored}]
    if missing:
        raise VlmzooError(f"run {run_id} lacks predictions for {len(missing)} samples (first: {missing[:3]})")
    stored = [p for p in stored if p.sample_id in by_id]
    ordered = [by_id[p.sample_id] for p in stored]
    inputs = metric_inputs(bench.task, stored)
    scores, per_sample = [], {}
    for name in bench.metrics:
        metric = get_metric(name)
        try:
            rows = metric.rows(inputs, ordered)
        except MetricUnavailable as e:
            scores.append(Score(name, None, None, None, len(ordered), "unavailable", str(e)))
            continue
        ci = bootstrap_ci(rows, metric.aggregate, resamples=resamples, seed=seed)
        scores.append(Score(name, ci.value, ci.low, ci.high, len(ordered), "ok", None))
        if rows.shape[1] == 1:  # a per-sample score: kept for breakdowns and the report's gallery
            per_sample[name] = {p.sample_id: float(v) for p, v in zip(stored, rows[:, 0])}
    store.put_scores(run_id, scores, per_sample)
    return scores
