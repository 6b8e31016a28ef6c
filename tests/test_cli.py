"""The vlmzoo command line, run in-process with click's runner and as a real subprocess."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from vlmzoo import catalog
from vlmzoo.cli import main

VLMZOO = [sys.executable, "-m", "vlmzoo"]


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def photo_dir(tmp_path, photos):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i, p in enumerate(photos):
        shutil.copy(p, (d / "sub" if i % 2 else d) / p.name)
    return d


def test_models_filters_and_formats(run):
    out = run("models", "--task", "ask", "--max-params", "3B", "--multi-image", "--json")
    rows = json.loads(out.stdout)
    assert rows and all("ask" in r["tasks"] and r["params_b"] <= 3 and r["multi_image"] for r in rows)
    assert "qwen2-vl-2b" in {r["id"] for r in rows}
    table = run("models", "--arch", "dual encoder")
    assert table.exit_code == 0 and "clip-vit-b-32" in table.output and "qwen2-vl-2b" not in table.output
    csv_rows = list(csv.DictReader(io.StringIO(run("models", "--csv").stdout)))
    assert len(csv_rows) == len(catalog.cards())
    assert {"id", "license", "params_b", "token_limit", "training_data"} <= set(csv_rows[0])


def test_models_piped_to_a_file_prints_whole_rows_with_short_licenses(tmp_path):
    """Not a terminal: rich must not fold the table into 80 columns of one-letter cells."""
    out = subprocess.run([*VLMZOO, "models"], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "80", "TERM": "dumb"}).stdout
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == {c.id for c in catalog.cards()}  # one line per model, the id whole
    assert "│ vision-language bridge │" in rows["qwen2-vl-2b"] and "│ Apache-2.0 " in rows["qwen2-vl-2b"]
    assert "│ non-commercial " in rows["moondream1"]
    assert "Research use only" not in out  # the full text is for `vlmzoo show`
    shown = subprocess.run([*VLMZOO, "show", "moondream1"], capture_output=True, text=True, check=True).stdout
    assert "Research use only, commercial use not allowed" in shown


def test_models_rejects_bad_filters(run):
    res = run("models", "--task", "dance")
    assert res.exit_code == 2 and "unknown task 'dance'" in res.output
    res = run("models", "--max-params", "lots")
    assert res.exit_code == 2 and "lots" in res.output


def test_show_and_unknown_id(run):
    res = run("show", "qwen2-vl-2b", "--json")
    card = json.loads(res.stdout)
    assert card["id"] == "qwen2-vl-2b" and card["multi_image"] is True
    res = run("show", "clip-vit-b-32")
    assert "151M" in res.output and "correction" in res.output
    res = run("show", "gpt-4o-mini")
    assert "[caption,ask] $0.15 / $0.6 per" in res.output
    res = run("show", "qwen2-vl-2c")
    assert res.exit_code == 2 and "Did you mean" in res.output and "qwen2-vl-2b" in res.output


def test_caption_folder_with_a_bad_file(run, tiny, photo_dir, tmp_path):
    (photo_dir / "sub" / "broken.jpg").write_bytes(b"not a jpeg")
    out_file = tmp_path / "caps.jsonl"
    res = run("caption", photo_dir, "--model", tiny["blip-caption"], "--max-new-tokens", 4, "--out", out_file)
    assert res.exit_code == 1
    assert "1 image(s) skipped" in res.output and "broken.jpg" in res.output
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 4 and all(r["text"] for r in rows)
    assert [Path(r["image"]).name for r in rows] == sorted(
        [Path(r["image"]).name for r in rows], key=lambda n: str(next(photo_dir.rglob(n)))
    )


def test_classify_jsonl_and_table(run, tiny, photo_dir):
    res = run("classify", photo_dir, "--model", tiny["clip"], "--labels", "cat,rocket,coffee", "--jsonl")
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 4
    for r in rows:
        assert set(r["scores"]) == {"cat", "rocket", "coffee"} and r["label"] in r["scores"]
        assert abs(sum(r["scores"].values()) - 1) < 1e-4
    table = run("classify", photo_dir, "--model", tiny["siglip"], "--labels", "cat,rocket")
    assert table.exit_code == 0 and "chelsea.png" in table.output


def test_ask_embed_match(run, tiny, photos):
    res = run("ask", photos[1], "how many cats?", "--model", tiny["blip-vqa"], "--jsonl", "--max-new-tokens", 3)
    assert res.exit_code == 0 and json.loads(res.stdout)["question"] == "how many cats?"
    res = run("embed", photos[0], "--text", "a cat", "--model", tiny["clip"], "--jsonl")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["modality"] for r in rows] == ["image", "text"] and len(rows[0]["embedding"]) == 16
    res = run("match", photos[0], photos[1], "--texts", "a cat,a rocket", "--model", tiny["blip-itm"], "--jsonl")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 4 and all(r["kind"] == "itm" and 0 <= r["score"] <= 1 for r in rows)


def test_task_the_model_lacks_and_empty_labels(run, tiny, photos):
    res = run("caption", photos[0], "--model", tiny["clip"])
    assert res.exit_code == 2 and "cannot 'caption'" in res.output and "classify" in res.output
    res = run("classify", photos[0], "--model", tiny["clip"], "--labels", " , ")
    assert res.exit_code == 2 and "--labels is empty" in res.output


def test_many_images_run_in_batches_behind_a_progress_bar(run, tiny, photos, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(12):
        shutil.copy(photos[i % len(photos)], many / f"{i:02d}{photos[i % len(photos)].suffix}")
    res = run("classify", many, "--model", tiny["clip"], "--labels", "cat,dog", "--jsonl", "--batch-size", 4)
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 12
    assert [json.loads(line)["image"] for line in res.stdout.splitlines()] == [str(p) for p in sorted(many.iterdir())]


def test_demo_offline_reports_each_model_in_a_line_and_still_prints_catalog(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VLMZOO_MODELS_DIR")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9", COLUMNS="200")
    t0 = time.monotonic()
    res = subprocess.run(VLMZOO + ["demo"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "vlmzoo catalog" in res.stdout and "qwen2-vl-2b" in res.stdout
    skipped = [line for line in res.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and "clip-vit-b-32: skipped" in skipped[0] and "hub unreachable" in skipped[0]
    assert time.monotonic() - t0 < 60


def test_demo_runs_the_models_from_a_mirror(tiny, tmp_path):
    env = dict(os.environ, VLMZOO_MODELS_DIR=str(tiny["root"]), HF_HUB_OFFLINE="1", COLUMNS="200")
    res = subprocess.run(VLMZOO + ["demo"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "skipped" not in res.stdout
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        assert res.stdout.count(name) >= 3  # sample list, classification row, caption row
    assert "(softmax)" in res.stdout


def test_help_does_not_import_torch():
    code = "import sys; from vlmzoo.cli import main; import vlmzoo.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
