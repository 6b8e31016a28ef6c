"""``vlmzoo report``: one self-contained HTML page comparing stored runs.

The page works offline and can be mailed around: inline CSS, inline SVG charts, thumbnails as
data URIs, and a Content-Security-Policy that forbids loading anything or running scripts
(model outputs are untrusted text; they are escaped, and the policy is a second fence).
"""

from __future__ import annotations

import math
import re
import time
from html import escape
from pathlib import Path

from vlmzoo.errors import InputError
from vlmzoo.evaluation.report.charts import (
    Bar,
    Point,
    bar_chart,
    fmt_count,
    scatter_chart,
)
from vlmzoo.evaluation.report.data import BenchmarkView, gather
from vlmzoo.evaluation.report.gallery import GALLERY_CAP, gallery_html
from vlmzoo.evaluation.store import Run, Store
from vlmzoo.files import write_atomically

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#222;
 background:#fff;margin:0 auto;padding:24px 32px 48px;max-width:1240px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:19px;margin:36px 0 4px;padding-top:12px;border-top:2px solid #ddd}
h3{font-size:15px;margin:22px 0 8px;color:#333}
.meta,.note{color:#666;margin:4px 0}.note{font-size:13px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}
thead th{border-bottom:1px solid #bbb;color:#444;font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#777;font-size:12px}.na{color:#a15c00}.why{color:#777;font-size:11px;max-width:260px;white-space:normal}
code{font-size:12px;color:#555}
.charts{display:flex;flex-wrap:wrap;gap:8px 28px}
figure.chart{margin:0}figure.chart figcaption{font-size:13px;color:#444;margin:0 0 2px}
svg.chart{max-width:100%;height:auto;font-family:inherit}
.gap{color:#1d6b2f;font-weight:600}.nogap{color:#777}
.catbar{background:linear-gradient(to right,#7fa3cc var(--v),#e9edf2 var(--v)) no-repeat 6px bottom/calc(100% - 12px) 3px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:14px}
figure.sample{margin:0;border:1px solid #e2e2e2;border-radius:4px;padding:10px;display:grid;
 grid-template-columns:160px 1fr;gap:8px 12px;align-content:start;font-size:13px}
.thumb{display:block;max-width:160px;max-height:160px}
.thumb.missing{width:160px;height:110px;background:#f6f1e7;border:1px dashed #c9b48a;color:#7a5b1e;font-size:12px;
 display:flex;flex-direction:column;justify-content:center;align-items:center;text-align:center;padding:6px;
 box-sizing:border-box;overflow-wrap:anywhere}
.more{font-size:11px;color:#777}.head{min-width:0}
.sid{color:#888;font-size:11px}.question{font-weight:600;margin:2px 0 6px;overflow-wrap:anywhere}
table.answers,.refs{grid-column:1/-1}table.answers{margin:0;width:100%}
table.answers th{font-weight:500;color:#555;width:1%}
.model{display:inline-block;max-width:150px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;vertical-align:top}
table.answers td{overflow-wrap:anywhere}table.answers td:last-child{width:1%;text-align:right}
.raw{color:#888;font-size:11px}.refs{color:#444;overflow-wrap:anywhere}.refs span{color:#888}
.score{display:inline-block;min-width:34px;text-align:center;border-radius:3px;background:#eee;font-size:11px}
.score.best{background:#d7ecd9;color:#1d5a2a}
nav a{margin-right:14px}
"""


def write_report(store: Store, runs: list[Run], out: Path, *, resamples: int = 1000) -> Path:
    """Write the report for ``runs`` (grouped by benchmark) to ``out``; returns the path written."""
    out = Path(out).expanduser()
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file path such as report.html")
    views = gather(store, runs, resamples=resamples)
    write_atomically(out, render_page(store, runs, views))  # readers see the old page or the new, never half
    return out




def render_page(store: Store, runs: list[Run], views: list[BenchmarkView]) -> str:
    title = "vlmzoo report: " + ", ".join(v.board.benchmark for v in views)
    body = [header_html(store, runs, views)] + [benchmark_html(v, i) for i, v in enumerate(views)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# -- header ---------------------------------------------------------------------------------------


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "-"


def _anchor(view: BenchmarkView, index: int) -> str:
    return f"b{index}-" + re.sub(r"[^a-z0-9]+", "-", view.board.benchmark.lower()).strip("-")


def versions_line(runs: list[Run]) -> str:
    """Each package's version, and which models used which when the runs differ."""
    seen: dict[str, dict[str, list[str]]] = {}
    for r in runs:
        for pkg, ver in (r.config.get("versions") or {}).items():
            seen.setdefault(pkg, {}).setdefault(str(ver), []).append(r.model)
    if not seen:
        return "not recorded in the run configs"
    parts = []
    for pkg, by_version in seen.items():
        if len(by_version) == 1:
            parts.append(f"{pkg} {next(iter(by_version))}")
        else:
            parts.append(f"{pkg} " + " / ".join(f"{v} ({', '.join(m)})" for v, m in by_version.items()))
    return " · ".join(parts)


def header_html(store: Store, runs: list[Run], views: list[BenchmarkView]) -> str:
    models = sorted({r.model for r in runs})
    what = (f"{len(runs)} run{'s' if len(runs) != 1 else ''} of {len(models)} model{'s' if len(models) != 1 else ''} "
            f"({', '.join(models)}) on {', '.join(v.board.benchmark for v in views)}")
    rows = "".join(
        f"<tr><td><code>{escape(r.run_id[:12])}</code></td><td>{escape(r.model)}</td><td>{escape(r.benchmark)}</td>"
        f"<td>{escape(str(r.config.get('dtype', '-')))}</td><td>{escape(str(r.config.get('device', '-')))}</td>"
        f"<td class=num>{r.samples if r.samples is not None else '-'}</td><td>{_when(r.created)}</td>"
        f"<td>{_when(r.finished)}</td></tr>" for r in runs)
    nav = ""
    if len(views) > 1:
        nav = "<nav>" + "".join(f'<a href="#{_anchor(v, i)}">{escape(v.board.benchmark)}</a>'
                                for i, v in enumerate(views)) + "</nav>"
    return (f"<header><h1>Evaluation report</h1><p class=meta>{escape(what)}</p>"
            f"<p class=meta>Generated {_when(time.time())} from <code>{escape(str(store.path))}</code>. "
            f"Versions: {escape(versions_line(runs))}</p>{nav}"
            "<table class=runs><thead><tr><th>run</th><th>model</th><th>benchmark</th><th>dtype</th><th>device</th>"
            f"<th>samples</th><th>started</th><th>finished</th></tr></thead><tbody>{rows}</tbody></table></header>")


# -- one benchmark --------------------------------------------------------------------------------


def benchmark_html(view: BenchmarkView, index: int) -> str:
    b = view.board
    task = b.entries[0].run.config.get("task", "?") if b.entries else "?"
    return (f'<section class="benchmark" id="{_anchor(view, index)}"><h2>{escape(b.benchmark)}</h2>'
            f"<p class=meta>task: {escape(str(task))} · {len(b.entries)} model(s) · "
            "scores with 95% bootstrap intervals</p>"
            "<h3>Leaderboard</h3>" + leaderboard_html(view)
            + "<h3>Scores</h3>" + metric_charts_html(view)
            + f"<h3>Accuracy against size and speed ({escape(view.primary or 'no metric')})</h3>"
            + scatters_html(view)
            + "<h3>By category</h3>" + categories_html(view)
            + "<h3>Paired tests against the leader</h3>" + tests_html(view)
            + "<h3>Where the models disagree</h3>" + gallery_html(view, GALLERY_CAP) + "</section>")


def _bytes(n: float | None) -> str:
    if not n:
        return "-"
    for scale, unit in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _score_cell(score) -> str:
    if score is None or (score.status == "ok" and score.value is None):
        return '<td class=num>-</td>'
    if score.status != "ok":
        return f'<td><span class=na>unavailable</span><div class=why>{escape(score.detail or "no reason recorded")}</div></td>'
    return (f'<td class=num>{score.value:.3f} <span class=ci>[{score.low:.3f}, {score.high:.3f}]</span></td>'
            if score.low is not None and score.high is not None else f"<td class=num>{score.value:.3f}</td>")


def leaderboard_html(view: BenchmarkView) -> str:
    b = view.board
    head = "".join(f"<th>{escape(m)}</th>" for m in b.metrics)
    rows = []
    for rank, e in enumerate(b.entries, 1):
        size = view.sizes.get(e.run.run_id)
        params = f'{fmt_count(size[0])} <span class=ci>({escape(size[1])})</span>' if size else "-"
        rate = f"{e.samples_per_s:.3g}" if e.samples_per_s else "-"
        memory = f"{e.peak_rss_mb:,.0f} MB" if e.peak_rss_mb else "-"
        if e.api_usage:  # an API model: what the run cost stands where weights would
            memory = ("unknown price" if e.cost_usd is None else f"${e.cost_usd:,.4f}") + " <span class=ci>(API)</span>"
        rows.append(f'<tr class=entry data-model="{escape(e.run.model)}"><td class=num>{rank}</td>'
                    f"<td>{escape(e.run.model)}</td>" + "".join(_score_cell(e.scores.get(m)) for m in b.metrics)
                    + f"<td class=num>{e.samples}</td><td class=num>{rate}</td><td class=num>{memory}</td>"
                    f"<td class=num>{_bytes(e.weight_bytes)}</td><td class=num>{params}</td>"
                    f"<td><code>{escape(e.run.run_id[:8])}</code></td></tr>")
    return ('<table class=leaderboard><thead><tr><th>#</th><th>model</th>' + head +
            "<th>samples</th><th>samples/s</th><th>peak memory or API cost</th><th>weights</th><th>parameters</th><th>run</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _figure(caption: str, svg: str) -> str:
    return f'<figure class="chart"><figcaption>{escape(caption)}</figcaption>{svg}</figure>'


def metric_charts_html(view: BenchmarkView) -> str:
    charts, notes = [], []
    for m in view.board.metrics:
        scored = [(e, e.scores.get(m)) for e in view.board.entries]
        bars = [Bar(e.run.model, s.value, s.low, s.high) for e, s in scored
                if s is not None and s.status == "ok" and _finite(s.value, s.low, s.high)]
        if bars:
            charts.append(_figure(f"{m} (bars: score; whiskers: 95% interval)",
                                  bar_chart(f"{view.board.benchmark}/bars/{m}", f"{m} by model", bars)))
        reasons = {s.detail or "no reason recorded" for _, s in scored if s is not None and s.status != "ok"}
        notes += [f'<p class=note><span class=na>{escape(m)} unavailable:</span> {escape(r)}</p>' for r in sorted(reasons)]
    return '<div class="charts">' + "".join(charts) + "</div>" + "".join(notes)


def _finite(value: float | None, *bounds: float | None) -> bool:
    """A NaN or infinite score cannot be placed on an axis (SQLite hands a stored NaN back as NULL)."""
    return value is not None and all(v is None or math.isfinite(v) for v in (value, *bounds))


def scatters_html(view: BenchmarkView) -> str:
    m = view.primary
    if m is None:
        return "<p class=note>No metric has a score, so there is nothing to plot.</p>"
    ok = [e for e in view.board.entries if e.scores.get(m) and e.scores[m].status == "ok"
          and _finite(e.scores[m].value, e.scores[m].low, e.scores[m].high)]

    def point(e, x: float) -> Point:
        s = e.scores[m]
        return Point(e.run.model, x, s.value, s.low, s.high)

    sized = [point(e, view.sizes[e.run.run_id][0]) for e in ok if e.run.run_id in view.sizes]
    timed = [point(e, e.samples_per_s) for e in ok if e.samples_per_s]
    out = []
    if sized:
        out.append(_figure(f"{m} against model size (parameters, log scale)", scatter_chart(
            f"{view.board.benchmark}/scatter/size", f"{m} against parameters", sized,
            x_label="parameters (log scale)", y_label=m, log_x=True, x_format=fmt_count)))
    if timed:
        out.append(_figure(f"{m} against throughput (samples/s)", scatter_chart(
            f"{view.board.benchmark}/scatter/speed", f"{m} against samples per second", timed,
            x_label="samples per second", y_label=m)))
    notes = [f"no size known for {', '.join(e.run.model for e in ok if e.run.run_id not in view.sizes)}"
             if len(sized) < len(ok) else "",
             f"no timing for {', '.join(e.run.model for e in ok if not e.samples_per_s)}" if len(timed) < len(ok) else ""]
    return ('<div class="charts">' + "".join(out) + "</div>"
            + "".join(f"<p class=note>{escape(n)}</p>" for n in notes if n))


def categories_html(view: BenchmarkView) -> str:
    if not view.categories:
        return "<p class=note>No per-sample scores with sample categories to break down.</p>"
    entries = view.board.entries
    out = []
    for table in view.categories:
        top = max([1.0, *table.means.values()])  # bars on a 0..1 scale for accuracies, wider if needed
        head = "".join(f"<th>{escape(e.run.model)}</th>" for e in entries)
        rows = []
        for cat, n in table.counts.items():
            cells = []
            for e in entries:
                v = table.means.get((e.run.run_id, cat))
                cells.append("<td class=num>-</td>" if v is None else
                             f'<td class="num catbar" style="--v:{max(v, 0) / top * 100:.1f}%">{v:.3f}</td>')
            rows.append(f"<tr><td>{escape(cat)}</td><td class=num>{n}</td>" + "".join(cells) + "</tr>")
        out.append(f"<p class=note>{escape(table.metric)}: mean per-sample score per category</p>"
                   f'<table class="categories" data-metric="{escape(table.metric)}"><thead><tr><th>category</th>'
                   f"<th>samples</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return "".join(out)


def tests_html(view: BenchmarkView) -> str:
    if not view.board.tests:
        return ("<p class=note>No paired tests: they need two models or more with scores on the same samples.</p>")
    rows = []
    for metric, tests in view.board.tests.items():
        for leader, other, d, p_mcnemar in tests:
            verdict = ('<span class=gap>real gap</span>' if d.significant else
                       '<span class=nogap>not a significant gap</span>')
            mc = f"{p_mcnemar:.3g}" if p_mcnemar is not None else "-"
            rows.append(f"<tr><td>{escape(metric)}</td><td>{escape(leader)} − {escape(other)}</td>"
                        f"<td class=num>{d.difference:+.4f}</td><td class=num>[{d.low:+.4f}, {d.high:+.4f}]</td>"
                        f"<td class=num>{d.p_value:.3g}</td><td class=num>{mc}</td><td>{verdict}</td></tr>")
    return ("<p class=note>Leader minus each other model on the samples both answered: paired bootstrap "
            "(and exact McNemar for right/wrong metrics); a real gap when the bootstrap p is below 0.05.</p>"
            "<table class=tests><thead><tr><th>metric</th><th>comparison</th><th>difference</th><th>95% interval</th>"
            "<th>p (bootstrap)</th><th>p (McNemar)</th><th>verdict</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")
