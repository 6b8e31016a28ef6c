"""vlmzoo eval / compare end to end on tiny checkpoints: stored predictions, scores that can be
recomputed from them, resuming (kill -9 included), and clear errors."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from vlmzoo.cli import main
from vlmzoo.evaluation.metrics.vqa import vqa_accuracy
from vlmzoo.evaluation.runner import EvalOptions, evaluate
from vlmzoo.evaluation.spec import load_benchmark
from vlmzoo.evaluation.store import Store


def _eval(*args):
    result = CliRunner().invoke(main, ["eval", *args, "--json"], catch_exceptions=False)
    return result


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


def _many_samples_benchmark(tmp_path: Path, copies: int) -> Path:
    """The shipped sample's questions repeated ``copies`` times under new ids."""
    bench = load_benchmark("sample")
    rows = []
    for i in range(copies):
        for s in bench.samples():
            rows.append({"id": f"{s.id}-{i}", "image": str(s.images[0]), "question": s.question,
                         "answers": list(s.answers)})
    (tmp_path / "many.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "many.toml").write_text(
        'name = "many"\ndescription = "repeated sample questions"\ntask = "ask"\n'
        'prompt = "{question}"\nextract = "short_answer"\nmetrics = ["vqa_accuracy", "exact_match"]\n'
        '[data]\nformat = "manifest"\npath = "many.jsonl"\n')
    return tmp_path / "many.toml"


def test_eval_stores_every_prediction_and_scores_recompute(tiny, tmp_path):
    db = tmp_path / "r.db"
    out = _json(_eval("--models", str(tiny["blip-vqa"]), "--benchmark", "sample", "--store", str(db)))
    entry = out["entries"][0]
    assert entry["samples"] == 10
    with Store(db) as store:
        run = store.run(entry["run_id"])
        assert run.finished is not None and run.config["benchmark"] == "sample"
        assert {"vlmzoo", "torch", "transformers"} <= set(run.config["versions"])
        preds = store.predictions(run.run_id)
        assert len(preds) == 10 and len({p.sample_id for p in preds}) == 10
        # the stored score is the mean of the official per-sample accuracy over the stored answers
        expected = np.mean([vqa_accuracy(p.prediction, p.sample["answers"]) for p in preds])
        assert entry["scores"]["vqa_accuracy"]["value"] == pytest.approx(expected)
        low, high = entry["scores"]["vqa_accuracy"]["low"], entry["scores"]["vqa_accuracy"]["high"]
        assert low <= expected <= high
    # the same command again predicts nothing and gives the same scores
    again = _json(_eval("--models", str(tiny["blip-vqa"]), "--benchmark", "sample", "--store", str(db)))
    assert again["entries"][0]["run_id"] == entry["run_id"]
    assert again["entries"][0]["scores"] == entry["scores"]


def test_what_determines_outputs_changes_the_run(tiny, tmp_path):
    db = tmp_path / "r.db"
    a = _json(_eval("--models", str(tiny["blip-vqa"]), "--benchmark", "sample", "--store", str(db), "--limit", "4"))
    b = _json(_eval("--models", str(tiny["blip-vqa"]), "--benchmark", "sample", "--store", str(db), "--limit", "4",
                    "--max-new-tokens", "3"))
    c = _json(_eval("--models", str(tiny["blip-vqa"]), "--benchmark", "sample", "--store", str(db), "--limit", "5"))
    ids = {a["entries"][0]["run_id"], b["entries"][0]["run_id"], c["entries"][0]["run_id"]}
    assert len(ids) == 3


@pytest.mark.parametrize("bench, key", [("sample-classify", "clip"), ("sample-retrieve", "siglip"),
                                        ("sample-caption", "blip-caption")])
def test_every_sample_task_runs(bench, key, tiny, tmp_path):
    out = _json(_eval("--models", str(tiny[key]), "--benchmark", bench, "--store", str(tmp_path / "r.db")))
    scores = out["entries"][0]["scores"]
    assert scores and all(s["status"] == "ok" for s in scores.values())
    assert all(s["low"] <= s["value"] <= s["high"] for s in scores.values())


