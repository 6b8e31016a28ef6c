"""The ``vlmzoo`` command line. Thin: parses, calls the Python API, prints.

torch and transformers are imported only by commands that load a model, so ``vlmzoo --help``
and ``vlmzoo models`` start fast.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from vlmzoo.errors import VlmzooError

PROGRESS_THRESHOLD = 8  # show a progress bar above this many images


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)  # never fold a file path or an error in two


def _fail(message: str, code: int = 2):
    _console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


class _Group(click.Group):
    """Turns vlmzoo's own errors into one clean line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VlmzooError as e:
            _fail(str(e))


@click.group(cls=_Group)
@click.version_option(package_name="vlmzoo")
def main():
    """vlmzoo: the vision-language models people compare, behind one interface."""


# -- catalog ---------------------------------------------------------------------------------

CARD_COLUMNS = ("id", "kind", "architecture", "vision", "text", "objective", "loss", "params_b",
                "token_limit", "resolution", "training_data", "license", "access", "tasks",
                "multi_image", "any_resolution", "grounding_format", "languages", "family", "support")


def _card_row(card) -> dict:
    d = card.model_dump(include=set(CARD_COLUMNS))
    return {k: d[k] for k in CARD_COLUMNS}


def _fmt_params(b) -> str:
    if b is None:
        return "n/a"
    return f"{b * 1000:.0f}M" if b < 1 else f"{b:.1f}B"


def _tri(flag: str, help: str):
    return click.option(f"--{flag}/--no-{flag}", default=None, help=help)


@main.command()
@click.option("--task", help="only models that do this task (caption, ask, classify, embed, match, retrieve, ground)")
@click.option("--type", "kind", help="VLM, LMM or multimodal")
@click.option("--arch", "architecture", help="dual encoder, vision-language bridge, unified transformer, cross-modal embedding")
@click.option("--license", help="substring of the license, e.g. apache")
@click.option("--max-params", help="largest size, e.g. 3B or 500M")
@_tri("multi-image", "takes several images in one request")
@_tri("any-resolution", "takes images at native resolution")
@click.option("--language", help="ISO 639-1 code, e.g. en, zh")
@click.option("--support", type=click.Choice(["supported", "planned", "unavailable"]), help="support in vlmzoo")
@click.option("--wide", is_flag=True, help="add vision, text, objective, loss and data columns")
@click.option("--json", "as_json", is_flag=True, help="print JSON (every field)")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV (every field)")
def models(task, kind, architecture, license, max_params, multi_image, any_resolution, language,
           support, wide, as_json, as_csv):
    """List the model catalog as a comparison table, filtered."""
    from vlmzoo import catalog
    from vlmzoo.tasks import TASKS

    if task and task not in TASKS:
        _fail(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    try:
        max_b = catalog.parse_params(max_params) if max_params else None
    except ValueError as e:
        _fail(str(e))
    cards = catalog.filter_cards(task=task, kind=kind, architecture=architecture, license=license,
                                 max_params_b=max_b, multi_image=multi_image,
                                 any_resolution=any_resolution, language=language, support=support)
    rows = [_card_row(c) for c in cards]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CARD_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ";".join(v) if isinstance(v, (list, tuple)) else v for k, v in r.items()})
        click.echo(buf.getvalue(), nl=False)
    else:
        _console().print(_catalog_table(cards, wide))
        if not cards:
            _console(stderr=True).print("no model matches these filters")


def _catalog_table(cards, wide: bool = False):
    from rich.table import Table

    table = Table(title=f"vlmzoo catalog ({len(cards)} models)", show_lines=wide)
    cols = ["id", "type", "architecture", "params", "tokens", "license", "tasks", "multi-img", "any-res", "vlmzoo"]
    if wide:
        cols[3:3] = ["vision", "text", "objective", "loss", "resolution", "training data"]
    for col in cols:
        table.add_column(col, overflow="fold", no_wrap=col == "id")
    for c in cards:
        cells = {"id": c.id, "type": c.kind, "architecture": c.architecture, "vision": c.vision,
                 "text": c.text, "objective": c.objective, "loss": c.loss, "resolution": c.resolution,
                 "training data": c.training_data, "params": _fmt_params(c.params_b),
                 "tokens": str(c.token_limit or "n/a"), "license": c.license, "tasks": ",".join(c.tasks),
                 "multi-img": "yes" if c.multi_image else "no", "any-res": "yes" if c.any_resolution else "no",
                 "vlmzoo": c.support}
        table.add_row(*[cells[col] for col in cols])
    return table


