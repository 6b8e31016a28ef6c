"""BLEU, ROUGE-L and CIDEr-D on PTB-tokenised captions, as coco-caption defines them.

Inputs are already tokenised (lower-cased, punctuation dropped, tokens joined by single spaces).
The definitions, constants and quirks are coco-caption's (pycocoevalcap 1.2), so the numbers
agree with it; the code is ours.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

MAX_ORDER = 4  # n-grams of 1..4 words, for BLEU and CIDEr-D alike

# -- BLEU ---------------------------------------------------------------------------------------

# coco adds these so that a zero count gives a tiny score instead of a division error
_TINY = 1e-15
_SMALL = 1e-9
# a BLEU row: clipped matches for n=1..4, candidate n-grams for n=1..4, candidate length, reference length
BLEU_COLUMNS = tuple(f"matches{n}" for n in range(1, 5)) + tuple(f"ngrams{n}" for n in range(1, 5)) + (
    "candidate_length", "reference_length")


def ngram_counts(words: list[str], max_order: int = MAX_ORDER) -> Counter:
    return Counter(tuple(words[i:i + n]) for n in range(1, max_order + 1) for i in range(len(words) - n + 1))


def bleu_statistics(candidate: str, references: list[str]) -> list[int]:
    """One sample's BLEU sufficient statistics (see ``BLEU_COLUMNS``)."""
    words = candidate.split()
    ceiling: dict[tuple[str, ...], int] = {}  # the most times any single reference holds each n-gram
    lengths = []
    for reference in references:
        ref_words = reference.split()
        lengths.append(len(ref_words))
        for gram, count in ngram_counts(ref_words).items():
            ceiling[gram] = max(ceiling.get(gram, 0), count)
    matches = [0] * MAX_ORDER
    for gram, count in ngram_counts(words).items():
        matches[len(gram) - 1] += min(count, ceiling.get(gram, 0))
    ngrams = [max(0, len(words) - n) for n in range(MAX_ORDER)]
    # coco's "closest" effective reference length: nearest to the candidate's, the shorter on a tie
    reference_length = min(lengths, key=lambda length: (abs(length - len(words)), length))
    return [*matches, *ngrams, len(words), reference_length]


def corpus_bleu(rows: np.ndarray, order: int) -> float:
    """BLEU-``order`` of the samples whose statistics are ``rows`` (summed first, as coco does for
    the corpus score; a single row gives coco's per-sample score)."""
    totals = np.asarray(rows, dtype=float).reshape(-1, len(BLEU_COLUMNS)).sum(axis=0)
    matches, ngrams = totals[:MAX_ORDER], totals[MAX_ORDER:2 * MAX_ORDER]
    candidate_length, reference_length = totals[-2], totals[-1]
    product = 1.0
    for n in range(order):
        product *= (matches[n] + _TINY) / (ngrams[n] + _SMALL)
    score = product ** (1.0 / order)
    ratio = (candidate_length + _TINY) / (reference_length + _SMALL)
    if ratio < 1:  # brevity penalty, only for candidates shorter than their references
        score *= math.exp(1 - 1 / ratio)
    return float(score)


# -- ROUGE-L ------------------------------------------------------------------------------------

ROUGE_BETA = 1.2  # coco's recall weight


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one row of the dynamic programme at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, references: list[str]) -> float:
    """ROUGE-L F-measure with coco's beta, taking the best precision and the best recall over the
    references separately (they may come from different references)."""
    # coco splits on single spaces, so an empty caption is one empty token, not none
    tokens = candidate.split(" ")
    precision = recall = 0.0
    for reference in references:
        ref_tokens = reference.split(" ")
        common = lcs_length(ref_tokens, tokens)
        precision = max(precision, common / len(tokens))
        recall = max(recall, common / len(ref_tokens))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + ROUGE_BETA**2) * precision * recall / (recall + ROUGE_BETA**2 * precision)


# -- CIDEr-D ------------------------------------------------------------------------------------

CIDER_SIGMA = 6.0  # width of the Gaussian length penalty
CIDER_SCALE = 10.0


def _tfidf(counts: Counter, document_frequency: Counter, log_documents: float):
    """Per-order tf-idf vectors and their norms, and the length CIDEr-D's penalty compares."""
    vectors: list[dict] = [{} for _ in range(MAX_ORDER)]
    squares = [0.0] * MAX_ORDER
    for gram, tf in counts.items():
        # an n-gram no reference has counts as seen once: its idf is log(#samples)
        weight = tf * (log_documents - math.log(max(1.0, document_frequency[gram])))
        vectors[len(gram) - 1][gram] = weight
        squares[len(gram) - 1] += weight * weight
    # coco's length is the number of bigrams, not words (it tests the 0-based order index == 1)
    length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
    return vectors, [math.sqrt(s) for s in squares], length


def cider_d(candidates: list[str], references: list[list[str]]) -> list[float]:
    """Per-sample CIDEr-D, with document frequencies over the references of exactly these samples
    (so a sample's score depends on the set it is evaluated in, as in coco). Their mean is coco's
    corpus CIDEr-D."""
    cand_counts = [ngram_counts(c.split()) for c in candidates]
    ref_counts = [[ngram_counts(r.split()) for r in refs] for refs in references]
    document_frequency: Counter = Counter()
    for counts in ref_counts:  # each sample counts once per n-gram, however many references hold it
        document_frequency.update(set().union(*counts))
    log_documents = math.log(float(len(candidates)))
    scores = []
    for counts, refs in zip(cand_counts, ref_counts, strict=True):
        vec, norm, length = _tfidf(counts, document_frequency, log_documents)
        per_order = np.zeros(MAX_ORDER)
        for ref in refs:
            ref_vec, ref_norm, ref_length = _tfidf(ref, document_frequency, log_documents)
            penalty = math.exp(-float(length - ref_length) ** 2 / (2 * CIDER_SIGMA**2))
            for n in range(MAX_ORDER):
                # "-D": the candidate's weight is clipped at the reference's, so repeating words gains nothing
                dot = sum(min(w, ref_vec[n].get(g, 0.0)) * ref_vec[n].get(g, 0.0) for g, w in vec[n].items())
                if norm[n] != 0 and ref_norm[n] != 0:
                    dot /= norm[n] * ref_norm[n]
                per_order[n] += dot * penalty
        scores.append(float(per_order.mean() / len(refs) * CIDER_SCALE))
    return scores