def test_compare_two_models_with_paired_tests(tiny, tmp_path):
    db = str(tmp_path / "r.db")
    out = _json(_eval("--models", f"{tiny['clip']},{tiny['siglip']}", "--benchmark", "sample-classify",
                      "--store", db))
    assert [e["model"] for e in out["entries"]] != [] and len(out["entries"]) == 2
    tests = out["paired_tests"]["top1"][0]
    assert tests["p_mcnemar"] is not None and 0 <= tests["p_bootstrap"] <= 1
    top = [e["scores"]["top1"]["value"] for e in out["entries"]]
    assert top[0] >= top[1]  # best first
    assert tests["difference"] == pytest.approx(top[1] - top[0])
    shown = CliRunner().invoke(main, ["compare", "sample-classify", "--store", db])
    assert shown.exit_code == 0 and "paired bootstrap" in shown.output


def test_clear_errors(tiny, tmp_path):
    db = str(tmp_path / "r.db")
    r = CliRunner().invoke(main, ["eval", "--models", str(tiny["clip"]), "--benchmark", "sample", "--store", db])
    assert r.exit_code == 2 and "does not do 'ask'" in r.output
    r = CliRunner().invoke(main, ["eval", "--models", str(tiny["clip"]), "--benchmark", "sampel", "--store", db])
    assert r.exit_code == 2 and "sample" in r.output  # a suggestion
    r = CliRunner().invoke(main, ["eval", "--models", "no/such-model-here", "--benchmark", "sample", "--store", db])
    assert r.exit_code == 2 and "no/such-model-here" in r.output
    r = CliRunner().invoke(main, ["compare", "nothing-like-this", "--store", db])
    assert r.exit_code == 2 and "no run matches" in r.output


