"""Evaluation beyond images: ESC-50-style zero-shot audio classification, class folders of
sounds, and retrieval between text and audio, depth or thermal inputs (and images, through the
same code), end to end through the real runner on the tiny ImageBind checkpoint. Every score is
recomputed here from ``model.classify`` / ``model.match``; the formats' errors name the file and
column; an interrupted run resumes to the scores of an uninterrupted one.

The data is the package's sample-audio folder (six synthetic 0.8 s clips in ESC-50's layout,
captions in Clotho's: benchmarks/sample-audio/README.md) and tests/data/imagebind's depth and
thermal maps.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vlmzoo
import vlmzoo.evaluation
from vlmzoo.cli import main
from vlmzoo.errors import InputError
from vlmzoo.evaluation.data.common import DataError
from vlmzoo.evaluation.runner import EvalOptions, evaluate
from vlmzoo.evaluation.spec import (
    Benchmark,
    BenchmarkError,
    load_benchmark,
    read_benchmark_file,
)
from vlmzoo.evaluation.store import Store
from vlmzoo.modalities import Audio, Depth, Thermal

IMAGEBIND = Path(__file__).parent / "data" / "imagebind"
CHECKPOINT = IMAGEBIND / "checkpoint"
SAMPLE = Path(vlmzoo.evaluation.__file__).parent / "benchmarks" / "sample-audio"
PROMPT = "This is a sound of {}."


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny ImageBind, with vlmzoo's cache (where its pickle is converted) in a folder of this
    module's own for as long as the module runs: the runner and the CLI load it from there too."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield vlmzoo.load(CHECKPOINT, dtype="float32")


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    monkeypatch.delenv("VLMZOO_DATA", raising=False)


def run(model, bench, db: Path, *, load=None, **opts):
    """The real runner; the model comes from the fixture (``load``: something else to hand it)."""
    with Store(db) as store:
        return evaluate(str(CHECKPOINT), bench, store, EvalOptions(dtype="float32", resamples=50, **opts),
                        load=load or (lambda resolved: model), progress=False)


def scores(result) -> dict[str, float]:
    return {s.metric: s.value for s in result.scores}


def write_benchmark(folder: Path, text: str) -> Benchmark:
    (folder / "b.toml").write_text('name = "b"\ndescription = "test"\n' + text)
    return read_benchmark_file(folder / "b.toml")


def sample_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "ESC-50-master"))


def esc50_rows(folder: Path = SAMPLE) -> list[dict]:
    with (folder / "meta" / "esc50.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# -- what the scores should be, computed from the model's own task methods -----------------------------


def classification_scores(model, files: list[Path], truth: list[str], classes: list[str]) -> dict[str, float]:
    results = model.classify([Audio(str(f)) for f in files], classes, templates=[PROMPT])
    top1 = [r.labels[0] == t for r, t in zip(results, truth)]
    per_class = defaultdict(list)
    for hit, t in zip(top1, truth):
        per_class[t].append(hit)
    return {"top1": float(np.mean(top1)),
            "top5": float(np.mean([t in r.labels[:5] for r, t in zip(results, truth)])),
            "mean_per_class": float(np.mean([np.mean(v) for v in per_class.values()]))}


def recall_scores(similarity: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """Recall@K both ways from an (inputs x captions) similarity matrix, ties counted against
    the query: an input's rank is how many other inputs' captions score at least its best own
    caption; a caption's, how many other inputs score at least its own."""
    out = {}
    for k in (1, 5, 10):
        i2t = [np.sum(row[owner != i] >= row[owner == i].max()) < k for i, row in enumerate(similarity)]
        t2i = [np.sum(np.delete(similarity[:, j], owner[j]) >= similarity[owner[j], j]) < k
               for j in range(similarity.shape[1])]
        out[f"recall@{k}_i2t"], out[f"recall@{k}_t2i"] = float(np.mean(i2t)), float(np.mean(t2i))
    return out


