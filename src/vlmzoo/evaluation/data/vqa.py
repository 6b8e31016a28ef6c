"""Visual question answering files: VQA v2 (questions + annotations JSON) and TextVQA.

VQA v2: the questions file (questions[] with question_id, image_id, question; data_subtype such
as val2014) and the annotations file (annotations[] with question_id, answers[10] of
{"answer", ...}, answer_type, question_type, multiple_choice_answer). Images are
<images>/COCO_<data_subtype>_<image_id:012d>.jpg; <images> defaults to a folder named after
the subtype next to the questions file. category = answer_type (yes/no, number, other).

TextVQA: data[] with question_id, image_id, question, answers[10], set_name. Images are
<images>/<image_id>.jpg; <images> defaults to train_images/ next to the file (TextVQA's val
images live there too). ``split`` keeps the entries whose set_name matches.
"""

from __future__ import annotations

from collections.abc import Iterator

from vlmzoo.evaluation.data.common import DataError, DataSource, first, read_json
from vlmzoo.evaluation.sample import Sample


def _list_field(doc, key: str, path, what: str) -> list:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise DataError(f"{path}: not a {what} (no {key}[] list)")
    return doc[key]


def load_vqav2(src: DataSource) -> Iterator[Sample]:
    questions_doc = read_json(src.path, "VQA questions file")
    questions = _list_field(questions_doc, "questions", src.path, "VQA v2 questions file")
    if src.annotations is None:
        raise DataError(f"benchmark {src.benchmark!r}: vqav2 needs data.annotations "
                        "(the v2_mscoco_<subtype>_annotations.json file; answers are not in the questions file)")
    annotations_doc = read_json(src.annotations, "VQA annotations file")
    annotations = _list_field(annotations_doc, "annotations", src.annotations, "VQA v2 annotations file")

    subtype = questions_doc.get("data_subtype") or src.split
    if not subtype:
        raise DataError(f"{src.path}: no data_subtype (e.g. val2014) to name the images by; set data.split to it")
    other = annotations_doc.get("data_subtype")
    if other and other != subtype:
        raise DataError(f"{src.annotations} is for {other}, but the questions in {src.path} are for {subtype}")

    by_question = {}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "question_id" not in ann or not isinstance(ann.get("answers"), list):
            raise DataError(f"{src.annotations} annotations[{i}]: needs question_id and answers[]")
        by_question[ann["question_id"]] = ann

    root = src.images_root(subtype)
    out, unanswered = [], []
    for i, q in enumerate(questions):
        if not isinstance(q, dict) or not {"question_id", "image_id", "question"} <= set(q):
            raise DataError(f"{src.path} questions[{i}]: needs question_id, image_id and question")
        ann = by_question.get(q["question_id"])
        if ann is None:
            unanswered.append(q["question_id"])
            continue
        try:
            answers = tuple(str(a["answer"]) for a in ann["answers"])
        except (TypeError, KeyError):
            raise DataError(f"{src.annotations}: question {q['question_id']} has answers without an 'answer'") from None
        out.append(Sample(
            id=str(q["question_id"]),
            images=(root / f"COCO_{subtype}_{int(q['image_id']):012d}.jpg",),
            question=q["question"],
            answers=answers,
            category=ann.get("answer_type"),
            meta={"image_id": q["image_id"], "question_type": ann.get("question_type"),
                  "multiple_choice_answer": ann.get("multiple_choice_answer")},
        ))
    if unanswered:
        raise DataError(f"{src.annotations}: no annotation for {len(unanswered)} question(s) of {src.path}: "
                        f"{first(unanswered)}")
    return iter(out)


def load_textvqa(src: DataSource) -> Iterator[Sample]:
    doc = read_json(src.path, "TextVQA file")
    entries = _list_field(doc, "data", src.path, "TextVQA file")
    root = src.images_root("train_images")
    out, sets = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"question_id", "image_id", "question"} <= set(e):
            raise DataError(f"{src.path} data[{i}]: needs question_id, image_id and question")
        sets.add(str(e.get("set_name")))
        if src.split and e.get("set_name") != src.split:
            continue
        if not e.get("answers"):
            raise DataError(f"{src.path} data[{i}] (question {e['question_id']}): no answers "
                            "(TextVQA's test answers are not public)")
        out.append(Sample(
            id=str(e["question_id"]),
            images=(root / f"{e['image_id']}.jpg",),
            question=e["question"],
            answers=tuple(str(a) for a in e["answers"]),
            meta={"image_id": e["image_id"], "image_classes": e.get("image_classes")},
        ))
    if not out:
        raise DataError(f"{src.path}: no questions with set_name {src.split!r} (the file has: {', '.join(sorted(sets))})")
    return iter(out)