def test_a_corrupt_image_names_the_sample_and_keeps_what_was_stored(tiny, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    bench = load_benchmark("sample")
    rows = []
    for i, s in enumerate(list(bench.samples())[:4]):
        image = folder / f"{i}.jpg"
        shutil.copy(s.images[0], image)
        rows.append({"id": f"q{i}", "image": image.name, "question": s.question, "answers": list(s.answers)})
    (folder / "3.jpg").write_bytes(b"not a jpeg at all")
    (folder / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "b.toml").write_text('name = "broken"\ndescription = "x"\ntask = "ask"\nmetrics = ["exact_match"]\n'
                                   '[data]\nformat = "manifest"\npath = "m.jsonl"\n')
    db = tmp_path / "r.db"
    r = CliRunner().invoke(main, ["eval", "--models", str(tiny["blip-vqa"]), "--benchmark", str(folder / "b.toml"),
                                  "--store", str(db), "--batch-size", "1"])
    assert r.exit_code == 2 and "sample q3" in r.output and "3.jpg" in r.output
    with Store(db) as store:
        (run,) = store.runs()
        assert store.done_ids(run.run_id) == {"q0", "q1", "q2"} and run.finished is None


def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    toml = _many_samples_benchmark(tmp_path, copies=30)  # 300 samples
    killed_db, clean_db = tmp_path / "killed.db", tmp_path / "clean.db"
    cmd = [sys.executable, "-m", "vlmzoo", "eval", "--models", str(tiny["blip-vqa"]), "--benchmark", str(toml),
           "--batch-size", "2", "--max-new-tokens", "3", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*cmd, "--store", str(killed_db)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    stored = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if killed_db.exists():
            try:
                with sqlite3.connect(killed_db, timeout=1) as db:
                    stored = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is being created
                stored = 0
            if stored >= 6:
                break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(killed_db) as store:
        (run,) = store.runs()
        at_kill = len(store.done_ids(run.run_id))
        assert 6 <= at_kill < 300 and run.finished is None
    resumed = subprocess.run([*cmd, "--store", str(killed_db)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    bench = load_benchmark(str(toml))
    with Store(clean_db) as store:
        clean = evaluate(str(tiny["blip-vqa"]), bench, store, EvalOptions(batch_size=2, max_new_tokens=3), progress=False)
        clean_preds = {p.sample_id: p.prediction for p in store.predictions(clean.run_id)}
    with Store(killed_db) as store:
        assert store.run(run.run_id).finished is not None
        preds = store.predictions(run.run_id)
        assert len(preds) == 300 and len({p.sample_id for p in preds}) == 300  # none lost, none twice
        assert {p.sample_id: p.prediction for p in preds} == clean_preds
        assert [(s.metric, s.value, s.low, s.high) for s in store.scores(run.run_id)] == \
            [(s.metric, s.value, s.low, s.high) for s in clean.scores]
    assert run.run_id == clean.run_id


def test_multiple_choice_runs_on_a_chat_model(tiny_chat, tmp_path):
    out = _json(_eval("--models", str(tiny_chat["qwen2_vl"]), "--benchmark", "sample-choice",
                      "--store", str(tmp_path / "r.db"), "--max-new-tokens", "4"))
    s = out["entries"][0]["scores"]["choice_accuracy"]
    assert s["status"] == "ok" and s["low"] <= s["value"] <= s["high"]


def test_a_prompt_longer_than_the_model_takes_is_refused_clearly(tiny, tmp_path):
    # tiny BLIP's text model has 64 positions; the choice prompt with four options is longer
    r = CliRunner().invoke(main, ["eval", "--models", str(tiny["blip-vqa"]), "--benchmark", "sample-choice",
                                  "--store", str(tmp_path / "r.db")])
    assert r.exit_code == 2 and "positions" in r.output and "longer than" in r.output


def test_grounding_benchmark_runs_and_scores_boxes(tiny_chat, tmp_path):
    bench = load_benchmark("sample")
    rows = []
    for s in list(bench.samples())[:3]:
        w, h = Image.open(s.images[0]).size
        rows.append({"id": s.id, "image": str(s.images[0]), "question": "the main object",
                     "box": [0, 0, w / 2, h / 2], "category": "corner"})
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "g.toml").write_text('name = "ground-mini"\ndescription = "x"\ntask = "ground"\n'
                                     'metrics = ["iou@0.5"]\nmax_new_tokens = 12\n'
                                     '[data]\nformat = "manifest"\npath = "g.jsonl"\n')
    db = tmp_path / "r.db"
    out = _json(_eval("--models", str(tiny_chat["qwen2_vl"]), "--benchmark", str(tmp_path / "g.toml"),
                      "--store", str(db)))
    score = out["entries"][0]["scores"]["iou@0.5"]
    with Store(db) as store:
        preds = store.predictions(out["entries"][0]["run_id"])
    # the score is the share of stored boxes (pixel xyxy, or None when the output held none)
    # that overlap the target at IoU >= 0.5
    from vlmzoo.evaluation.metrics.vision import grounding_hit
    expected = np.mean([grounding_hit(tuple(p.prediction) if p.prediction else None, tuple(p.sample["box"]))
                        for p in preds])
    assert len(preds) == 3 and score["value"] == pytest.approx(expected)
    assert all(p.raw is not None for p in preds)


def test_two_processes_evaluating_the_same_run_into_one_store_both_finish(tiny, tmp_path):
    """Two `vlmzoo eval` of one run on one store at once: both exit 0, each sample is stored once,
    and both report the scores the store holds."""
    toml = _many_samples_benchmark(tmp_path, copies=8)  # 80 samples
    db = tmp_path / "shared.db"
    cmd = [sys.executable, "-m", "vlmzoo", "eval", "--models", str(tiny["blip-vqa"]), "--benchmark", str(toml),
           "--batch-size", "2", "--max-new-tokens", "3", "--resamples", "50", "--json", "--store", str(db)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "IntegrityError" not in err, err[-3000:]
    boards = [json.loads(out[out.index("{"):]) for out, _ in outs]
    (run_id,) = {b["entries"][0]["run_id"] for b in boards}
    with Store(db) as store:
        (run,) = store.runs()
        assert run.run_id == run_id and run.finished is not None
        preds = store.predictions(run_id)
        assert len(preds) == 80 and len({p.sample_id for p in preds}) == 80
        stored = {s.metric: {"value": s.value, "low": s.low, "high": s.high} for s in store.scores(run_id)}
    for board in boards:
        assert {m: {k: s[k] for k in ("value", "low", "high")} for m, s in board["entries"][0]["scores"].items()} \
            == stored
