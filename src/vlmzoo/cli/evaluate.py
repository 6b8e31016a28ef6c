"""``vlmzoo benchmarks``, ``eval``, ``compare`` and ``report``: the evaluation commands."""

from __future__ import annotations

import json

import click

from vlmzoo.cli.output import console, fail, styled

STORE_HELP = "results store (SQLite file); created if missing"


def _store_option(f):
    from vlmzoo.evaluation.runner import DEFAULT_STORE

    return click.option("--store", "store_path", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)(f)


def _existing_store(store_path):
    """The store to read results from: a mistyped path is an error, not a new empty store."""
    from pathlib import Path

    from vlmzoo.evaluation.store import Store

    path = Path(store_path).expanduser()
    if not path.exists():
        fail(f"no results store at {store_path}; `vlmzoo eval --store {store_path}` creates one")
    return Store(path)  # a folder or a file that is no store: Store says which, in one line


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def benchmarks(as_json):
    """List the built-in benchmark definitions."""
    from vlmzoo.evaluation.spec import builtin_benchmarks

    rows = [{"name": b.name, "task": b.task, "metrics": list(b.metrics), "data": str(b.data.path),
             "description": b.description} for b in builtin_benchmarks()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("name", "task", "metrics", "data"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["task"], ", ".join(r["metrics"]), r["data"])
    console().print(table)


@click.command("eval")
@click.option("--models", "model_names", required=True, help="comma-separated model names, ids or folders")
@click.option("--benchmark", required=True, help="a built-in benchmark name or a benchmark file (.toml)")
@click.option("--data", default=None, help="where the benchmark's data lives (overrides the definition's path)")
@click.option("--limit", type=int, default=None, help="only the first N samples")
@_store_option
@click.option("--batch-size", type=int, default=None)
@click.option("--dtype", default=None, help="float32, bfloat16 or float16 (default: the model's CPU choice)")
@click.option("--device", default=None, help="cpu or cuda (default: cuda if present)")
@click.option("--max-new-tokens", type=int, default=None, help="generation budget (default: the benchmark's)")
@click.option("--resamples", type=int, default=1000, show_default=True, help="bootstrap resamples for intervals")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def eval_(model_names, benchmark, data, limit, store_path, batch_size, dtype, device, max_new_tokens, resamples,
          as_json):
    """Run models over a benchmark, store every prediction, print scores with 95% intervals.

    Runs resume: starting the same command again skips every sample already stored.
    """
    from vlmzoo.evaluation.compare import leaderboard
    from vlmzoo.evaluation.runner import EvalOptions, evaluate
    from vlmzoo.evaluation.spec import load_benchmark
    from vlmzoo.evaluation.store import Store

    if limit is not None and limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    names = [n.strip() for n in model_names.split(",") if n.strip()]
    if not names:
        fail("--models is empty")
    bench = load_benchmark(benchmark, data=data)
    opts = EvalOptions(limit=limit, batch_size=batch_size, dtype=dtype, device=device,
                       max_new_tokens=max_new_tokens, resamples=resamples)
    with Store(store_path) as store:
        results = []
        for name in names:
            result = evaluate(name, bench, store, opts, progress=not as_json)
            results.append(result)
            if not as_json and result.resumed:
                console(stderr=True).print(f"{result.model}: {result.resumed} samples were already stored "
                                            f"(run {result.run_id[:8]}), {result.predicted} predicted now")
        board = leaderboard(store, [store.run(r.run_id) for r in results], resamples=resamples)
        _print_board(board, as_json)


@click.command()
@click.argument("runs", nargs=-1)
@_store_option
@click.option("--resamples", type=int, default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def compare(runs, store_path, resamples, as_json):
    """Leaderboard of stored runs (run id prefixes, model names, or a benchmark name)."""
    from vlmzoo.evaluation.compare import leaderboard, resolve_runs

    with _existing_store(store_path) as store:
        chosen = resolve_runs(store, list(runs))
        by_bench: dict[str, list] = {}
        for r in chosen:
            by_bench.setdefault(r.benchmark, []).append(r)
        for group in by_bench.values():
            _print_board(leaderboard(store, group, resamples=resamples), as_json)


def _print_board(board, as_json: bool) -> None:
    from vlmzoo.evaluation.compare import as_dict

    if as_json:
        click.echo(json.dumps(as_dict(board), indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{board.benchmark}: scores with 95% bootstrap intervals", title_justify="left")
    table.add_column("model")
    for m in board.metrics:
        table.add_column(m, justify="right")
    api = any(e.api_usage for e in board.entries)  # a cost column only where API models ran
    for col in ("samples", "samples/s", "peak RSS", *(("API cost",) if api else ()), "run"):
        table.add_column(col, justify="right")
    for e in board.entries:
        cells = []
        for m in board.metrics:
            s = e.scores.get(m)
            if s is None:
                cells.append("-")
            elif s.status != "ok":
                cells.append("unavailable")
            else:
                cells.append(f"{s.value:.4f} [{s.low:.4f}, {s.high:.4f}]")
        table.add_row(e.run.model, *cells, str(e.samples),
                      f"{e.samples_per_s:.2f}" if e.samples_per_s else "-",
                      f"{e.peak_rss_mb:.0f} MB" if e.peak_rss_mb else "-", *((_cost(e),) if api else ()),
                      e.run.run_id[:8])
    con = console()
    con.print(table)
    for e in board.entries[:1]:
        for m, s in e.scores.items():
            if s.status != "ok":
                con.print(styled(f"{m} unavailable:", "yellow", f" {s.detail}"), highlight=False)
    for metric, rows in board.tests.items():
        for leader, other, diff, p_mcnemar in rows:
            verdict = "a real gap" if diff.significant else "not a significant gap"
            extra = f", McNemar p={p_mcnemar:.3g}" if p_mcnemar is not None else ""
            con.print(f"{metric}: {leader} - {other} = {diff.difference:+.4f} "
                          f"[{diff.low:+.4f}, {diff.high:+.4f}], paired bootstrap p={diff.p_value:.3g}{extra}: {verdict}",
                          highlight=False)


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="the HTML file to write (its folder must exist)")
@_store_option
@click.option("--resamples", type=int, default=1000, show_default=True, help="bootstrap resamples for paired tests")
def report(runs, out_path, store_path, resamples):
    """Write one self-contained HTML report of stored runs (run id prefixes, model names, or a benchmark name)."""
    from pathlib import Path

    from vlmzoo.evaluation.compare import resolve_runs
    from vlmzoo.evaluation.report import write_report

    with _existing_store(store_path) as store:
        written = write_report(store, resolve_runs(store, list(runs)), Path(out_path), resamples=resamples)
    click.echo(str(written))


def _cost(entry) -> str:
    if not entry.api_usage:
        return "-"  # a local model
    return f"${entry.cost_usd:.4f}" if entry.cost_usd is not None else "unknown price"
