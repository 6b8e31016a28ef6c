"""The task commands: ``caption``, ``ask``, ``classify``, ``embed``, ``match``, ``ground``, ``detect``.

Each loads the model, hands the images to it undecoded (it decodes ahead, in batches), prints a
table or JSON lines, and lists images it had to skip at the end.
"""

from __future__ import annotations

import click

from vlmzoo.cli.output import console, emit, fail, finish

PROGRESS_THRESHOLD = 8  # show a progress bar above this many images


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

    with console(stderr=True).status(f"loading {opts['model']}"):
        model = load(opts["model"], device=opts["device"], dtype=opts["dtype"],
                     allow_urls=opts["allow_urls"], max_pixels=opts["max_pixels"])
    if opts.get("batch_size"):
        if opts["batch_size"] < 1:
            fail(f"--batch-size must be at least 1, got {opts['batch_size']}")
        model.batch_size = opts["batch_size"]
    return model


def _take(sources, opts):
    from vlmzoo.images import load_images

    if not sources:
        fail("no images given")
    intake = load_images(list(sources), allow_urls=opts["allow_urls"], max_pixels=opts["max_pixels"], skip_bad=True)
    return intake


def _sources(sources) -> list:
    """Image sources with folders walked; nothing is decoded yet."""
    from vlmzoo.images import expand

    if not sources:
        fail("no images given")
    return expand(list(sources))


_MODALITY = click.option(
    "--modality", type=click.Choice(["auto", "image", "audio", "depth", "thermal", "imu"]), default="auto",
    help="what the inputs are (models embedding more than images: imagebind); auto: .wav/.flac/.ogg/.aiff files "
         "are audio, the rest images; depth, thermal and imu files must be named so")


def _typed(sources, modality: str) -> list | None:
    """Inputs of another modality than images as vlmzoo.modalities objects; None for images."""
    from pathlib import Path

    from vlmzoo.modalities import AUDIO_SUFFIXES, IMU, Audio, Depth, Thermal

    if not sources:
        fail("no inputs given")
    if modality == "auto":
        kinds = {"audio" if Path(str(s)).suffix.lower() in AUDIO_SUFFIXES else "image" for s in sources}
        if len(kinds) > 1:
            fail("the inputs mix audio files and images; give one modality per command")
        modality = kinds.pop()
    if modality == "image":
        return None
    kind = {"audio": Audio, "depth": Depth, "thermal": Thermal, "imu": IMU}[modality]
    return [kind(s) for s in sources]


def _run_batched(model, sources, fn, label: str) -> tuple[list, list]:
    """``fn`` over the sources through ``model.over_images`` (bad images set aside, the rest
    still run), with a progress bar when there are many."""
    if len(sources) <= PROGRESS_THRESHOLD:
        return model.over_images(sources, fn)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=len(sources))
        return model.over_images(sources, fn, on_progress=lambda n: bar.advance(task, n))


@click.command()
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
                                   "captioning")
    emit([r.to_dict() for r in results], opts, ("image", "text"))
    finish(errors)


@click.command()
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
        finish(intake.errors)  # a question about a missing image has no answer worth giving
    loaded = intake.images if intake else None
    if stream:
        pieces = model.ask(loaded, question, stream=True, **gen)
        for piece in pieces:
            click.echo(piece, nl=False)
        click.echo()
        answer = pieces.result
        if opts.get("out") or opts.get("jsonl"):
            emit([answer.to_dict()], {**opts, "jsonl": not opts.get("out")}, ())
        return
    answer = model.ask(loaded, question, **gen)
    emit([answer.to_dict()], opts, ("question", "text", "num_tokens", "ttft", "tokens_per_s"))


@click.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--labels", required=True, help="comma-separated class names, e.g. cat,dog")
@click.option("--template", "templates", multiple=True,
              help="prompt template with {} for the label (repeat to ensemble, or a set name: clip-imagenet-7)")
@click.option("--top-k", type=int, default=None, help="keep the k best labels per image")
@_MODALITY
def classify(images, labels, templates, top_k, modality, **opts):
    """Zero-shot classify images (or sounds, depth, thermal, IMU: --modality) against free-text labels."""
    label_list = [x.strip() for x in labels.split(",") if x.strip()]
    if not label_list:
        fail("--labels is empty; give comma-separated class names")
    model = _load(opts)
    model.require("classify")
    tmpl = (templates[0] if len(templates) == 1 else list(templates)) if templates else None
    typed = _typed(images, modality)
    if typed is not None:
        results, errors = model.classify(typed, label_list, templates=tmpl, top_k=top_k), []
    else:
        results, errors = _run_batched(model, _sources(images),
                                       lambda b: model.classify(b, label_list, templates=tmpl, top_k=top_k),
                                       "classifying")
    rows = [{"image": r.image, "label": r.label, "score": r.score, "kind": r.kind, "scores": r.as_dict()}
            for r in results]
    emit(rows, opts, ("image", "label", "score"))
    finish(errors)