@main.command()
@click.argument("model_id")
@click.option("--json", "as_json", is_flag=True, help="print the card as JSON")
def show(model_id, as_json):
    """Print one model card."""
    from rich.markup import escape
    from rich.table import Table

    from vlmzoo import catalog

    entry = catalog.get(model_id)
    card = entry.card
    if as_json:
        click.echo(json.dumps(card.model_dump(mode="json"), indent=2))
        return
    table = Table(title=f"{card.name} ({card.id})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in card.model_dump().items():
        if key in ("checkpoints", "sources", "corrections"):
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(value)
        elif key == "params_b":
            value = _fmt_params(value)
        source = card.sources.get(key, "")
        table.add_row(key, f"{value}" + (f"\n[dim]source: {source}[/]" if source else ""))
    for ck in card.checkpoints:
        tasks = ",".join(ck.tasks) if ck.tasks else ",".join(card.tasks)
        price = (f" ${ck.price.input_per_1m:g} / ${ck.price.output_per_1m:g} per 1M input / output tokens "
                 f"(read {ck.price.read_on}, {ck.price.source})" if ck.price else "")
        params = f" {_fmt_params(ck.params_b)}" if ck.params_b else ""
        # escaped: rich would read "[caption,ask]" as markup and drop it
        table.add_row("checkpoint", escape(f"{ck.name}: {ck.hub_id or '(API)'} [{tasks}]{params}{price}"))
    for corr in card.corrections:
        table.add_row("correction", f"{corr.field}: seed said {corr.seed!r}, correct is {corr.corrected!r}. {corr.why}")
    _console().print(table)


# -- running models --------------------------------------------------------------------------

_MODEL_OPTIONS = (
    click.option("--model", "-m", required=True, help="catalog id, hub id or checkpoint folder"),
    click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)"),
    click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
                 help="default on CPU: float32 (exact), bfloat16 for dual encoders where the CPU has native bf16"),
    click.option("--batch-size", type=int, default=None, help="images per forward pass"),
    click.option("--jsonl", is_flag=True, help="one JSON object per line instead of a table"),
    click.option("--out", "-o", type=click.Path(dir_okay=False), help="write results to this file"),
    click.option("--allow-urls", is_flag=True, help="let http(s) image URLs be fetched"),
    click.option("--max-pixels", type=int, default=None, help="refuse images larger than this"),
)


def _model_options(f):
    for option in reversed(_MODEL_OPTIONS):  # click lists options in decoration order, innermost last
        f = option(f)
    return f


_GENERATION_OPTIONS = (
    click.option("--max-new-tokens", type=int, default=None, help="default: the family's (BLIP 30, chat models 64)"),
    click.option("--temperature", type=float, default=None, help="> 0 samples; default greedy"),
    click.option("--top-p", type=float, default=None),
    click.option("--seed", type=int, default=None, help="makes sampling repeatable"),
    click.option("--stop", multiple=True, help="stop at this string (repeatable)"),
)


def _generation_options(f):
    for option in reversed(_GENERATION_OPTIONS):
        f = option(f)
    return f


def _gen_kwargs(max_new_tokens, temperature, top_p, seed, stop) -> dict:
    given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
             "seed": seed, "stop": list(stop) or None}
    return {k: v for k, v in given.items() if v is not None}


def _load(opts):
    from vlmzoo.loading import load

    with _console(stderr=True).status(f"loading {opts['model']}"):
        model = load(opts["model"], device=opts["device"], dtype=opts["dtype"],
                     allow_urls=opts["allow_urls"], max_pixels=opts["max_pixels"])
    if opts.get("batch_size"):
        if opts["batch_size"] < 1:
            _fail(f"--batch-size must be at least 1, got {opts['batch_size']}")
        model.batch_size = opts["batch_size"]
    return model


def _take(sources, opts):
    from vlmzoo.images import load_images

    if not sources:
        _fail("no images given")
    intake = load_images(list(sources), allow_urls=opts["allow_urls"], max_pixels=opts["max_pixels"], skip_bad=True)
    return intake


def _sources(sources) -> list:
    """Image sources with folders walked; nothing is decoded yet."""
    from vlmzoo.images import expand

    if not sources:
        _fail("no images given")
    return expand(list(sources))


