"""``vlmzoo models`` and ``vlmzoo show``: the catalog as a comparison table, and one card."""

from __future__ import annotations

import csv
import io
import json

import click

from vlmzoo.cli.output import console, fail

CARD_COLUMNS = ("id", "kind", "architecture", "vision", "text", "objective", "loss", "params_b",
                "token_limit", "resolution", "training_data", "license", "license_short", "access", "tasks",
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


@click.command()
@click.option("--task", help="only models that do this task (caption, ask, classify, embed, match, retrieve, "
                             "ground, detect, point)")
@click.option("--type", "kind", help="VLM, LMM or multimodal")
@click.option("--arch", "architecture", help="dual encoder, vision-language bridge, unified transformer, cross-modal embedding")
@click.option("--license", help="substring of the license or its short name, e.g. apache, non-commercial")
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
        fail(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    try:
        max_b = catalog.parse_params(max_params) if max_params else None
    except ValueError as e:
        fail(str(e))
    cards = catalog.list_models(task=task, kind=kind, architecture=architecture, license=license,
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
        console().print(catalog_table(cards, wide))
        if not cards:
            console(stderr=True).print("no model matches these filters")


def catalog_table(cards, wide: bool = False):
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
                 "tokens": str(c.token_limit or "n/a"), "license": c.license_short, "tasks": ",".join(c.tasks),
                 "multi-img": "yes" if c.multi_image else "no", "any-res": "yes" if c.any_resolution else "no",
                 "vlmzoo": c.support}
        table.add_row(*[cells[col] for col in cols])
    return table


@click.command()
@click.argument("model_id")
@click.option("--json", "as_json", is_flag=True, help="print the card as JSON")
def show(model_id, as_json):
    """Print one model card."""
    from rich.table import Table
    from rich.text import Text

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
        table.add_row(key, Text.assemble(str(value), (f"\nsource: {source}" if source else "", "dim")))
    for ck in card.checkpoints:
        tasks = ",".join(ck.tasks) if ck.tasks else ",".join(card.tasks)
        price = (f" ${ck.price.input_per_1m:g} / ${ck.price.output_per_1m:g} per 1M input / output tokens "
                 f"(read {ck.price.read_on}, {ck.price.source})" if ck.price else "")
        params = f" {_fmt_params(ck.params_b)}" if ck.params_b else ""
        pinned = f"@{ck.revision}" if ck.revision else ""
        table.add_row("checkpoint", f"{ck.name}: {ck.hub_id or '(API)'}{pinned} [{tasks}]{params}{price}")
    for corr in card.corrections:
        table.add_row("correction", f"{corr.field}: seed said {corr.seed!r}, correct is {corr.corrected!r}. {corr.why}")
    console().print(table)