@click.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--text", "texts", multiple=True, help="also embed this text (repeatable)")
@_MODALITY
def embed(images, texts, modality, **opts):
    """Embed images, sounds, depth, thermal or IMU inputs (--modality), and texts, into the model's shared space."""
    if not images and not texts:
        fail("give images and/or --text")
    model = _load(opts)
    model.require("embed")
    rows, errors = [], []
    typed = _typed(images, modality) if images else None
    if typed is not None:
        rows.extend(model.embed(typed).to_dicts())
    elif images:
        embeddings, errors = _run_batched(model, _sources(images), lambda b: [model.embed_images(b)],
                                          "embedding")
        for emb in embeddings:
            rows.extend(emb.to_dicts())
    if texts:
        rows.extend(model.embed_texts(list(texts)).to_dicts())
    if not (opts.get("jsonl") or opts.get("out")):
        for r in rows:
            v = r.pop("embedding")
            r["dim"], r["head"] = len(v), " ".join(f"{x:+.3f}" for x in v[:4]) + " ..."
        emit(rows, opts, ("input", "modality", "dim", "head"))
    else:
        emit(rows, opts, ())
    finish(errors)


@click.command()
@click.argument("images", nargs=-1)
@_model_options
@click.option("--texts", required=True, help="comma-separated texts to score against each image")
@_MODALITY
def match(images, texts, modality, **opts):
    """Score how well each text matches each image (or sound, depth, thermal, IMU input: --modality)."""
    text_list = [x.strip() for x in texts.split(",") if x.strip()]
    if not text_list:
        fail("--texts is empty")
    model = _load(opts)
    model.require("match")
    rows = []
    typed = _typed(images, modality)
    if typed is not None:
        matrices, errors = [model.match(typed, text_list)], []
    else:
        matrices, errors = _run_batched(model, _sources(images), lambda b: [model.match(b, text_list)], "matching")
    for scores in matrices:
        rows.extend(scores.to_dicts())
    emit(rows, opts, ("image", "text", "score", "kind"))
    finish(errors)


def _run_boxes(result, opts, draw_path, image):
    """Print boxes and points (table or JSON) and optionally draw them on a copy of the image."""
    rows = [{"image": result.image, "label": b.label, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1}
            for b in result.boxes]
    rows += [{"image": result.image, "label": p.label, "x": p.x, "y": p.y} for p in result.points]
    if opts.get("jsonl") or opts.get("out"):
        emit([result.to_dict()], opts, ())
    else:
        emit(rows, opts, ("label", "x0", "y0", "x1", "y1") if result.boxes else ("label", "x", "y"))
        if not rows:
            console(stderr=True).print(f"nothing found; the model said: {result.raw!r}", highlight=False)
    if draw_path:
        from vlmzoo.draw import save_drawn

        save_drawn(image, result.boxes, draw_path, points=result.points)
        console(stderr=True).print(f"drawn on {draw_path}", highlight=False)


_DRAW = click.option("--draw", "draw_path", type=click.Path(dir_okay=False),
                     help="save a copy of the image with the boxes or points drawn")


@click.command()
@click.argument("image")
@click.argument("phrase")
@_model_options
@click.option("--max-new-tokens", type=int, default=None)
@_DRAW
def ground(image, phrase, max_new_tokens, draw_path, **opts):
    """Find boxes for a phrase in an image (pixel xyxy in the original image)."""
    gen = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    _locate("ground", image, opts, draw_path, phrase, **gen)


@click.command()
@click.argument("image")
@click.argument("phrase")
@_model_options
@_DRAW
def point(image, phrase, draw_path, **opts):
    """Point at each thing a phrase names in an image (pixel x, y in the original image)."""
    _locate("point", image, opts, draw_path, phrase)


@click.command()
@click.argument("image")
@_model_options
@click.option("--max-new-tokens", type=int, default=None)
@_DRAW
def detect(image, max_new_tokens, draw_path, **opts):
    """Find and label every object a model sees in an image."""
    gen = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    _locate("detect", image, opts, draw_path, **gen)


def _locate(task: str, image, opts, draw_path, *args, **gen):
    """ground, point or detect on one image: the model's boxes or points, printed and drawn."""
    model = _load(opts)
    model.require(task)
    intake = _take([image], opts)
    finish(intake.errors)
    _run_boxes(getattr(model, task)(intake.images[0], *args, **gen), opts, draw_path, intake.images[0].image)


@click.command()
@click.argument("prompt")
@click.option("--model", "-m", required=True, help="catalog id, hub id or checkpoint folder of a model that makes images")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="where to write the image (.png, .jpg or .webp); written whole or not at all")
@click.option("--image", "images", multiple=True, help="an image the prompt refers to (repeatable; models that take them)")
@click.option("--seed", type=int, default=None, help="makes the image repeatable")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None)
@click.option("--jsonl", is_flag=True, help="print the result as one JSON object")
def imagine(prompt, model, out, images, seed, device, dtype, jsonl):
    """Make a picture from a text prompt (models that generate images: SEED-LLaMA)."""
    from pathlib import Path

    from vlmzoo.tasks import IMAGE_FORMATS

    target = Path(out)
    if target.suffix.lower() not in IMAGE_FORMATS:  # before minutes of loading and generating
        fail(f"--out {out}: give a .png, .jpg or .webp file name")
    if not prompt.strip():
        fail("the prompt is empty")
    opts = {"model": model, "device": device, "dtype": dtype, "allow_urls": False, "max_pixels": None}
    loaded = _load(opts)
    loaded.require("imagine")
    gen = {"seed": seed} if seed is not None else {}
    with console(stderr=True).status("imagining"):
        result = loaded.imagine(prompt, images=list(images) or None, **gen)
    result.save(target)
    emit([{"out": str(target), **result.to_dict()}], {"jsonl": jsonl, "out": None}, ("out", "width", "height", "seconds"))
