"""Benchmark definitions and data loaders: each format read from a tiny copy of its real layout,
path resolution, every error a loader promises, the built-ins and the shipped sample."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import pickle
import subprocess
import sys
import tomllib
import typing
from collections import OrderedDict
from pathlib import Path

import pytest
from PIL import Image

from vlmzoo.evaluation import data as data_module
from vlmzoo.evaluation import spec
from vlmzoo.evaluation.data.common import DataError
from vlmzoo.evaluation.data.refcoco import refs_pickle_to_json
from vlmzoo.evaluation.sample import Sample
from vlmzoo.evaluation.spec import (
    Benchmark,
    BenchmarkError,
    UnknownBenchmarkError,
    builtin_benchmarks,
    extract_answer,
    load_benchmark,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Embedded images are cached under tmp_path; no $VLMZOO_DATA leaks in from the shell."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VLMZOO_DATA", raising=False)


def img(path: Path, color=(200, 30, 30), size=(8, 6), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def png_bytes(color=(10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def bench(folder: Path, task: str, metrics: list[str], top: dict | None = None, **data) -> Benchmark:
    """A benchmark as if read from <folder>/t.toml; ``top`` holds fields beside [data]."""
    return Benchmark.model_validate({"name": "t", "description": "", "task": task, "metrics": metrics,
                                     "data": data, "source": folder / "t.toml", **(top or {})})


def samples(b: Benchmark, **kw) -> list[Sample]:
    return list(b.samples(**kw))


# --- fixture datasets in their published layouts -------------------------------------------------

def make_coco(root: Path) -> Path:
    folder = root / "coco"
    entries = [("val2014", "test", 42), ("val2014", "val", 43), ("train2014", "train", 44), ("val2014", "restval", 45)]
    images = []
    for n, (sub, split, cocoid) in enumerate(entries):
        name = f"COCO_{sub}_{cocoid:012d}.jpg"
        img(folder / sub / name)
        images.append({"filepath": sub, "filename": name, "imgid": n, "split": split, "cocoid": cocoid,
                       "sentids": [10 * n, 10 * n + 1],
                       "sentences": [{"raw": f"Caption one of {cocoid}. ", "sentid": 10 * n, "tokens": []},
                                     {"raw": f"caption two of {cocoid}", "sentid": 10 * n + 1, "tokens": []}]})
    return write_json(folder / "dataset_coco.json", {"images": images, "dataset": "coco"})


def make_flickr(root: Path) -> Path:
    folder = root / "flickr30k"
    images = []
    for n, (stem, split) in enumerate([("1000092795", "test"), ("10002456", "train")]):
        img(folder / "flickr30k-images" / f"{stem}.jpg")
        images.append({"filename": f"{stem}.jpg", "imgid": n, "split": split, "sentids": list(range(5 * n, 5 * n + 5)),
                       "sentences": [{"raw": f"{stem} caption {k}", "sentid": 5 * n + k} for k in range(5)]})
    return write_json(folder / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})


VQA_ANSWERS = ["yes"] * 8 + ["no", "yes "]


def make_vqav2(root: Path) -> Path:
    folder = root / "vqav2"
    img(folder / "val2014" / "COCO_val2014_000000000042.jpg")
    img(folder / "val2014" / "COCO_val2014_000000393225.jpg")
    write_json(folder / "v2_mscoco_val2014_annotations.json", {"data_subtype": "val2014", "annotations": [
        {"question_id": 420, "image_id": 42, "question_type": "is the", "answer_type": "yes/no",
         "multiple_choice_answer": "yes",
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(VQA_ANSWERS)]},
        {"question_id": 393225000, "image_id": 393225, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": "2",
         "answers": [{"answer": str(2 + (i == 9)), "answer_confidence": "maybe", "answer_id": i + 1} for i in range(10)]},
    ]})
    return write_json(folder / "v2_OpenEnded_mscoco_val2014_questions.json", {
        "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "questions": [
            {"image_id": 42, "question": "Is the dog asleep?", "question_id": 420},
            {"image_id": 393225, "question": "How many cups are there?", "question_id": 393225000},
        ]})


def make_textvqa(root: Path) -> Path:
    folder = root / "textvqa"
    for image_id in ("003a8ae2ef43b901", "0054c91397f2fe05"):
        img(folder / "train_images" / f"{image_id}.jpg")
    data = [
        {"question_id": 34602, "image_id": "003a8ae2ef43b901", "question": "what is the brand?", "set_name": "val",
         "answers": ["nokia"] * 7 + ["nokia phone", "nokia", "toshiba"], "image_classes": ["Mobile phone"]},
        {"question_id": 0, "image_id": "0054c91397f2fe05", "question": "who made this?", "set_name": "train",
         "answers": ["acme"] * 10, "image_classes": []},
    ]
    return write_json(folder / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "data": data})


def make_imagenet(root: Path) -> Path:
    folder = root / "imagenet" / "val"
    img(folder / "n01440764" / "ILSVRC2012_val_00000293.JPEG", fmt="JPEG")
    img(folder / "n01440764" / "ILSVRC2012_val_00002138.JPEG", fmt="JPEG")
    img(folder / "n01443537" / "ILSVRC2012_val_00000236.JPEG", fmt="JPEG")
    (folder / "n01443537" / "notes.txt").write_text("not an image")
    write_json(root / "imagenet" / "classnames.json", {"n01440764": "tench", "n01443537": "goldfish"})
    return folder


REFS = [
    {"ref_id": 0, "ann_id": 1000, "image_id": 581857, "split": "val", "category_id": 1, "sent_ids": [0, 1],
     "sentences": [{"sent_id": 0, "sent": "woman on left", "raw": "Woman on left", "tokens": []},
                   {"sent_id": 1, "sent": "lady in red", "raw": "lady in red.", "tokens": []}],
     "file_name": "COCO_train2014_000000581857_1000.jpg"},
    {"ref_id": 1, "ann_id": 1001, "image_id": 581857, "split": "testA", "category_id": 18, "sent_ids": [2],
     "sentences": [{"sent_id": 2, "sent": "dog", "raw": "dog", "tokens": []}],
     "file_name": "COCO_train2014_000000581857_1001.jpg"},
]


def make_refcoco(root: Path) -> Path:
    folder = root / "refcoco"
    img(root / "coco" / "train2014" / "COCO_train2014_000000581857.jpg")
    write_json(folder / "instances.json", {
        "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "width": 8, "height": 6}],
        "annotations": [{"id": 1000, "image_id": 581857, "bbox": [10.5, 20, 30, 40.25], "category_id": 1},
                        {"id": 1001, "image_id": 581857, "bbox": [0, 0, 5, 5], "category_id": 18}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 18, "name": "dog", "supercategory": "animal"}]})
    with (folder / "refs(unc).p").open("wb") as f:
        pickle.dump(REFS, f, protocol=2)
    return write_json(folder / "refs(unc).json", REFS)


# --- manifest ------------------------------------------------------------------------------------

def test_manifest_jsonl(tmp_path):
    for name in ("a.jpg", "b.png", "c.jpg"):
        img(tmp_path / "imgs" / name)
    lines = [
        {"id": "q1", "images": ["imgs/a.jpg", "imgs/b.png"], "question": "Same animal?", "answers": ["yes", "yes", "no"],
         "category": "compare", "source": "made-up"},
        {"id": 7, "images": "imgs/c.jpg", "question": "Which?", "answers": "B", "options": ["red", "blue"],
         "label": "dog", "box": [1, 2, 3.5, 4]},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    got = samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl"))
    assert got == [
        Sample("q1", (tmp_path / "imgs/a.jpg", tmp_path / "imgs/b.png"), "Same animal?", ("yes", "yes", "no"),
               category="compare"),
        Sample("7", (tmp_path / "imgs/c.jpg",), "Which?", ("B",), ("red", "blue"), "dog", (1.0, 2.0, 3.5, 4.0)),
    ]
    assert got[0].meta == {"source": "made-up"}


def test_manifest_csv_separators_and_row_ids(tmp_path):
    img(tmp_path / "pics" / "a.jpg")
    img(tmp_path / "pics" / "b.jpg")
    (tmp_path / "m.csv").write_text(
        'image,question,answers,box\n'
        'a.jpg;b.jpg,What?,cat|a cat| kitten,"10,20,30,40"\n'
        'b.jpg,Where?,here,[0 0 1 1]\n')
    got = samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.csv", images="pics"))
    assert [s.id for s in got] == ["0", "1"]  # no id column: the row's position
    assert got[0].images == (tmp_path / "pics/a.jpg", tmp_path / "pics/b.jpg")
    assert got[0].answers == ("cat", "a cat", "kitten")
    assert got[0].box == (10.0, 20.0, 30.0, 40.0) and got[1].box == (0.0, 0.0, 1.0, 1.0)


def test_manifest_column_mapping_from_a_toml_file(tmp_path):
    img(tmp_path / "data" / "x.jpg")
    (tmp_path / "data" / "m.jsonl").write_text(json.dumps(
        {"key": "k1", "file": "x.jpg", "prompt": "Q?", "refs": ["r1", "r2"], "label": "ignored"}) + "\n")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "mine.toml").write_text(
        'name = "mine"\ndescription = "d"\ntask = "ask"\nmetrics = ["vqa_accuracy"]\n'
        '[data]\nformat = "manifest"\npath = "../data/m.jsonl"\n'
        'columns = { id = "key", image = "file", question = "prompt", answers = "refs", label = "" }\n')
    b = load_benchmark(tmp_path / "defs" / "mine.toml")
    assert b.source == (tmp_path / "defs" / "mine.toml").resolve()
    assert samples(b) == [Sample("k1", (tmp_path / "data" / "x.jpg",), "Q?", ("r1", "r2"))]
    assert samples(b)[0].meta == {}  # a field switched off stays out of meta too


@pytest.mark.parametrize("content, suffix, message", [
    ('{"id": "a", "image": "x.jpg", "question": "q", "answers": ["y"]}\n{"id": "b", "image": \n',
     ".jsonl", r"m.jsonl line 2: not valid JSON"),
    ('["not", "an", "object"]\n', ".jsonl", r"m.jsonl line 1: expected a JSON object"),
    ('id,image,question,answers\na,x.jpg,q,y\nb,x.jpg,q,y,surplus\n', ".csv", r"m.csv line 3: 5 cells but the header has 4"),
])
def test_manifest_malformed_lines(tmp_path, content, suffix, message):
    img(tmp_path / "x.jpg")
    (tmp_path / f"m{suffix}").write_text(content)
    with pytest.raises(DataError, match=message):
        samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path=f"m{suffix}"))


def test_manifest_sample_without_image(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "lonely", "question": "q", "answers": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"1 sample\(s\) have no image: lonely"):
        samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl"))


def test_missing_image_files_are_listed_up_to_five(tmp_path):
    rows = [{"id": f"s{i}", "image": f"gone{i}.jpg", "question": "q", "answers": ["a"]} for i in range(7)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError) as e:
        samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl"))
    msg = str(e.value)
    assert "7 image file(s) missing" in msg and "(and 2 more)" in msg
    assert msg.count("gone") == 5 and str(tmp_path / "gone0.jpg") in msg


def test_duplicate_ids(tmp_path):
    img(tmp_path / "x.jpg")
    rows = [{"id": i, "image": "x.jpg", "question": "q", "answers": ["a"]} for i in ("a", "b", "a")]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"duplicate sample ids a;"):
        samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl"))


def test_task_fields_are_required(tmp_path):
    img(tmp_path / "x.jpg")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "image": "x.jpg", "question": "q"}) + "\n")
    with pytest.raises(BenchmarkError, match=r"'t' \(ask\): 1 sample\(s\) have no answers: a \(check data.columns\)"):
        samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl"))
    with pytest.raises(BenchmarkError, match="have no box"):
        samples(bench(tmp_path, "ground", ["iou@0.5"], format="manifest", path="m.jsonl"))


def test_bad_box_and_limit(tmp_path):
    img(tmp_path / "x.jpg")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "image": "x.jpg", "question": "q", "box": [5, 5, 1, 1]}))
    with pytest.raises(DataError, match=r"line 1: box .* has x1 < x0"):
        samples(bench(tmp_path, "ground", ["iou@0.5"], format="manifest", path="m.jsonl"))
    rows = [{"id": i, "image": "x.jpg", "question": "q", "answers": ["a"]} for i in range(5)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert [s.id for s in samples(bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl"),
                                  limit=2)] == ["0", "1"]


# --- parquet and saved Hugging Face datasets ----------------------------------------------------

def cached_name(data: bytes, suffix: str) -> str:
    return hashlib.sha256(data).hexdigest()[:40] + suffix


def test_parquet_bytes_are_cached_by_content_hash(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    img(tmp_path / "on-disk.jpg")
    green = png_bytes()
    table = pa.table({
        "id": ["p1", "p2", "p3"],
        "image": [{"bytes": green, "path": "whatever.png"}, {"bytes": None, "path": "on-disk.jpg"},
                  {"bytes": green, "path": None}],
        "question": ["q1", "q2", "q3"],
        "answers": [["a", "b"], ["c"], ["d"]],
        "width": [5, 8, 5],
    })
    pq.write_table(table, tmp_path / "data.parquet")
    got = samples(bench(tmp_path, "ask", ["exact_match"], format="parquet", path="data.parquet"))
    cached = tmp_path / "cache" / "vlmzoo" / "eval-images" / cached_name(green, ".png")
    assert [s.images for s in got] == [(cached,), (tmp_path / "on-disk.jpg",), (cached,)]
    assert cached.read_bytes() == green
    assert [s.answers for s in got] == [("a", "b"), ("c",), ("d",)]
    assert got[1].meta == {"width": 8}


def test_parquet_folder_split_and_undecodable_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "data").mkdir()
    for split, ids in (("train", ["t0", "t1"]), ("test", ["x0"])):
        pq.write_table(pa.table({"id": ids, "image": [{"bytes": png_bytes(), "path": None}] * len(ids),
                                 "label": ["cat"] * len(ids)}),
                       tmp_path / "data" / f"{split}-00000-of-00001.parquet")
    b = bench(tmp_path, "classify", ["top1"], format="parquet", path="data", split="test")
    assert [(s.id, s.label) for s in samples(b)] == [("x0", "cat")]
    with pytest.raises(DataError, match="no parquet file belongs to split 'dev'"):
        samples(bench(tmp_path, "classify", ["top1"], format="parquet", path="data", split="dev"))
    pq.write_table(pa.table({"image": [{"bytes": b"not an image", "path": None}], "label": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet row 0: embedded bytes are not an image"):
        samples(bench(tmp_path, "classify", ["top1"], format="parquet", path="bad.parquet"))


def test_hf_disk_dataset_dict_with_class_labels(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    img(tmp_path / "local.jpg")
    monkeypatch.chdir(tmp_path)  # datasets looks at path-only images when saving
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]),
                                  "question": datasets.Value("string")})
    red, blue = png_bytes((255, 0, 0)), png_bytes((0, 0, 255))
    train = datasets.Dataset.from_dict({"image": [{"bytes": red, "path": None}], "label": [0], "question": ["q"]},
                                       features=features)
    val = datasets.Dataset.from_dict({"image": [{"bytes": blue, "path": None}, {"bytes": None, "path": "local.jpg"}],
                                      "label": [1, 0], "question": ["q2", "q3"]}, features=features)
    datasets.DatasetDict({"train": train, "validation": val}).save_to_disk(str(tmp_path / "saved"))

    b = bench(tmp_path, "classify", ["top1"], format="hf_disk", path="saved", split="validation")
    got = samples(b)
    cache = tmp_path / "cache" / "vlmzoo" / "eval-images"
    local = (tmp_path / "local.jpg").read_bytes()  # save_to_disk embedded the path-only image's bytes
    assert [(s.id, s.label, s.images) for s in got] == [
        ("0", "dog", (cache / cached_name(blue, ".png"),)),
        ("1", "cat", (cache / cached_name(local, ".jpg"),)),
    ]
    assert got[1].images[0].read_bytes() == local
    assert b.class_names() == ("dog", "cat")
    with pytest.raises(DataError, match="choose a split with data.split .*train, validation"):
        samples(bench(tmp_path, "classify", ["top1"], format="hf_disk", path="saved"))
    with pytest.raises(DataError, match="not a dataset saved with save_to_disk"):
        samples(bench(tmp_path, "classify", ["top1"], format="hf_disk", path="."))


# --- COCO / Flickr30k captions -----------------------------------------------------------------

def test_coco_karpathy_splits(tmp_path):
    path = make_coco(tmp_path)
    test = samples(bench(path.parent, "caption", ["bleu4"], format="coco_karpathy", path=path.name, split="test"))
    assert test == [Sample("42", (path.parent / "val2014" / "COCO_val2014_000000000042.jpg",),
                           answers=("Caption one of 42.", "caption two of 42"))]
    assert test[0].meta["sentids"] == [0, 1]
    train = samples(bench(path.parent, "caption", ["bleu4"], format="coco_karpathy", path=path.name, split="train"))
    assert [s.id for s in train] == ["44", "45"]  # restval counts as train
    assert train[0].images == (path.parent / "train2014" / "COCO_train2014_000000000044.jpg",)
    with pytest.raises(DataError, match=r"no images in split 'testA' \(the file has splits: restval, test, train, val\)"):
        samples(bench(path.parent, "caption", ["bleu4"], format="coco_karpathy", path=path.name, split="testA"))


def test_coco_karpathy_rejects_images_without_sentences_and_flickr_files(tmp_path):
    img(tmp_path / "val2014" / "x.jpg")
    write_json(tmp_path / "k.json", {"images": [{"filepath": "val2014", "filename": "x.jpg", "split": "test",
                                                 "cocoid": 1, "sentences": []}]})
    with pytest.raises(DataError, match=r"k.json images\[0\] \(x.jpg\): no sentences"):
        samples(bench(tmp_path, "caption", ["bleu4"], format="coco_karpathy", path="k.json"))
    flickr = make_flickr(tmp_path)
    with pytest.raises(DataError, match="no 'cocoid'.*flickr30k"):
        samples(bench(flickr.parent, "caption", ["bleu4"], format="coco_karpathy", path=flickr.name))


def test_coco_captions_file(tmp_path):
    img(tmp_path / "val2014" / "COCO_val2014_000000000001.jpg")
    img(tmp_path / "val2014" / "COCO_val2014_000000000002.jpg")
    doc = {"images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg"},
                      {"id": 2, "file_name": "COCO_val2014_000000000002.jpg"}],
           "annotations": [{"image_id": 2, "id": 9, "caption": "b one"}, {"image_id": 1, "id": 8, "caption": "a one\n"},
                           {"image_id": 2, "id": 10, "caption": "b two"}]}
    write_json(tmp_path / "annotations" / "captions_val2014.json", doc)
    b = bench(tmp_path, "caption", ["cider"], format="coco_karpathy", path="annotations/captions_val2014.json",
              images="../val2014")
    assert samples(b) == [Sample("1", (tmp_path / "val2014" / "COCO_val2014_000000000001.jpg",), answers=("a one",)),
                          Sample("2", (tmp_path / "val2014" / "COCO_val2014_000000000002.jpg",),
                                 answers=("b one", "b two"))]
    doc["annotations"] = doc["annotations"][:1]
    write_json(tmp_path / "annotations" / "captions_val2014.json", doc)
    with pytest.raises(DataError, match=r"1 image\(s\) have no captions: 1"):
        samples(b)


def test_flickr30k(tmp_path):
    path = make_flickr(tmp_path)
    got = samples(bench(path.parent, "retrieve", ["recall@1_i2t"], format="flickr30k", path=path.name,
                        images="flickr30k-images", split="test"))
    assert got == [Sample("1000092795", (path.parent / "flickr30k-images" / "1000092795.jpg",),
                          answers=tuple(f"1000092795 caption {k}" for k in range(5)))]


# --- VQA v2 and TextVQA -------------------------------------------------------------------------

def test_vqav2(tmp_path):
    path = make_vqav2(tmp_path)
    b = bench(path.parent, "ask", ["vqa_accuracy"], format="vqav2", path=path.name,
              annotations="v2_mscoco_val2014_annotations.json")
    got = samples(b)
    assert got == [
        Sample("420", (path.parent / "val2014" / "COCO_val2014_000000000042.jpg",), "Is the dog asleep?",
               tuple(VQA_ANSWERS), category="yes/no"),
        Sample("393225000", (path.parent / "val2014" / "COCO_val2014_000000393225.jpg",), "How many cups are there?",
               ("2",) * 9 + ("3",), category="number"),
    ]
    assert got[1].meta == {"image_id": 393225, "question_type": "how many", "multiple_choice_answer": "2"}


def test_vqav2_errors(tmp_path):
    path = make_vqav2(tmp_path)
    with pytest.raises(DataError, match="vqav2 needs data.annotations"):
        samples(bench(path.parent, "ask", ["vqa_accuracy"], format="vqav2", path=path.name))
    ann_path = path.parent / "v2_mscoco_val2014_annotations.json"
    ann = json.loads(ann_path.read_text())
    ann["annotations"] = ann["annotations"][:1]
    write_json(ann_path, ann)
    with pytest.raises(DataError, match=r"no annotation for 1 question\(s\) .*: 393225000"):
        samples(bench(path.parent, "ask", ["vqa_accuracy"], format="vqav2", path=path.name, annotations=ann_path.name))
    ann_path.write_text('{"annotations": [')
    with pytest.raises(DataError, match=r"v2_mscoco_val2014_annotations.json: not valid JSON \(line 1"):
        samples(bench(path.parent, "ask", ["vqa_accuracy"], format="vqav2", path=path.name, annotations=ann_path.name))


def test_textvqa(tmp_path):
    path = make_textvqa(tmp_path)
    got = samples(bench(path.parent, "ask", ["anls"], format="textvqa", path=path.name, split="val"))
    assert got == [Sample("34602", (path.parent / "train_images" / "003a8ae2ef43b901.jpg",), "what is the brand?",
                          ("nokia",) * 7 + ("nokia phone", "nokia", "toshiba"))]
    assert len(samples(bench(path.parent, "ask", ["anls"], format="textvqa", path=path.name))) == 2
    doc = json.loads(path.read_text())
    doc["data"][0]["answers"] = []
    write_json(path, doc)
    with pytest.raises(DataError, match=r"data\[0\] \(question 34602\): no answers"):
        samples(bench(path.parent, "ask", ["anls"], format="textvqa", path=path.name))


# --- image folders ---------------------------------------------------------------------------------

def test_imagefolder_with_readable_names(tmp_path):
    root = make_imagenet(tmp_path)
    b = bench(root.parent, "classify", ["top1"], format="imagefolder", path="val", class_names="classnames.json")
    got = samples(b)
    assert [(s.id, s.label) for s in got] == [("n01440764/ILSVRC2012_val_00000293.JPEG", "tench"),
                                             ("n01440764/ILSVRC2012_val_00002138.JPEG", "tench"),
                                             ("n01443537/ILSVRC2012_val_00000236.JPEG", "goldfish")]
    assert got[2].images == (root / "n01443537" / "ILSVRC2012_val_00000236.JPEG",)
    assert b.class_names() == ("tench", "goldfish")
    plain = bench(root.parent, "classify", ["top1"], format="imagefolder", path="val")
    assert [s.label for s in samples(plain)] == ["n01440764", "n01440764", "n01443537"]


@pytest.mark.parametrize("name, content, labels", [
    ("keras.json", json.dumps({"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}), ["tench", "goldfish"]),
    ("clip.json", json.dumps(["tench fish", "goldfish"]), ["tench fish", "goldfish"]),
    ("LOC_synset_mapping.txt", "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n",
     ["tench, Tinca tinca", "goldfish, Carassius auratus"]),
])
def test_imagefolder_class_name_files(tmp_path, name, content, labels):
    root = make_imagenet(tmp_path)
    (root.parent / name).write_text(content)
    got = samples(bench(root.parent, "classify", ["top1"], format="imagefolder", path="val", class_names=name))
    assert list(dict.fromkeys(s.label for s in got)) == labels


@pytest.mark.parametrize("names, message", [
    ({"n01440764": "crane", "n01443537": "crane"}, "n01440764 and n01443537 are both named 'crane'"),
    ({"n01440764": "tench"}, "no name for class folder"),
    (["only one"], "lists 1 class names but there are 2 class folders"),
])
def test_imagefolder_class_name_errors(tmp_path, names, message):
    root = make_imagenet(tmp_path)
    write_json(root.parent / "names.json", names)
    with pytest.raises(DataError, match=message):
        samples(bench(root.parent, "classify", ["top1"], format="imagefolder", path="val", class_names="names.json"))


# --- RefCOCO -----------------------------------------------------------------------------------------

def test_refcoco_json_boxes_become_corners(tmp_path):
    path = make_refcoco(tmp_path)
    image = tmp_path / "coco" / "train2014" / "COCO_train2014_000000581857.jpg"
    b = bench(path.parent, "ground", ["iou@0.5"], format="refcoco", path=path.name, images="../coco/train2014",
              split="val")
    got = samples(b)
    assert got == [Sample("0-0", (image,), "woman on left", box=(10.5, 20.0, 40.5, 60.25), category="person"),
                   Sample("0-1", (image,), "lady in red", box=(10.5, 20.0, 40.5, 60.25), category="person")]
    assert got[1].meta["raw"] == "lady in red." and got[1].meta["split"] == "val"
    everything = samples(bench(path.parent, "ground", ["iou@0.5"], format="refcoco", path=path.name,
                               images="../coco/train2014"))
    assert [(s.id, s.box, s.category) for s in everything][-1] == ("1-2", (0.0, 0.0, 5.0, 5.0), "dog")


def test_refcoco_pickle_needs_allow_pickle(tmp_path):
    path = make_refcoco(tmp_path)
    kw = {"format": "refcoco", "path": "refs(unc).p", "images": "../coco/train2014", "split": "val"}
    with pytest.raises(DataError, match=r"refs\(unc\).p is a pickle, and unpickling can run code.*allow_pickle = true"):
        samples(bench(path.parent, "ground", ["iou@0.5"], **kw))
    from_pickle = samples(bench(path.parent, "ground", ["iou@0.5"], allow_pickle=True, **kw))
    from_json = samples(bench(path.parent, "ground", ["iou@0.5"], **{**kw, "path": path.name}))
    assert from_pickle == from_json and len(from_pickle) == 2
    converted = refs_pickle_to_json(path.parent / "refs(unc).p", tmp_path / "out.json")
    assert json.loads(converted.read_text()) == REFS


def test_refcoco_pickle_with_classes_is_refused(tmp_path):
    path = make_refcoco(tmp_path)
    with (path.parent / "evil.p").open("wb") as f:
        pickle.dump([OrderedDict(ref_id=0)], f)
    with pytest.raises(DataError, match=r"asks for collections.OrderedDict"):
        samples(bench(path.parent, "ground", ["iou@0.5"], format="refcoco", path="evil.p", allow_pickle=True))


def test_refcoco_missing_annotation(tmp_path):
    path = make_refcoco(tmp_path)
    instances = json.loads((path.parent / "instances.json").read_text())
    instances["annotations"] = instances["annotations"][1:]
    write_json(path.parent / "instances.json", instances)
    with pytest.raises(DataError, match=r"ref 0 \(ref_id 0\): annotation 1000 is not in .*instances.json"):
        samples(bench(path.parent, "ground", ["iou@0.5"], format="refcoco", path=path.name, images="../coco/train2014"))


# --- paths ---------------------------------------------------------------------------------------------

def test_relative_paths_env_vars_and_home(tmp_path, monkeypatch):
    img(tmp_path / "store" / "pics" / "x.jpg")
    (tmp_path / "store" / "m.jsonl").write_text(json.dumps({"id": "a", "image": "x.jpg", "label": "l"}))
    monkeypatch.setenv("MYDATA", str(tmp_path / "store"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for raw in ("${MYDATA}/m.jsonl", "$MYDATA/m.jsonl", "~/store/m.jsonl", "../store/m.jsonl"):
        b = bench(tmp_path / "defs", "classify", ["top1"], format="manifest", path=raw, images="pics")
        src = b.data_source()
        assert (src.path, src.images) == (tmp_path / "store" / "m.jsonl", tmp_path / "store" / "pics"), raw
        assert samples(b)[0].images == (tmp_path / "store" / "pics" / "x.jpg",)


def test_missing_paths_name_benchmark_field_and_path(tmp_path, monkeypatch):
    b = bench(tmp_path, "ask", ["exact_match"], format="manifest", path="nope/m.jsonl")
    with pytest.raises(BenchmarkError, match=rf"benchmark 't': data.path {tmp_path}/nope/m.jsonl does not exist"):
        samples(b)
    (tmp_path / "m.jsonl").write_text("{}")
    b = bench(tmp_path, "ask", ["exact_match"], format="manifest", path="m.jsonl", images="pics")
    with pytest.raises(BenchmarkError, match=rf"data.images {tmp_path}/pics does not exist"):
        samples(b)
    b = bench(tmp_path, "ask", ["exact_match"], format="manifest", path="${NOT_SET_ANYWHERE}/m.jsonl")
    with pytest.raises(BenchmarkError, match=r"data.path '\$\{NOT_SET_ANYWHERE\}/m.jsonl' uses \$NOT_SET_ANYWHERE, "
                                             r"which is not set"):
        samples(b)


def test_builtin_without_data_says_how_to_point_at_it(tmp_path, monkeypatch):
    b = load_benchmark("vqav2-val")
    with pytest.raises(BenchmarkError) as e:
        samples(b)
    assert "'vqav2-val'" in str(e.value) and "$VLMZOO_DATA" in str(e.value) and "--data" in str(e.value)
    monkeypatch.setenv("VLMZOO_DATA", str(tmp_path))
    with pytest.raises(BenchmarkError) as e:
        samples(b)
    msg = str(e.value)
    assert f"data.path {tmp_path}/vqav2/v2_OpenEnded_mscoco_val2014_questions.json does not exist" in msg
    assert "$VLMZOO_DATA" in msg and "--data PATH" in msg


def test_builtins_read_their_published_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMZOO_DATA", str(tmp_path))
    for make in (make_coco, make_flickr, make_vqav2, make_textvqa, make_imagenet, make_refcoco):
        make(tmp_path)
    ids = {name: [s.id for s in load_benchmark(name).samples()] for name in
           ("coco-karpathy-test", "flickr30k-test", "vqav2-val", "textvqa-val", "imagenet-val", "refcoco-val")}
    assert ids == {"coco-karpathy-test": ["42"], "flickr30k-test": ["1000092795"], "vqav2-val": ["420", "393225000"],
                   "textvqa-val": ["34602"], "refcoco-val": ["0-0", "0-1"],
                   "imagenet-val": ["n01440764/ILSVRC2012_val_00000293.JPEG", "n01440764/ILSVRC2012_val_00002138.JPEG",
                                    "n01443537/ILSVRC2012_val_00000236.JPEG"]}


def test_data_override_moves_the_whole_dataset(tmp_path, monkeypatch):
    path = make_vqav2(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    b = load_benchmark("vqav2-val", data="elsewhere/vqav2/v2_OpenEnded_mscoco_val2014_questions.json")
    assert b.data.path == str(path)
    got = samples(b)  # annotations and val2014/ are found next to the overriding file
    assert [s.id for s in got] == ["420", "393225000"]
    assert got[0].images[0].parent == path.parent / "val2014"


# --- benchmark files ------------------------------------------------------------------------------

def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownBenchmarkError, match="Did you mean: coco-karpathy-test"):
        load_benchmark("coco-karpathy")
    with pytest.raises(BenchmarkError, match="benchmark file .*missing.toml does not exist"):
        load_benchmark("missing.toml")


BASE = 'name = "x"\ndescription = ""\n[data]\nformat = "manifest"\npath = "m.jsonl"\n'


@pytest.mark.parametrize("top, message", [
    ('task = "ask"\nmetrics = ["vqa_acc"]', r"unknown metric\(s\) 'vqa_acc' \(did you mean vqa_accuracy"),
    ('task = "caption"\nmetrics = ["top1"]', r"metric\(s\) \['top1'\] do not score caption"),
    ('task = "ask"\nmetrics = ["anls"]\nprompt = "{query}"', r"prompt uses \['query'\]"),
    ('task = "ask"\nmetrics = ["anls"]\nprompt = "Say it."', r"must contain \{question\}"),
    ('task = "classify"\nmetrics = ["top1"]\ntemplates = ["a {} of a {}"]', "exactly one {}"),
    ('task = "retrieve"\nmetrics = ["recall@1_t2i"]\nextract = "first_line"', "extract applies to ask and caption"),
    ('task = "ask"\nmetrics = ["anls"]\nsource = "/tmp"', "'source' is set by vlmzoo"),
    ('task = "juggle"\nmetrics = ["anls"]', "task"),
])
def test_invalid_benchmark_files(tmp_path, top, message):
    (tmp_path / "x.toml").write_text(top + "\n" + BASE)
    with pytest.raises(BenchmarkError, match=message):
        load_benchmark(tmp_path / "x.toml")


def test_invalid_data_tables(tmp_path):
    (tmp_path / "x.toml").write_text('task = "ask"\nmetrics = ["anls"]\n' + BASE + 'columns = { answer = "a" }\n')
    with pytest.raises(BenchmarkError, match=r"data: .*unknown field\(s\) \['answer'\]"):
        load_benchmark(tmp_path / "x.toml")
    (tmp_path / "y.toml").write_text('task = "ask"\nmetrics = ["anls"]\n' + BASE + "allow_pickle = true\n")
    with pytest.raises(BenchmarkError, match="allow_pickle applies to the refcoco format"):
        load_benchmark(tmp_path / "y.toml")
    (tmp_path / "z.toml").write_text("name = [")
    with pytest.raises(BenchmarkError, match="z.toml: not valid TOML"):
        load_benchmark(tmp_path / "z.toml")


def test_yaml_benchmark_files(tmp_path, monkeypatch):
    (tmp_path / "b.yaml").write_text("name: y\ndescription: ''\ntask: ask\nmetrics: [anls]\n"
                                     "data: {format: manifest, path: m.jsonl}\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(BenchmarkError, match="reading YAML needs PyYAML"):
            load_benchmark(tmp_path / "b.yaml")
    else:
        assert load_benchmark(tmp_path / "b.yaml").data.path == "m.jsonl"
        monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
        with pytest.raises(BenchmarkError, match="reading YAML needs PyYAML"):
            load_benchmark(tmp_path / "b.yaml")


def test_defaults_per_task(tmp_path):
    assert bench(tmp_path, "ask", ["anls"], format="manifest", path="m").max_new_tokens == 32
    assert bench(tmp_path, "caption", ["cider"], format="manifest", path="m").max_new_tokens == 64
    classify = bench(tmp_path, "classify", ["top1"], format="manifest", path="m")
    assert classify.templates == ("a photo of a {}.",)
    assert bench(tmp_path, "retrieve", ["recall@5_i2t"], format="manifest", path="m").max_new_tokens is None


def test_prompts_and_answer_extraction(tmp_path):
    b = bench(tmp_path, "ask", ["choice_accuracy"], {"prompt": "Q: {question}\n{options}\nLetter:"},
              format="manifest", path="m")
    s = Sample("1", (tmp_path / "x.jpg",), "Which colour?", ("B",), ("red", "green", "blue"))
    assert b.render_prompt(s) == "Q: Which colour?\nA. red\nB. green\nC. blue\nLetter:"
    plain = bench(tmp_path, "ask", ["anls"], {"prompt": "{question} Be brief."}, format="manifest", path="m")
    with pytest.raises(BenchmarkError, match="has options but the prompt has no {options}"):
        plain.render_prompt(s)
    assert bench(tmp_path, "ground", ["iou@0.5"], format="manifest", path="m").render_prompt(
        Sample("g", (), "the red car")) == "the red car"
    assert bench(tmp_path, "caption", ["cider"], format="manifest", path="m").render_prompt(s) is None
    out = "\n  Answer: Two dogs.\nBecause I counted."
    assert extract_answer(out, "none") == out and extract_answer(out, "choice") == out
    assert extract_answer(out, "first_line") == "Answer: Two dogs."
    assert extract_answer(out, "short_answer") == "Two dogs"
    assert extract_answer("", "short_answer") == ""


def test_choice_answers_are_checked(tmp_path):
    img(tmp_path / "x.jpg")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "image": "x.jpg", "question": "q", "answers": ["E"],
                                                  "options": ["p", "q"]}))
    with pytest.raises(BenchmarkError, match=r"sample a's answer 'E' is neither an option letter \(A-B\)"):
        samples(bench(tmp_path, "ask", ["choice_accuracy"], format="manifest", path="m.jsonl"))


# --- keeping the name lists in sync; no torch on import --------------------------------------------

def test_format_names_match_the_loaders():
    assert set(typing.get_args(spec.Format)) == set(data_module.FORMATS)


def test_every_metric_in_the_table_resolves_to_its_implementation():
    from vlmzoo.evaluation.metrics import METRICS, TABLE
    from vlmzoo.evaluation.sample import Sample

    core = {"vqa_accuracy", "exact_match", "anls", "choice_accuracy", "top1", "top5", "mean_per_class", "iou@0.5"}
    coco = {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "spice"}
    retrieval = {f"recall@{k}_{d}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert set(TABLE) == core | coco | retrieval
    for name, row in TABLE.items():
        metric = METRICS[name]
        assert callable(metric.rows) and callable(metric.aggregate), name
        assert metric.tasks == row.tasks and metric.description == row.description, name
        assert metric.binary == (row.kind == "binary"), name
    one = Sample(id="a", images=(), answers=("2",) * 4)  # a per-sample metric scores through the table
    assert METRICS["vqa_accuracy"].rows(["2", "3"], [one, one]).tolist() == [[1.0], [0.0]]
    assert METRICS["exact_match"].aggregate(METRICS["exact_match"].rows(["2", "3"], [one, one])) == 0.5


def test_importing_spec_and_data_does_not_import_torch():
    code = ("import sys, vlmzoo.evaluation.spec, vlmzoo.evaluation.data; "
            "print(sorted(m for m in ('torch', 'datasets', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- built-ins and the shipped sample -----------------------------------------------------------------

def test_builtins_parse_and_point_at_env_var_paths():
    benches = {b.name: b for b in builtin_benchmarks()}
    real = {"coco-karpathy-test": "caption", "vqav2-val": "ask", "textvqa-val": "ask", "imagenet-val": "classify",
            "flickr30k-test": "retrieve", "refcoco-val": "ground", "esc50": "classify", "clotho-evaluation": "retrieve"}
    for name, task in real.items():
        b = benches[name]
        assert b.task == task and b.is_builtin
        assert b.data.path.startswith("${VLMZOO_DATA}/"), name
        assert "VLMZOO_DATA" in b.description and "--data" in b.description, name
    assert benches["vqav2-val"].extract == "short_answer"
    assert benches["vqav2-val"].prompt == "{question}\nAnswer the question using a single word or phrase."
    assert set(benches["textvqa-val"].metrics) == {"vqa_accuracy", "anls"}
    assert benches["coco-karpathy-test"].metrics == ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l",
                                                     "cider", "spice")
    assert len(benches["flickr30k-test"].metrics) == 6 and not benches["refcoco-val"].data.allow_pickle
    assert len(benches["imagenet-val"].templates) == 7
    assert benches["esc50"].data.modality == benches["clotho-evaluation"].data.modality == "audio"
    assert len(benches["esc50"].classes) == 50 and benches["imagenet-val"].data.modality == "image"


SAMPLE_NAMES = ("sample", "sample-caption", "sample-classify", "sample-choice", "sample-retrieve")


def test_sample_benchmarks_load_from_the_package():
    import vlmzoo.evaluation

    folder = Path(vlmzoo.evaluation.__file__).parent / "benchmarks" / "sample"
    loaded = {name: samples(load_benchmark(name)) for name in SAMPLE_NAMES}
    ids = [s.id for s in loaded["sample"]]
    assert len(ids) == 10 and all([s.id for s in v] == ids for v in loaded.values())
    for s in loaded["sample"]:
        assert len(s.answers) == 10 and len(set(s.answers)) < 10 and s.question.endswith("?") and s.label is None
        (path,) = s.images
        assert path.parent == folder
        with Image.open(path) as im:
            assert im.format == "JPEG" and max(im.size) == 320
            im.load()
    assert all(len(s.answers) == 5 and s.question is None for s in loaded["sample-caption"])
    assert all(len(s.options) == 4 and s.answers[0] in "ABCD" for s in loaded["sample-choice"])
    assert len({s.answers[0] for s in loaded["sample-choice"]}) > 1  # the right letter varies
    assert len(load_benchmark("sample-classify").class_names()) == 10
    readme = (folder / "README.md").read_text()
    assert all(s.images[0].name in readme for s in loaded["sample"])


def test_package_data_ships_every_benchmark_file():
    import vlmzoo.evaluation

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = patterns["vlmzoo.evaluation"]
    package = Path(vlmzoo.evaluation.__file__).parent
    for f in (package / "benchmarks").rglob("*"):
        if f.is_file() and "__pycache__" not in f.parts:
            rel = f.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), rel