def assert_no_near_ties(similarity: np.ndarray, owner: np.ndarray) -> None:
    """The comparisons recall rests on are not decided by float noise (the runner's embeddings
    come from other batches than ``match``'s)."""
    for i, row in enumerate(similarity):
        assert np.abs(row[owner != i] - row[owner == i].max()).min() > 1e-5
    for j in range(similarity.shape[1]):
        assert np.abs(np.delete(similarity[:, j], owner[j]) - similarity[owner[j], j]).min() > 1e-5


# -- ESC-50 layout: zero-shot audio classification ------------------------------------------------------


def test_esc50_layout_is_read_as_published():
    bench = load_benchmark("sample-audio-classify")
    samples = list(bench.samples())
    rows = esc50_rows()
    assert [s.id for s in samples] == [r["filename"] for r in rows]
    assert all(s.modality == "audio" and s.images == (SAMPLE / "audio" / s.id,) for s in samples)
    assert [s.label for s in samples] == [r["category"].replace("_", " ") for r in rows]  # clock_tick: words
    assert samples[1].meta == {"fold": 1, "target": 38, "category": "clock_tick", "esc10": True,
                               "src_file": "900003", "take": "A"}
    assert bench.class_names(samples) == ("siren", "clock tick", "rain")


def test_audio_classification_scores_equal_the_models_own_labels(model, tmp_path):
    bench = load_benchmark("sample-audio-classify")
    result = run(model, bench, tmp_path / "r.db")
    rows = esc50_rows()
    truth = [r["category"].replace("_", " ") for r in rows]
    classes = list(dict.fromkeys(truth))
    expected = classification_scores(model, [SAMPLE / "audio" / r["filename"] for r in rows], truth, classes)
    assert scores(result) == pytest.approx(expected)
    assert result.predicted == 6 and result.resumed == 0
    with Store(tmp_path / "r.db") as store:
        stored = store.predictions(result.run_id)
    assert {p.sample["modality"] for p in stored} == {"audio"}
    assert [p.prediction[0] for p in stored] == [
        r.labels[0] for r in model.classify([Audio(str(SAMPLE / "audio" / r["filename"])) for r in rows], classes,
                                            templates=[PROMPT])]


def test_one_esc50_fold(tmp_path):
    folder = sample_copy(tmp_path)
    bench = write_benchmark(tmp_path, 'task = "classify"\nmetrics = ["top1"]\n'
                            f'[data]\nformat = "esc50"\npath = "{folder}"\nfold = 2\n')
    assert [s.id for s in bench.samples()] == [r["filename"] for r in esc50_rows() if r["fold"] == "2"]
    # data.path may also be the CSV itself: the clips are in ../audio
    bench = write_benchmark(tmp_path, 'task = "classify"\nmetrics = ["top1"]\n'
                            f'[data]\nformat = "esc50"\npath = "{folder}/meta/esc50.csv"\nfold = 7\n')
    with pytest.raises(DataError, match=r"esc50.csv: no clips in fold 7 \(the file has folds 1, 2\)"):
        list(bench.samples())


def test_the_esc50_builtin_reads_a_local_copy_and_says_where_it_looks(tmp_path, monkeypatch):
    bench = load_benchmark("esc50")
    assert bench.is_builtin and bench.templates == (PROMPT,) and len(bench.classes) == 50
    with pytest.raises(BenchmarkError, match=r"\$VLMZOO_DATA.*--data"):
        list(bench.samples())
    sample_copy(tmp_path)  # a copy laid out as ESC-50 is published: <root>/ESC-50-master/{audio,meta}
    monkeypatch.setenv("VLMZOO_DATA", str(tmp_path))
    labels = {s.label for s in bench.samples()}
    assert labels == {"siren", "clock tick", "rain"} and labels <= set(bench.classes)
    assert len(list(load_benchmark("esc50", data=tmp_path / "ESC-50-master").samples())) == 6


