"""Prompt templates for zero-shot classification, by name or given inline."""

from __future__ import annotations

from vlmzoo.errors import InputError

# The seven-template ensemble the CLIP authors found best on ImageNet
# (CLIP repository, notebooks/Prompt_Engineering_for_ImageNet.ipynb).
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "clip-imagenet-7": (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ),
}


def resolve_templates(templates, default: str) -> tuple[str, ...]:
    """None -> the family's default; a set name -> that set; a string or list -> as given.

    Each template holds one ``{}`` where the label goes.
    """
    if templates is None:
        templates = (default,)
    elif isinstance(templates, str):
        templates = TEMPLATE_SETS.get(templates, (templates,))
    templates = tuple(templates)
    if not templates:
        raise InputError("templates is empty")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise InputError(
                f"template {t!r} must hold exactly one '{{}}' for the label "
                f"(or name a set: {', '.join(TEMPLATE_SETS)})"
            )
    return templates
