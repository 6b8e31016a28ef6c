"""``vlmzoo demo``: the main job. Prints the catalog, then runs the default models on sample photos."""

from __future__ import annotations

from pathlib import Path

import click

from vlmzoo.cli.catalog import catalog_table
from vlmzoo.cli.output import console, styled

DEMO_MODELS = (("clip-vit-b-32", "classify"), ("blip-base", "caption"))


@click.command()
@click.option("--models", "model_names", default=",".join(m for m, _ in DEMO_MODELS), show_default=True,
              help="comma-separated models to try (dual encoders classify, captioners caption)")
def demo(model_names):
    """Print the catalog, then run the default models on sample photos.

    Models whose weights cannot be had (no hub, no local copy) are reported in one line each.
    """
    from vlmzoo import catalog
    from vlmzoo.errors import HubUnreachableError, UnknownModelError
    from vlmzoo.samples import SAMPLES, sample_photos

    con = console()
    con.print(catalog_table(list(catalog.cards())))
    photos = sample_photos()
    con.print(f"\nSample photos: {', '.join(p.name for p in photos)} (from scikit-image)")
    labels = list(SAMPLES.values()) + ["a dog", "a car"]
    for name in [m.strip() for m in model_names.split(",") if m.strip()]:
        try:
            from vlmzoo.loading import load

            model = load(name)
        except HubUnreachableError:
            con.print(styled(f"{name}: skipped", "yellow", ", weights not available here (hub unreachable, no "
                                                           "local copy in the HF cache or $VLMZOO_MODELS_DIR)"),
                      highlight=False)
            continue
        except UnknownModelError as e:
            con.print(styled(f"{name}: skipped", "yellow", f", {e}"), highlight=False)
            continue
        if con.is_terminal:
            con.rule(name)
        else:  # a rule would span the whole (unbounded) width of a file
            con.print(f"\n--- {name} ---", highlight=False)
        if "classify" in model.tasks:
            for r in model.classify([str(p) for p in photos], labels):
                con.print(f"{Path(r.image).name:16} {r.label:18} {r.score:.3f} ({r.kind})")
        elif "caption" in model.tasks:
            for r in model.caption([str(p) for p in photos]):
                con.print(f"{Path(r.image).name:16} {r.text}")
        else:
            con.print(f"{name} does neither classify nor caption; its tasks: {', '.join(sorted(model.tasks))}")