def _run_batched(model, sources, fn, label: str, opts) -> tuple[list, list]:
    """``fn`` over chunks of image sources, with a progress bar when there are many.

    Sources go to the model undecoded, so it can decode ahead and at reduced scale. If a chunk
    holds a bad image, that chunk is taken in here instead: bad images are set aside (returned
    as errors, listed at the end) and the good ones still run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vlmzoo.engine.batching import chunks
    from vlmzoo.errors import ImageError
    from vlmzoo.images import load_images

    results: list = []
    errors: list = []
    step = max(1, model.batch_size) * 4  # several batches per call: the model prefetches within it

    def run(chunk):
        try:
            results.extend(fn(list(chunk)))
        except ImageError:
            intake = load_images(list(chunk), allow_urls=opts["allow_urls"], max_pixels=opts["max_pixels"],
                                 skip_bad=True)
            errors.extend(intake.errors)
            if intake.images:
                results.extend(fn(intake.images))

    if len(sources) <= PROGRESS_THRESHOLD:
        for chunk in chunks(sources, step):
            run(chunk)
        return results, errors
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=len(sources))
        for chunk in chunks(sources, step):
            run(chunk)
            bar.advance(task, len(chunk))
    return results, errors


def _emit(rows: list[dict], opts, table_columns: tuple[str, ...]):
    """Table to stdout, or JSON lines; with --out, written whole to a temp file then renamed."""
    if opts.get("out") or opts.get("jsonl"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if opts.get("out"):
            _write_atomic(Path(opts["out"]), text)
        else:
            click.echo(text, nl=False)
        return
    from rich.table import Table

    table = Table()
    for c in table_columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in table_columns])
    _console().print(table)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def _write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finish(errors) -> None:
    """List images that were refused, and exit non-zero if there were any."""
    if not errors:
        return
    con = _console(stderr=True)
    con.print(f"[bold red]{len(errors)} image(s) skipped:[/]")
    for e in errors:
        con.print(f"  {e}", highlight=False)
    sys.exit(1)


@main.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--prompt", default=None, help="text for the caption to continue (conditional captioning)")
@_generation_options
def caption(images, prompt, max_new_tokens, temperature, top_p, seed, stop, **opts):
    """Caption images or folders of images."""
    model = _load(opts)
    model.require("caption")
    gen = _gen_kwargs(max_new_tokens, temperature, top_p, seed, stop)
    results, errors = _run_batched(model, _sources(images), lambda b: model.caption(b, prompt=prompt, **gen),
                                   "captioning", opts)
    _emit([r.to_dict() for r in results], opts, ("image", "text"))
    _finish(errors)


@main.command()
@click.argument("images", nargs=-1)
@click.argument("question")
@_model_options
@_generation_options
@click.option("--stream", is_flag=True, help="print the answer as it is generated")
def ask(images, question, max_new_tokens, temperature, top_p, seed, stop, stream, **opts):
    """Ask a question about one or more images (all in one prompt)."""
    model = _load(opts)
    model.require("ask")
    gen = _gen_kwargs(max_new_tokens, temperature, top_p, seed, stop)
    intake = _take(images, opts) if images else None
    if intake is not None:
        _finish(intake.errors)  # a question about a missing image has no answer worth giving
    loaded = intake.images if intake else None
    if stream:
        pieces = model.ask(loaded, question, stream=True, **gen)
        for piece in pieces:
            click.echo(piece, nl=False)
        click.echo()
        answer = pieces.result
        if opts.get("out") or opts.get("jsonl"):
            _emit([answer.to_dict()], {**opts, "jsonl": not opts.get("out")}, ())
        return
    answer = model.ask(loaded, question, **gen)
    _emit([answer.to_dict()], opts, ("question", "text", "num_tokens", "ttft", "tokens_per_s"))


@main.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--labels", required=True, help="comma-separated class names, e.g. cat,dog")
@click.option("--template", "templates", multiple=True,
              help="prompt template with {} for the label (repeat to ensemble, or a set name: clip-imagenet-7)")
@click.option("--top-k", type=int, default=None, help="keep the k best labels per image")
def classify(images, labels, templates, top_k, **opts):
    """Zero-shot classify images against free-text labels."""
    label_list = [x.strip() for x in labels.split(",") if x.strip()]
    if not label_list:
        _fail("--labels is empty; give comma-separated class names")
    model = _load(opts)
    model.require("classify")
    tmpl = (templates[0] if len(templates) == 1 else list(templates)) if templates else None
    results, errors = _run_batched(model, _sources(images),
                                   lambda b: model.classify(b, label_list, templates=tmpl, top_k=top_k),
                                   "classifying", opts)
    rows = [{"image": r.image, "label": r.label, "score": r.score, "kind": r.kind, "scores": r.as_dict()}
            for r in results]
    _emit(rows, opts, ("image", "label", "score"))
    _finish(errors)


@main.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--text", "texts", multiple=True, help="also embed this text (repeatable)")
def embed(images, texts, **opts):
    """Embed images (and texts) into the model's shared space."""
    if not images and not texts:
        _fail("give images and/or --text")
    model = _load(opts)
    model.require("embed")
    rows, errors = [], []
    if images:
        embeddings, errors = _run_batched(model, _sources(images), lambda b: [model.embed_images(b)],
                                          "embedding", opts)
        for emb in embeddings:
            rows.extend(emb.to_dicts())
    if texts:
        rows.extend(model.embed_texts(list(texts)).to_dicts())
    if not (opts.get("jsonl") or opts.get("out")):
        for r in rows:
            v = r.pop("embedding")
            r["dim"], r["head"] = len(v), " ".join(f"{x:+.3f}" for x in v[:4]) + " ..."
        _emit(rows, opts, ("input", "modality", "dim", "head"))
    else:
        _emit(rows, opts, ())
    _finish(errors)