def test_audiofolder_classifies_class_folders_of_sounds(model, tmp_path):
    rows = esc50_rows()
    for r in rows:
        folder = tmp_path / "sounds" / r["category"]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / "audio" / r["filename"], folder / r["filename"])
    (tmp_path / "sounds" / "rain" / "notes.txt").write_text("not a sound: skipped")
    (tmp_path / "names.json").write_text(json.dumps({r["category"]: r["category"].replace("_", " ") for r in rows}))
    bench = write_benchmark(tmp_path, f'task = "classify"\ntemplates = ["{PROMPT}"]\n'
                            'metrics = ["top1", "top5", "mean_per_class"]\n'
                            '[data]\nformat = "audiofolder"\npath = "sounds"\nclass_names = "names.json"\n')
    samples = list(bench.samples())
    assert len(samples) == 6 and {s.modality for s in samples} == {"audio"}
    assert samples[0].id == f"clock_tick/{rows[1]['filename']}" and samples[0].label == "clock tick"
    result = run(model, bench, tmp_path / "r.db")
    expected = classification_scores(model, [s.images[0] for s in samples], [s.label for s in samples],
                                     list(bench.class_names(samples)))
    assert scores(result) == pytest.approx(expected)


# -- retrieval between text and another modality --------------------------------------------------------


def test_audio_text_retrieval_recall_equals_recall_from_match(model, tmp_path):
    bench = load_benchmark("sample-audio-retrieve")
    result = run(model, bench, tmp_path / "r.db")
    with (SAMPLE / "captions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    captions = [[r[c] for c in ("caption_1", "caption_2", "caption_3") if r[c]] for r in rows]
    assert sum(map(len, captions)) == 17  # one clip has two captions: its empty cell is skipped
    owner = np.repeat(np.arange(len(rows)), [len(c) for c in captions])
    similarity = model.match([Audio(str(SAMPLE / "audio" / r["file_name"])) for r in rows],
                             [c for cs in captions for c in cs]).scores
    assert_no_near_ties(similarity, owner)
    assert scores(result) == pytest.approx(recall_scores(similarity, owner))
    assert set(scores(result)) == {f"recall@{k}_{d}" for k in (1, 5, 10) for d in ("i2t", "t2i")}


@pytest.mark.parametrize("modality, kind, files", [
    ("depth", Depth, ["depth-room.png", "depth-sphere.png"]),
    ("thermal", Thermal, ["thermal-blobs.png", "thermal-stripes.png"]),
    ("image", str, None),  # images run through the same code
])
def test_retrieval_between_text_and_any_modality(model, tmp_path, modality, kind, files):
    if files is None:  # the shipped image sample, its first four photos
        samples = list(load_benchmark("sample-retrieve").samples())[:4]
        items = [(s.images[0], list(s.answers[:2])) for s in samples]
    else:
        items = [(IMAGEBIND / f, [f"a {modality} map of {Path(f).stem.split('-')[1]}", f"{Path(f).stem} scene"])
                 for f in files]
    # the files' column is named after the modality ("depth": ...), which a manifest reads unmapped
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"id": str(i), modality: str(path), "captions": texts})
                                                for i, (path, texts) in enumerate(items)))
    bench = write_benchmark(tmp_path, 'task = "retrieve"\nmetrics = ["recall@1_i2t", "recall@1_t2i"]\n'
                            f'[data]\nformat = "manifest"\nmodality = "{modality}"\npath = "m.jsonl"\n'
                            'columns = { answers = "captions" }\n')
    result = run(model, bench, tmp_path / "r.db")
    owner = np.repeat(np.arange(len(items)), [len(t) for _, t in items])
    similarity = model.match([kind(str(p)) for p, _ in items], [t for _, ts in items for t in ts]).scores
    assert_no_near_ties(similarity, owner)
    expected = recall_scores(similarity, owner)
    assert scores(result) == pytest.approx({m: expected[m] for m in ("recall@1_i2t", "recall@1_t2i")})


# -- errors that name the file and the column -------------------------------------------------------------


