"""Answer metrics for short text answers: exact match, ANLS, multiple-choice accuracy."""

from __future__ import annotations

import re
import string

from vlmzoo.evaluation.metrics.rows import per_sample


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def exact_match(prediction: str, answers: list[str]) -> float:
    """1.0 if the prediction equals any reference after lower-casing, whitespace squashing and
    dropping a trailing period; else 0.0."""
    pred = _squash(prediction).rstrip(".")
    return float(any(pred == _squash(a).rstrip(".") for a in answers))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """ANLS for one question, as the DocVQA and InfographicVQA organisers' evaluation script (the
    Robust Reading Competition's) computes it (Biten et al., ST-VQA 2019).

    For each reference answer: the edit distance between the answer and the prediction, each
    lower-cased, stripped and with whitespace runs squashed to one space, divided by
    ``max(len(answer.upper()), len(prediction.upper()))`` of the raw, unsquashed strings (0 when
    that length is 0). The score is 1 minus the smallest of these, set to 0 when it is below
    ``threshold``; a score of exactly ``threshold`` stands.
    """
    if not answers:
        raise ValueError("ANLS needs at least one reference answer")
    pred = _squash(prediction)
    distances = []
    for answer in answers:
        length = max(len(answer.upper()), len(prediction.upper()))
        distances.append(levenshtein(_squash(answer), pred) / length if length else 0.0)
    score = 1.0 - min(distances)
    return 0.0 if score < threshold else score


_LETTER_AFTER_CUE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?([A-Z])[\)\].:,]?(?=\s|$)", re.IGNORECASE)
_LETTER_AT_START = re.compile(r"^[\(\[]?([A-Za-z])(?:[\)\].:,]|\s|$)")
_LONE_CAPITAL = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])")


def choice_letters(n: int) -> list[str]:
    if not 1 <= n <= 26:
        raise ValueError(f"multiple choice takes 1 to 26 options, got {n}")
    return list(string.ascii_uppercase[:n])


def extract_choice(output: str, options: list[str]) -> str | None:
    """Which option letter (A, B, ...) a free-text answer picks, or None when it is unclear.

    In order: a letter on its own or leading the answer ("B", "(B) dog", "b."); a letter after a
    cue ("the answer is C", "Option: D"); the one option whose text the answer contains; the one
    capital letter standing alone in the answer. Several candidates at one step: unclear.
    """
    letters = choice_letters(len(options))
    text = output.strip()
    if not text:
        return None
    m = _LETTER_AT_START.match(text)
    if m and m.group(1).upper() in letters and (len(text) <= 3 or not text[1:2].isalpha()):
        return m.group(1).upper()
    cued = {c.upper() for c in _LETTER_AFTER_CUE.findall(text) if c.upper() in letters}
    if len(cued) == 1:
        return cued.pop()
    lowered = _squash(text)
    named = [letter for letter, option in zip(letters, options) if _squash(option) and
             re.search(r"(?<!\w)" + re.escape(_squash(option)) + r"(?!\w)", lowered)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:  # one option's text inside another's ("red" and "dark red"): keep the longest
        longest = max(named, key=lambda letter: len(options[letters.index(letter)]))
        others = [options[letters.index(x)].lower() for x in named if x != longest]
        if all(o in options[letters.index(longest)].lower() for o in others):
            return longest
        return None
    lone = {c for c in _LONE_CAPITAL.findall(text) if c in letters and c != "I"}
    return lone.pop() if len(lone) == 1 else None


def choice_accuracy(output: str, options: list[str], answer: str) -> float:
    """1.0 if the extracted letter is ``answer`` (a letter, or the correct option's text)."""
    letters = choice_letters(len(options))
    target = answer.strip().upper() if answer.strip().upper() in letters and len(answer.strip()) == 1 else None
    if target is None:
        matches = [letter for letter, option in zip(letters, options) if _squash(option) == _squash(answer)]
        if not matches:
            raise ValueError(f"answer {answer!r} is neither an option letter nor one of the options")
        target = matches[0]
    return float(extract_choice(output, options) == target)


@per_sample
def exact_match_rows(prediction, sample) -> float:
    return exact_match(prediction, list(sample.answers))


@per_sample
def anls_rows(prediction, sample) -> float:
    return anls(prediction, list(sample.answers))


@per_sample
def choice_accuracy_rows(prediction, sample) -> float:
    return choice_accuracy(prediction, list(sample.options), sample.answers[0])
