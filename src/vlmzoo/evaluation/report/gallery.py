"""The report's gallery: samples where the models disagree, with a small inline thumbnail.

Thumbnails are JPEG data URIs so the page carries its images with it; a sample whose image
file is gone (moved data set, other machine) gets a placeholder that says so instead.
"""

from __future__ import annotations

import base64
import io
import json
from functools import lru_cache
from html import escape
from pathlib import Path

from vlmzoo.evaluation.report.data import BenchmarkView

THUMBNAIL_PX = 160
GALLERY_CAP = 24
RAW_SHOWN = 300  # characters of a raw model output shown beside the extracted answer


@lru_cache(maxsize=256)
def thumbnail_uri(path: str) -> tuple[str | None, str]:
    """(data URI, "") for a readable image, else (None, why not)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        return None, "image file not found"
    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at reduced size, much faster
            im = _flatten(im)
            im.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=82)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        return None, f"image could not be read ({type(e).__name__})"
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), ""


def _flatten(im):
    """RGB on white: JPEG has no alpha, and black behind transparent pixels hides the content."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        back = Image.new("RGB", rgba.size, "white")
        back.paste(rgba, mask=rgba.getchannel("A"))
        return back
    return im.convert("RGB")


def format_prediction(prediction) -> str:
    """A prediction as text: answers as they are, ranked labels best first, boxes as numbers."""
    if prediction is None:
        return "(no answer)"
    if isinstance(prediction, str):
        return prediction
    if isinstance(prediction, list) and prediction and all(isinstance(x, str) for x in prediction):
        return ", ".join(prediction[:3]) + (" …" if len(prediction) > 3 else "")
    if isinstance(prediction, list) and all(isinstance(x, (int, float)) for x in prediction):
        return "box " + ", ".join(f"{x:.0f}" for x in prediction)
    return json.dumps(prediction)


def references(sample: dict) -> str:
    if sample.get("answers"):  # VQA keeps ten human answers, mostly repeats: count them instead
        counts: dict[str, int] = {}
        for a in sample["answers"]:
            counts[str(a)] = counts.get(str(a), 0) + 1
        return " | ".join(a if n == 1 else f"{a} ×{n}" for a, n in counts.items())
    if sample.get("label"):
        return str(sample["label"])
    if sample.get("box"):
        return "box " + ", ".join(f"{x:.0f}" for x in sample["box"])
    return "(none stored)"


def gallery_html(view: BenchmarkView, cap: int = GALLERY_CAP) -> str:
    total = len(view.disagreements)
    if len(view.board.entries) < 2:
        return '<p class="note">One model only: nothing to disagree about.</p>'
    if not total:
        return '<p class="note">The models agree on every sample.</p>'
    shown = view.disagreements[:cap]
    head = (f'<p class="note">{total} sample{"s" if total != 1 else ""} with disagreements in all; '
            f'showing {len(shown)}, widest score spread first.</p>')
    return head + '<div class="gallery">' + "".join(_item(view, sid) for sid in shown) + "</div>"


def _item(view: BenchmarkView, sample_id: str) -> str:
    stored = next(view.predictions[e.run.run_id][sample_id] for e in view.board.entries
                  if sample_id in view.predictions[e.run.run_id])
    sample = stored.sample
    # picture and question side by side, the answers below across the card's full width
    parts = [f'<figure class="sample" data-sample="{escape(sample_id)}"><div class="pic">',
             _picture(sample.get("images") or []), f'</div><div class="head"><div class="sid">{escape(sample_id)}']
    if sample.get("category"):
        parts.append(f' · {escape(str(sample["category"]))}')
    parts.append("</div>")
    if sample.get("question"):
        parts.append(f'<div class="question">{escape(str(sample["question"]))}</div>')
    parts.append('</div><table class="answers">')
    best = _best_score(view, sample_id)
    for entry in view.board.entries:
        parts.append(_answer_row(view, entry.run.run_id, entry.run.model, sample_id, best))
    parts.append(f'</table><div class="refs"><span>reference:</span> {escape(references(sample))}</div></figure>')
    return "".join(parts)


def _picture(images: list[str]) -> str:
    if not images:
        return '<div class="thumb missing">no image stored for this sample</div>'
    uri, why = thumbnail_uri(str(images[0]))
    more = f'<div class="more">+{len(images) - 1} more image(s)</div>' if len(images) > 1 else ""
    if uri is None:
        return (f'<div class="thumb missing" title="{escape(str(images[0]))}">{escape(why)}:<br>'
                f'<code>{escape(Path(images[0]).name)}</code></div>' + more)
    return f'<img class="thumb" src="{uri}" alt="{escape(Path(images[0]).name)}">' + more


def _primary_score(view: BenchmarkView, run_id: str, sample_id: str) -> float | None:
    return view.sample_scores[run_id].get(view.primary, {}).get(sample_id) if view.primary else None


def _best_score(view: BenchmarkView, sample_id: str) -> float | None:
    """The top score on this sample, when the models' scores differ (so "best" means something)."""
    scores = [s for e in view.board.entries if (s := _primary_score(view, e.run.run_id, sample_id)) is not None]
    return max(scores) if scores and max(scores) > min(scores) else None


def _answer_row(view: BenchmarkView, run_id: str, model: str, sample_id: str, best: float | None) -> str:
    stored = view.predictions[run_id].get(sample_id)
    if stored is None:
        return f'<tr>{_model_cell(model)}<td class="na">not in this run</td><td></td></tr>'
    answer = format_prediction(stored.prediction)
    raw = ""
    if stored.raw and stored.raw.strip() != answer.strip():
        shown = stored.raw if len(stored.raw) <= RAW_SHOWN else stored.raw[:RAW_SHOWN] + "…"
        raw = f'<div class="raw">raw: {escape(shown)}</div>'
    score = _primary_score(view, run_id, sample_id)
    badge = ""
    if score is not None:
        marked = " best" if best is not None and score >= best else ""
        badge = f'<span class="score{marked}" title="{escape(view.primary)}">{score:.2f}</span>'

    return f"<tr>{_model_cell(model)}<td>{escape(answer)}{raw}</td><td>{badge}</td></tr>"


def _model_cell(model: str) -> str:
    # one line, cut with an ellipsis when long (the full name in the tooltip): answers get the room
    return f'<th><span class="model" title="{escape(model)}">{escape(model)}</span></th>'