def test_a_missing_clip_is_named_before_the_model_loads(tmp_path):
    folder = sample_copy(tmp_path)
    (folder / "audio" / "2-900004-A-38.wav").unlink()
    r = CliRunner().invoke(main, ["eval", "--models", str(CHECKPOINT), "--benchmark", "sample-audio-classify",
                                  "--data", str(folder), "--store", str(tmp_path / "r.db")])
    assert r.exit_code == 2
    assert "1 audio file(s) missing" in r.output and "2-900004-A-38.wav" in r.output


@pytest.mark.parametrize("column", ["category", "fold", "filename"])
def test_an_esc50_csv_without_a_required_column_is_named(tmp_path, column):
    folder = sample_copy(tmp_path)
    write_csv(folder / "meta" / "esc50.csv", [{k: v for k, v in r.items() if k != column} for r in esc50_rows()])
    with pytest.raises(DataError, match=rf"esc50.csv: no column '{column}' .*ESC-50's meta/esc50.csv has the columns"):
        list(load_benchmark("sample-audio-classify", data=folder).samples())


def test_esc50_rows_that_contradict_themselves_are_named(tmp_path):
    folder = sample_copy(tmp_path)
    rows = esc50_rows()
    rows[3]["category"] = "police_siren"  # target 42 is "siren" on line 2
    write_csv(folder / "meta" / "esc50.csv", rows)
    with pytest.raises(DataError, match=r"esc50.csv line 5: target 42 is 'police_siren' here but 'siren' earlier"):
        list(load_benchmark("sample-audio-classify", data=folder).samples())
    rows[3]["category"], rows[0]["fold"] = "siren", "one"
    write_csv(folder / "meta" / "esc50.csv", rows)
    with pytest.raises(DataError, match=r"esc50.csv line 2: fold 'one' is not a whole number"):
        list(load_benchmark("sample-audio-classify", data=folder).samples())