@main.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--texts", required=True, help="comma-separated texts to score against each image")
def match(images, texts, **opts):
    """Score how well each text matches each image."""
    text_list = [x.strip() for x in texts.split(",") if x.strip()]
    if not text_list:
        _fail("--texts is empty")
    model = _load(opts)
    model.require("match")
    rows = []
    matrices, errors = _run_batched(model, _sources(images), lambda b: [model.match(b, text_list)], "matching", opts)
    for scores in matrices:
        rows.extend(scores.to_dicts())
    _emit(rows, opts, ("image", "text", "score", "kind"))
    _finish(errors)


def _run_boxes(result, opts, draw_path, image):
    """Print boxes (table or JSON) and optionally draw them on a copy of the image."""
    rows = [{"image": result.image, "label": b.label, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1}
            for b in result.boxes]
    if opts.get("jsonl") or opts.get("out"):
        _emit([result.to_dict()], opts, ())
    else:
        _emit(rows, opts, ("label", "x0", "y0", "x1", "y1"))
        if not rows:
            _console(stderr=True).print(f"no box found; the model said: {result.raw!r}", highlight=False)
    if draw_path:
        from vlmzoo.draw import save_drawn

        save_drawn(image, result.boxes, draw_path)
        _console(stderr=True).print(f"boxes drawn on {draw_path}", highlight=False)


_DRAW = click.option("--draw", "draw_path", type=click.Path(dir_okay=False),
                     help="save a copy of the image with the boxes drawn")


@main.command()
@click.argument("image")
@click.argument("phrase")
@_model_options
@click.option("--max-new-tokens", type=int, default=None)
@_DRAW
def ground(image, phrase, max_new_tokens, draw_path, **opts):
    """Find boxes for a phrase in an image (pixel xyxy in the original image)."""
    model = _load(opts)
    model.require("ground")
    intake = _take([image], opts)
    _finish(intake.errors)
    gen = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    _run_boxes(model.ground(intake.images[0], phrase, **gen), opts, draw_path, intake.images[0].image)


@main.command()
@click.argument("image")
@_model_options
@click.option("--max-new-tokens", type=int, default=None)
@_DRAW
def detect(image, max_new_tokens, draw_path, **opts):
    """Find and label every object a model sees in an image."""
    model = _load(opts)
    model.require("detect")
    intake = _take([image], opts)
    _finish(intake.errors)
    gen = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    _run_boxes(model.detect(intake.images[0], **gen), opts, draw_path, intake.images[0].image)


# -- the main job ----------------------------------------------------------------------------

DEMO_MODELS = (("clip-vit-b-32", "classify"), ("blip-base", "caption"))


@main.command()
@click.option("--models", "model_names", default=",".join(m for m, _ in DEMO_MODELS), show_default=True,
              help="comma-separated models to try (dual encoders classify, captioners caption)")
def demo(model_names):
    """Print the catalog, then run the default models on sample photos.

    Models whose weights cannot be had (no hub, no local copy) are reported in one line each.
    """
    from vlmzoo import catalog
    from vlmzoo.errors import HubUnreachableError, UnknownModelError
    from vlmzoo.samples import SAMPLES, sample_photos

    con = _console()
    con.print(_catalog_table(list(catalog.cards())))
    photos = sample_photos()
    con.print(f"\nSample photos: {', '.join(p.name for p in photos)} (from scikit-image)")
    labels = list(SAMPLES.values()) + ["a dog", "a car"]
    for name in [m.strip() for m in model_names.split(",") if m.strip()]:
        try:
            from vlmzoo.loading import load

            model = load(name)
        except HubUnreachableError:
            con.print(f"[yellow]{name}: skipped[/], weights not available here (hub unreachable, no local "
                      f"copy in the HF cache or $VLMZOO_MODELS_DIR)", highlight=False)
            continue
        except UnknownModelError as e:
            con.print(f"[yellow]{name}: skipped[/], {e}", highlight=False)
            continue
        con.rule(f"{name}")
        if "classify" in model.tasks:
            for r in model.classify([str(p) for p in photos], labels):
                con.print(f"{Path(r.image).name:16} {r.label:18} {r.score:.3f} ({r.kind})")
        elif "caption" in model.tasks:
            for r in model.caption([str(p) for p in photos]):
                con.print(f"{Path(r.image).name:16} {r.text}")
        else:
            con.print(f"{name} does neither classify nor caption; its tasks: {', '.join(sorted(model.tasks))}")


# the evaluation and serving commands live in their own modules and register on ``main``
from vlmzoo import cli_eval  # noqa: E402,F401
from vlmzoo import cli_serve  # noqa: E402,F401
