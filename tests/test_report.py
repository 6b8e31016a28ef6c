"""The HTML report: built from a hand-made store, checked as HTML, then rendered by headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageStat

from vlmzoo.cli import main
from vlmzoo.errors import InputError
from vlmzoo.evaluation.report import page as report_module
from vlmzoo.evaluation.metrics import get_metric
from vlmzoo.evaluation.records import sample_of
from vlmzoo.evaluation.report import write_report
from vlmzoo.evaluation.stats import bootstrap_ci
from vlmzoo.evaluation.store import Score, Store, StoredPrediction

INSTALL_CHROMIUM = ("chromium is not installed; the report's rendering test needs it: "
                    "apt-get update && apt-get install -y --no-install-recommends chromium")
XSS = "<script>alert(1)</script>"
VERSIONS = {"vlmzoo": "0.1.0", "torch": "2.5.1", "transformers": "4.46.3"}

# (id, category, question, reference answers, image): the VQA-style benchmark all three models ran
QUESTIONS = [
    ("q00", "yes/no", "Is there a cat in the picture?", ["yes"] * 9 + ["no"], "red.jpg"),
    ("q01", "number", "How many stripes are there?", ["3"] * 7 + ["4"] * 3, "green.png"),
    ("q02", "other", "What color is the square?", ["blue"] * 10, "blue.jpg"),
    ("q03", "yes/no", "Is it daytime?", ["no"] * 6 + ["yes"] * 4, "red.jpg"),
    ("q04", "number", "How many circles are visible?", ["2"] * 10, "gone.jpg"),  # the image file is missing
    ("q05", "other", "What is drawn in the middle?", ["a circle", "circle"] * 5, "green.png"),
    ("q06", "yes/no", "Is the background striped?", ["yes"] * 10, "blue.jpg"),
    ("q07", "other", "Which shape is largest?", ["square"] * 8 + ["rectangle"] * 2, "red.jpg"),
    ("q08", "number", "How many corners does the shape have?", ["4"] * 10, "blue.jpg"),
    ("q09", "other", "What is written on the sign?", ["stop"] * 10, "green.png"),
]
# each model's answers, in QUESTIONS order; smolvlm's answer to q07 is hostile HTML
ANSWERS = {
    "qwen2-vl-2b": ["yes", "3", "blue", "no", "2", "circle", "yes", "square", "4", "stop"],
    "moondream2": ["yes", "4", "blue", "yes", "2", "circle", "yes", "square", "4", "go"],
    "smolvlm-256m": ["no", "2", "blue", "yes", "3", "a circle", "no", XSS, "4", "stop"],
}
RESOURCES = {  # smolvlm has no weight bytes: its size must come from the catalog card
    "qwen2-vl-2b": ({"peak_rss_mb": 9120.0, "weight_bytes": int(2.21e9 * 2)}, "bfloat16", 0.9),
    "moondream2": ({"peak_rss_mb": 7630.0, "weight_bytes": int(1.86e9 * 4)}, "float32", 0.55),
    "smolvlm-256m": ({"peak_rss_mb": 1410.0}, "float32", 0.12),
}
METRICS = ["vqa_accuracy", "exact_match"]


def _write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, color in (("red.jpg", (200, 60, 50)), ("blue.jpg", (40, 80, 190))):
        im = Image.new("RGB", (480, 320), color)
        ImageDraw.Draw(im).rectangle((120, 80, 360, 240), fill=(250, 240, 220))
        im.save(folder / name, quality=90)
    im = Image.new("RGBA", (300, 400), (0, 0, 0, 0))  # transparent PNG: must come out on white
    draw = ImageDraw.Draw(im)
    for y in range(40, 360, 80):
        draw.rectangle((20, y, 280, y + 30), fill=(30, 150, 70, 255))
    im.save(folder / "green.png")


def _add_run(store: Store, model: str, bench: str, task: str, samples: list[dict], predictions: list,
             metrics: list[str], *, dtype="float32", seconds=0.5, resources=None, versions=VERSIONS,
             extra_scores=()) -> str:
    run_id = hashlib.sha256(f"{model}/{bench}".encode()).hexdigest()[:16]
    config = {"model": model, "dtype": dtype, "device": "cpu", "benchmark": bench, "task": task,
              "versions": versions}
    store.open_run(run_id, model, bench, config, len(samples))
    store.add_predictions(run_id, [StoredPrediction(s["id"], i, p, p if isinstance(p, str) else None, seconds,
                                                    None, s) for i, (s, p) in enumerate(zip(samples, predictions))])
    scores, per_sample = [], {}
    for name in metrics:  # scored by the real metrics, so the report's paired tests agree with them
        metric = get_metric(name)
        rows = metric.rows(predictions, [sample_of(s) for s in samples])
        ci = bootstrap_ci(rows, metric.aggregate, resamples=200)
        scores.append(Score(name, ci.value, ci.low, ci.high, len(samples), "ok", None))
        per_sample[name] = {s["id"]: float(v) for s, v in zip(samples, rows[:, 0])}
    store.put_scores(run_id, scores + list(extra_scores), per_sample)
    store.set_resources(run_id, resources or {})
    store.mark_finished(run_id)
    return run_id


def _sample(sid, images, **fields) -> dict:
    base = {"id": sid, "images": [str(p) for p in images], "question": None, "answers": [], "options": [],
            "label": None, "box": None, "category": None}
    return base | fields


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    images = root / "images"
    _write_images(images)
    vqa = [_sample(sid, [images / img], question=q, answers=refs, category=cat)
           for sid, cat, q, refs, img in QUESTIONS]
    spice = Score("spice", None, None, None, len(vqa), "unavailable", "the SPICE jar and its CoreNLP models are not installed")
    db = root / "results.db"
    with Store(db) as store:
        for model, answers in ANSWERS.items():
            resources, dtype, seconds = RESOURCES[model]
            versions = VERSIONS | {"transformers": "4.47.0"} if model == "moondream2" else VERSIONS
            _add_run(store, model, "vqa-mini", "ask", vqa, answers, METRICS, dtype=dtype, seconds=seconds,
                     resources=resources, versions=versions, extra_scores=[spice])
        pets = [_sample(f"c{i}", [images / img], label=label)
                for i, (img, label) in enumerate([("red.jpg", "cat"), ("blue.jpg", "dog"), ("green.png", "cat")])]
        _add_run(store, "siglip", "pets-mini", "classify", pets, [["cat", "dog"], ["cat", "dog"], ["cat", "dog"]],
                 ["top1"], seconds=0.05)
        out = write_report(store, store.runs(), root / "report.html")
    return {"root": root, "db": db, "out": out, "html": out.read_text(encoding="utf-8")}


class Page(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, tag: str, attr: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag and attr in a]


def _disagreeing_samples() -> list[str]:
    return [q[0] for i, q in enumerate(QUESTIONS) if len({answers[i] for answers in ANSWERS.values()}) > 1]


# -- the HTML itself ------------------------------------------------------------------------------


def test_leaderboard_and_charts(built):
    page = Page(built["html"])
    rows = [a["data-model"] for a in page.having("tr", "data-model")]
    assert rows == ["qwen2-vl-2b", "moondream2", "smolvlm-256m", "siglip"]  # best first, then the other benchmark
    text = "".join(page.text)
    assert "the SPICE jar and its CoreNLP models are not installed" in text and "unavailable" in text
    assert "2.21B (bfloat16 weights)" in text and "256M (catalog card)" in text
    charts = sorted(a["data-chart"] for a in page.having("svg", "data-chart"))
    assert charts == sorted([
        "vqa-mini/bars/vqa_accuracy", "vqa-mini/bars/exact_match", "vqa-mini/scatter/size",
        "vqa-mini/scatter/speed", "pets-mini/bars/top1", "pets-mini/scatter/size", "pets-mini/scatter/speed"])
    # scatter points are labelled with the model names
    size_chart = re.search(r'data-chart="vqa-mini/scatter/size".*?</svg>', built["html"], re.DOTALL).group(0)
    assert all(f">{m}</text>" in size_chart for m in ANSWERS)
    assert "transformers 4.46.3 (qwen2-vl-2b, smolvlm-256m, siglip) / 4.47.0 (moondream2)" in text


def test_categories_and_paired_tests(built):
    page = Page(built["html"])
    tables = [a["data-metric"] for a in page.having("table", "data-metric")]
    assert tables == ["vqa_accuracy", "exact_match"]
    categories = re.search(r'data-metric="exact_match".*?</table>', built["html"], re.DOTALL).group(0)
    for cat in ("number", "other", "yes/no"):
        assert f"<td>{cat}</td>" in categories
    tests = re.search(r"<table class=tests>.*?</table>", built["html"], re.DOTALL).group(0)
    assert tests.count("<tr><td>") == 4  # 2 metrics x 2 challengers; spice is unavailable, so untested
    assert "qwen2-vl-2b − smolvlm-256m" in tests and ("real gap" in tests or "not a significant gap" in tests)
    assert "One model only: nothing to disagree about." in built["html"]  # pets-mini


def test_gallery_escapes_and_inlines_everything(built):
    html, page = built["html"], Page(built["html"])
    expected = _disagreeing_samples()
    items = [a["data-sample"] for a in page.having("figure", "data-sample")]
    assert sorted(items) == sorted(expected)
    assert f"{len(expected)} samples with disagreements in all" in html
    # the hostile answer is shown as text, never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html.lower()
    assert "image file not found" in html and "gone.jpg" in html
    assert "reference:</span> yes ×9 | no<" in html  # repeated human answers are counted
    sources = [a["src"] for a in page.having("img", "src")]
    assert len(sources) == len(expected) - 1  # q04's image is the missing one
    assert all(s.startswith("data:image/jpeg;base64,") for s in sources)
    thumb = Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1])))
    assert thumb.format == "JPEG" and max(thumb.size) <= 160
    links = [a.get("src") or a.get("href") for t, a in page.tags if "src" in a or "href" in a]
    assert all(link.startswith(("data:", "#")) for link in links)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*https?:""", html, re.IGNORECASE)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_gallery_is_capped(built, monkeypatch, tmp_path):
    monkeypatch.setattr(report_module, "GALLERY_CAP", 3)
    with Store(built["db"]) as store:
        out = write_report(store, store.find_runs("vqa-mini"), tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    assert html.count('<figure class="sample"') == 3
    assert f"{len(_disagreeing_samples())} samples with disagreements in all; showing 3" in html


# -- errors and the atomic write ------------------------------------------------------------------


def test_clear_errors(built, tmp_path):
    with Store(built["db"]) as store:
        runs = store.runs()
        with pytest.raises(InputError, match="no runs"):
            write_report(store, [], tmp_path / "r.html")
        with pytest.raises(InputError, match="does not exist"):
            write_report(store, runs, tmp_path / "nowhere" / "r.html")
        with pytest.raises(InputError, match="is a folder"):
            write_report(store, runs, tmp_path)
    with Store(tmp_path / "half.db") as store:
        store.open_run("abc123", "qwen2-vl-2b", "vqa-mini", {}, 10)
        with pytest.raises(InputError, match="not finished.*abc123"):
            write_report(store, store.runs(), tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_failed_write_keeps_the_old_report(built, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("old report", encoding="utf-8")

    def crash(*args):
        raise OSError("disk gone")

    import vlmzoo.files  # the report is written through it

    monkeypatch.setattr(vlmzoo.files.os, "replace", crash)
    with Store(built["db"]) as store, pytest.raises(OSError, match="disk gone"):
        write_report(store, store.find_runs("vqa-mini"), out)
    assert out.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left behind


# -- the command ----------------------------------------------------------------------------------


def test_cli_report(built, tmp_path):
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(main, ["report", "vqa-mini", "--out", str(out), "--store", str(built["db"]),
                                    "--resamples", "200"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out) and "qwen2-vl-2b" in out.read_text(encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "nosuchrun", "--out", str(tmp_path / "bad.html"),
                                    "--store", str(built["db"])])
    assert res.exit_code == 2 and "no run matches 'nosuchrun'" in res.output
    assert not (tmp_path / "bad.html").exists()
    typo = tmp_path / "reslts.db"
    for command in (["report", "vqa-mini", "--out", str(tmp_path / "typo.html")], ["compare", "vqa-mini"]):
        res = CliRunner().invoke(main, [*command, "--store", str(typo)])
        assert res.exit_code == 2 and "no results store at" in res.output, res.output
    assert not typo.exists()  # a mistyped store is not created empty


# -- rendered by a real browser -------------------------------------------------------------------


def _chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile and home, and every host name unresolvable,
    so it touches no network and leaves nothing behind."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(INSTALL_CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="vlmzoo-chromium-") as home:
        env = os.environ | {"HOME": home, "XDG_CONFIG_HOME": f"{home}/config", "XDG_CACHE_HOME": f"{home}/cache"}
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={home}/profile", "--no-first-run", "--no-default-browser-check",
               "--disable-extensions", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
               "--host-resolver-rules=MAP * ~NOTFOUND", *args]
        res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, f"chromium failed ({res.returncode}): {res.stderr[-2000:]}"
    return res


def test_chromium_renders_the_page(built, tmp_path):
    url = built["out"].resolve().as_uri()
    dom = _chromium("--dump-dom", url).stdout
    for model in (*ANSWERS, "siglip"):
        assert re.search(rf'<tr class="entry" data-model="{re.escape(model)}">', dom), model
    images = re.findall(r'<img class="thumb" src="data:image/jpeg;base64,', dom)
    assert len(images) == len(_disagreeing_samples()) - 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script" not in dom.lower()
    assert dom.count('<svg class="chart"') == 7

    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", url)
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        gray = im.convert("L")
        assert ImageStat.Stat(gray).stddev[0] > 15, "the screenshot is (nearly) blank"
        inked = sum(gray.histogram()[:200]) / (im.width * im.height)  # share of clearly non-white pixels
        assert inked > 0.03, f"only {inked:.1%} of the screenshot is drawn on"
    keep = os.environ.get("VLMZOO_KEEP_SCREENSHOT")  # for looking at the page by eye
    if keep:
        shutil.copy(shot, keep)


def test_ticks_for_an_empty_or_noise_range_are_distinct():
    from vlmzoo.evaluation.report.charts import nice_ticks

    for lo, hi in ((0.0, 0.0), (0.0, 1e-16), (0.0, 3e-9), (2e-18, 2e-14), (0.5, 0.5)):
        ticks = nice_ticks(lo, hi)
        assert ticks[-1] > ticks[0] and ticks[0] <= lo and ticks[-1] >= hi
