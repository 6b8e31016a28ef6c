"""From a sample to a prompt, and from a model's output to the answer that gets scored."""

from __future__ import annotations

import re

from vlmzoo.evaluation.metrics.text import choice_letters
from vlmzoo.evaluation.sample import Sample

EXTRACT_MODES = ("none", "first_line", "short_answer", "choice")
_ANSWER_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:\-]?\s*", re.IGNORECASE)


def render_options(options: tuple[str, ...] | list[str]) -> str:
    return "\n".join(f"{letter}. {option}" for letter, option in zip(choice_letters(len(options)), options))


def render_prompt(template: str | None, sample: Sample) -> str:
    """The benchmark's template filled in: {question}, and {options} as "A. ..." lines."""
    question = sample.question or ""
    if not template:
        return question if not sample.options else f"{question}\n{render_options(sample.options)}"
    return template.format(question=question, options=render_options(sample.options) if sample.options else "")


def extract_answer(text: str, mode: str) -> str:
    """The part of a model's output a metric should see.

    none: as is. first_line: the first non-empty line. short_answer: the first line without an
    "Answer:" lead-in or a final period (VQA-style one-word answers). choice: as is; the
    multiple-choice metric reads the letter itself.
    """
    if mode not in EXTRACT_MODES:
        raise ValueError(f"unknown answer extraction {mode!r}; known: {', '.join(EXTRACT_MODES)}")
    if mode in ("none", "choice"):
        return text.strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if mode == "short_answer":
        line = _ANSWER_PREFIX.sub("", line).strip()
        if line.endswith(".") and not re.search(r"\d\.$", line):
            line = line[:-1].rstrip()
    return line