def test_a_captions_csv_without_a_mapped_or_file_column_is_named(tmp_path):
    folder = sample_copy(tmp_path)
    with (folder / "captions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    write_csv(folder / "captions.csv", [{k: v for k, v in r.items() if k != "caption_3"} for r in rows])
    bench = load_benchmark("sample-audio-retrieve", data=folder / "captions.csv")
    with pytest.raises(DataError, match=r"captions.csv: no column 'caption_3' \(data.columns maps answers to it\)"):
        list(bench.samples())
    # no mapping for the files and no column the files are looked for in by default
    bench = write_benchmark(folder, 'task = "retrieve"\nmetrics = ["recall@1_t2i"]\n[data]\nformat = "manifest"\n'
                            'modality = "audio"\npath = "captions.csv"\ncolumns = { answers = "caption_1" }\n')
    with pytest.raises(DataError, match=r"captions.csv: no column of audio files: expected one named 'image' or "
                                        r"'images' or 'audio'.*'file_name'"):
        list(bench.samples())


@pytest.mark.parametrize("fields, message", [
    ('task = "ask"\nmetrics = ["exact_match"]\n[data]\nformat = "manifest"\nmodality = "audio"\npath = "m.csv"',
     "ask benchmarks read images; audio inputs suit classify and retrieve benchmarks"),
    ('task = "classify"\nmetrics = ["top1"]\n[data]\nformat = "audiofolder"\nmodality = "image"\npath = "x"',
     "modality 'image' does not apply to the audiofolder format \\(it reads audio\\)"),
    ('task = "retrieve"\nmetrics = ["recall@1_t2i"]\n[data]\nformat = "flickr30k"\nmodality = "audio"\npath = "x"',
     "modality 'audio' does not apply to the flickr30k format \\(it reads image\\)"),
    ('task = "classify"\nmetrics = ["top1"]\n[data]\nformat = "manifest"\npath = "m.csv"\nfold = 1',
     "fold applies to the esc50 format"),
    (('task = "retrieve"\nmetrics = ["recall@1_t2i"]\n[data]\nformat = "manifest"\npath = "m.csv"\n'
      'columns = { image = ["a", "b"] }'), "columns.image names one column; lists of columns apply to answers"),
])
def test_specs_that_cannot_work_are_refused_when_read(tmp_path, fields, message):
    with pytest.raises(BenchmarkError, match=message):
        write_benchmark(tmp_path, fields + "\n")


def test_a_model_that_does_not_hear_is_refused_before_predicting(model, tmp_path):
    class ImagesOnly:  # an embedding model of images and texts, such as CLIP
        tasks = frozenset({"classify", "retrieve"})
        embed_modalities = ("text", "image")
        batch_size = 8

    with pytest.raises(InputError, match=r"does not take audio inputs, which benchmark sample-audio-classify holds "
                                         r"\(it takes: image\)"):
        run(model, load_benchmark("sample-audio-classify"), tmp_path / "r.db", load=lambda resolved: ImagesOnly())


# -- resuming, the CLI, the shipped data -------------------------------------------------------------------


@pytest.mark.parametrize("name, method", [("sample-audio-classify", "classify"), ("sample-audio-retrieve", "embed")])
def test_an_interrupted_run_resumes_to_the_uninterrupted_scores(model, tmp_path, name, method):
    calls = []

    def once(*args, **kwargs):  # the model's own method the first time, then the run dies
        calls.append(args)
        if len(calls) > 1:
            raise InputError("interrupted")
        return getattr(model, method)(*args, **kwargs)

    stops = type("StopsAfterOneBatch", (), {"__getattr__": lambda self, attr: getattr(model, attr),
                                            method: staticmethod(once)})()
    bench = load_benchmark(name)
    with pytest.raises(InputError, match="interrupted"):
        run(model, bench, tmp_path / "resumed.db", batch_size=2, load=lambda resolved: stops)
    with Store(tmp_path / "resumed.db") as store:
        (stopped,) = store.runs()
        assert len(store.done_ids(stopped.run_id)) == 2 and stopped.finished is None
    resumed = run(model, bench, tmp_path / "resumed.db", batch_size=2)
    clean = run(model, bench, tmp_path / "clean.db", batch_size=2)
    assert resumed.run_id == clean.run_id == stopped.run_id
    assert (resumed.resumed, resumed.predicted) == (2, 4)
    assert [(s.metric, s.value, s.low, s.high) for s in resumed.scores] == \
        [(s.metric, s.value, s.low, s.high) for s in clean.scores]


def test_vlmzoo_eval_finds_the_audio_benchmarks_by_name(model, tmp_path):
    listed = CliRunner().invoke(main, ["benchmarks", "--json"])
    names = {b["name"]: b for b in json.loads(listed.output)}
    assert {"esc50", "clotho-evaluation", "sample-audio-classify", "sample-audio-retrieve"} <= set(names)
    out = CliRunner().invoke(main, ["eval", "--models", str(CHECKPOINT), "--benchmark", "sample-audio-classify",
                                    "--dtype", "float32", "--store", str(tmp_path / "r.db"), "--json"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    entry = json.loads(out.output[out.output.index("{"):])["entries"][0]
    python = run(model, load_benchmark("sample-audio-classify"), tmp_path / "python.db")
    assert entry["samples"] == 6 and entry["run_id"] == python.run_id
    assert {m: s["value"] for m, s in entry["scores"].items()} == pytest.approx(scores(python))


def test_the_shipped_clips_are_what_their_script_writes(tmp_path):
    # -B: no __pycache__ left in the package's data folder
    subprocess.run([sys.executable, "-B", str(SAMPLE / "make_audio.py"), str(tmp_path)], check=True)
    shipped = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*") if p.is_file() and p.suffix in (".wav", ".csv"))
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all((SAMPLE / p).read_bytes() == (tmp_path / p).read_bytes() for p in shipped)
    with wave.open(str(SAMPLE / "audio" / esc50_rows()[0]["filename"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16_000, 1, 2, 12_800)
