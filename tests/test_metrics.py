"""Scorers, each on cases worked out by hand from the metric's published definition."""

import numpy as np
import pytest

from vlmzoo.evaluation.metrics.text import anls, choice_accuracy, exact_match, extract_choice, levenshtein
from vlmzoo.evaluation.metrics.vision import grounding_hit, iou, mean_per_class_accuracy, topk_correct
from vlmzoo.evaluation.metrics.vqa import normalize, strip_punctuation, vqa_accuracy
from vlmzoo.evaluation.stats import bootstrap_ci, mcnemar, paired_bootstrap

# -- VQA v2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction, answers, expected", [
    # ten humans agree: one match among the other nine is 1/3, three or more is 1
    ("yes", ["yes"] * 10, 1.0),
    # 3 yes / 7 no: leaving out a "yes" leaves 2 matches (2/3), leaving out a "no" leaves 3 (1)
    ("yes", ["yes"] * 3 + ["no"] * 7, (3 * 2 / 3 + 7 * 1) / 10),
    # 1 yes: leaving it out leaves 0 matches, leaving out any other leaves 1 (1/3)
    ("yes", ["yes"] + ["no"] * 9, 9 * (1 / 3) / 10),
    # 2 yes: out-a-yes -> 1/3 (x2), out-a-no -> 2/3 (x8)
    ("yes", ["yes"] * 2 + ["no"] * 8, (2 * (1 / 3) + 8 * (2 / 3)) / 10),
    # answers disagree, so both sides are normalised: "Two." -> "2", "the dog" -> "dog"
    ("Two.", ["2"] * 4 + ["3"] * 6, 1.0),
    ("The dog", ["dog"] * 5 + ["cat"] * 5, 1.0),
    # answers agree, so nothing is normalised: "Two" is not "2" (the official code's behaviour)
    ("Two", ["2"] * 10, 0.0),
    ("yes\n", ["yes"] * 10, 1.0),  # whitespace is always cleaned
    ("dont know", ["don't know"] * 5 + ["no"] * 5, 1.0),  # contractions restored
])
def test_vqa_accuracy_hand_worked(prediction, answers, expected):
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("text, expected", [
    ("red/white", "red white"),  # touches no space: replaced by a space
    ("red / white", "red  white"),  # touches a space: deleted
    ("3,000", "3000"),  # digit-comma-digit: every mark is deleted
    ("1.5", "1.5"),  # a period before a digit stays
    ("U.S.A.", "USA"),
    ("n't", "n't"),  # apostrophes are not in the official list
])
def test_vqa_punctuation(text, expected):
    assert strip_punctuation(text) == expected


def test_vqa_normalisation_words():
    assert normalize("The Two dogs") == "2 dogs"
    assert normalize("an Apple!") == "apple"
    assert normalize("isnt it") == "isn't it"
    # the official code strips at most 32 periods (re.UNICODE passed as re.sub's count)
    assert normalize("a" + "." * 40 + "b") == "a" + "." * 8 + "b"


def test_vqa_needs_answers():
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("x", [])


# -- text answers -------------------------------------------------------------------------------


def test_exact_match():
    assert exact_match("  Paris. ", ["paris"]) == 1.0
    assert exact_match("Paris, France", ["paris"]) == 0.0


def test_levenshtein_and_anls():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    # "12/15/89" vs "12/15/88": 1 edit over 8 characters -> 1 - 1/8
    assert anls("12/15/89", ["12/15/88"]) == pytest.approx(1 - 1 / 8)
    # case-insensitive, best reference wins
    assert anls("Dear dr. Lobo", ["Dear Dr. Lobo", "Dr. Lobo"]) == 1.0
    # NL = 4/6: similarity 1/3 < 0.5, counted as 0
    assert anls("abcdef", ["abxyzw"]) == 0.0


# The DocVQA / InfographicVQA organisers' script (RRC): distance between the lower-cased,
# whitespace-squashed strings, over max(len(answer.upper()), len(prediction.upper())) of the raw
# strings; score = 1 - min over answers, set to 0 only when below 0.5.


def test_anls_similarity_of_exactly_the_threshold_counts():
    # 1 edit over 2 characters: 1 - 1/2 = 0.5, not below 0.5, so it stands
    assert anls("ab", ["ax"]) == 0.5
    # the best answer counts: "abcd" vs "xyz" is 4 edits over 4 (0), vs "abxy" 2 over 4 (0.5)
    assert anls("abcd", ["xyz", "abxy"]) == 0.5


def test_anls_divides_by_the_raw_lengths():
    # the distance is between "12/15/89" and "12/15/88" (1 edit), the denominator the raw
    # prediction's 11 characters: 1 - 1/11 (the squashed lengths would give 1 - 1/8)
    assert anls("  12/15/89 ", ["12/15/88"]) == pytest.approx(1 - 1 / 11)
    # inner runs of spaces count too: "dr.  lobo" (9) vs "dr. lobo": 0 edits after squashing
    assert anls("Dr.  Lobo", ["Dr. Lobo"]) == 1.0
    # "dr. lobx" vs "dr. lobo": 1 edit over the raw 10 characters of "Dr.   Lobx"
    assert anls("Dr.   Lobx", ["Dr. Lobo"]) == pytest.approx(1 - 1 / 10)


def test_anls_empty_strings():
    assert anls("", [""]) == 1.0  # length 0: distance counted as 0
    assert anls("", ["abc"]) == 0.0  # 3 edits over 3
    # "   " squashes to "": 1 edit from "a", over the raw 3 characters: 1 - 1/3
    assert anls("   ", ["a"]) == pytest.approx(2 / 3)


def test_anls_counts_upper_cased_lengths():
    # "maß" vs "mas": 1 edit; "MASS" has 4 characters, so 1 - 1/4 (not 1 - 1/3)
    assert anls("Maß", ["Mas"]) == pytest.approx(0.75)
    # "ß" vs "s": 1 edit over len("SS") = 2 -> exactly 0.5, which stands
    assert anls("ß", ["s"]) == 0.5


@pytest.mark.parametrize("output, expected", [
    ("B", "B"), ("(C)", "C"), ("b.", "B"), ("D. a red car", "D"), ("The answer is C.", "C"),
    ("Answer: (A)", "A"), ("I think it is a dog", "B"), ("a cat, I'd say", "A"),
    ("dark red", "D"),  # "red" is inside "dark red": the longer option wins
    ("either A or B", None), ("no idea", None), ("", None),
])
def test_extract_choice(output, expected):
    assert extract_choice(output, ["a cat", "a dog", "red", "dark red"]) == expected


def test_choice_accuracy_takes_a_letter_or_the_option_text():
    options = ["cat", "dog"]
    assert choice_accuracy("B", options, "B") == 1.0
    assert choice_accuracy("dog", options, "dog") == 1.0
    assert choice_accuracy("A", options, "dog") == 0.0
    with pytest.raises(ValueError, match="neither an option letter"):
        choice_accuracy("A", options, "horse")


# -- labels, rankings, boxes --------------------------------------------------------------------


def test_classification_metrics():
    assert topk_correct(["cat", "dog", "car"], "dog", 1) == 0.0
    assert topk_correct(["cat", "dog", "car"], "dog", 5) == 1.0
    # class a: 3 of 4 right, class b: 0 of 1 -> (0.75 + 0) / 2, not 3/5
    assert mean_per_class_accuracy([1, 1, 1, 0, 0], ["a", "a", "a", "a", "b"]) == pytest.approx(0.375)


def test_iou_and_grounding():
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert grounding_hit((0, 0, 10, 10), (0, 0, 10, 20)) == 1.0  # IoU 0.5 counts
    assert grounding_hit((0, 0, 10, 10), (0, 0, 10, 21)) == 0.0
    assert grounding_hit(None, (0, 0, 1, 1)) == 0.0


# -- retrieval recall@K -------------------------------------------------------------------------

# With one-hot image embeddings, image j's similarity to a caption is the caption's j-th entry,
# so the similarity matrix can be read off the caption vectors.
ONE_HOT_IMAGES = np.eye(3, dtype=np.float32)


def _retrieval_scores(captions_per_image) -> dict[str, float]:
    from vlmzoo.evaluation.metrics import METRICS
    from vlmzoo.evaluation.sample import Sample

    predictions = [{"image": image, "texts": np.asarray(texts, dtype=np.float32)}
                   for image, texts in captions_per_image]
    samples = [Sample(str(i), (), answers=tuple(f"c{j}" for j in range(len(t))))
               for i, (_, t) in enumerate(captions_per_image)]
    out = {}
    for k in (1, 5, 10):
        for direction in ("i2t", "t2i"):
            metric = METRICS[f"recall@{k}_{direction}"]
            out[f"{k}_{direction}"] = metric.aggregate(metric.rows(predictions, samples))
    return out


def test_retrieval_recall_hand_worked():
    captions = [[[0.9, 0.1, 0.0], [0.2, 0.5, 0.3]],   # image 0's captions t0, t1
                [[0.3, 0.6, 0.1], [0.0, 0.2, 0.8]],   # image 1's: t2, t3
                [[0.4, 0.0, 0.1], [0.1, 0.7, 0.2]]]   # image 2's: t4, t5
    got = _retrieval_scores(list(zip(ONE_HOT_IMAGES, captions)))
    # image -> text. image 0: own best t0 0.9, no other caption as high: rank 0.
    # image 1: own best t2 0.6, above it t5 0.7: rank 1. image 2: own best t5 0.2, above it
    # t1 0.3 and t3 0.8: rank 2. Ranks (0, 1, 2): R@1 = 1/3, R@5 = R@10 = 1.
    assert got["1_i2t"] == pytest.approx(1 / 3) and got["5_i2t"] == got["10_i2t"] == 1.0
    # text -> image, other images scoring at least the caption's own: t0 0 (0.1, 0.0 < 0.9),
    # t1 2 (0.5, 0.3 >= 0.2), t2 0, t3 1 (0.8), t4 1 (0.4), t5 1 (0.7): R@1 = 2/6
    assert got["1_t2i"] == pytest.approx(2 / 6) and got["5_t2i"] == got["10_t2i"] == 1.0


def test_retrieval_ties_do_not_favour_the_query():
    # every embedding equal: image -> text, each image's best own caption ties the other 4
    # captions, all ranked above it: rank 4, a hit at 5 and 10 but not at 1. Text -> image:
    # the other 2 images tie the caption's own: rank 2.
    same = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    got = _retrieval_scores([(same, [same, same]) for _ in range(3)])
    assert got == {"1_i2t": 0.0, "5_i2t": 1.0, "10_i2t": 1.0, "1_t2i": 0.0, "5_t2i": 1.0, "10_t2i": 1.0}
    # 4 images x 2 captions: image -> text rank 6 (a hit at 10 only), text -> image rank 3
    got = _retrieval_scores([(same, [same, same]) for _ in range(4)])
    assert got == {"1_i2t": 0.0, "5_i2t": 0.0, "10_i2t": 1.0, "1_t2i": 0.0, "5_t2i": 1.0, "10_t2i": 1.0}
    # one tie in an otherwise ordered case: image 1's best own caption t2 (0.6) ties t5 (0.6),
    # which now ranks above it (rank 1); image 0 keeps rank 0 and image 2 rank 2 (t1 0.3, t3 0.8
    # above its 0.2). Text -> image: t5 (own 0.2) has image 1 at 0.6 above it: rank 1, as before.
    captions = [[[0.9, 0.1, 0.0], [0.2, 0.5, 0.3]],
                [[0.3, 0.6, 0.1], [0.0, 0.2, 0.8]],
                [[0.4, 0.0, 0.1], [0.1, 0.6, 0.2]]]
    got = _retrieval_scores(list(zip(ONE_HOT_IMAGES, captions)))
    assert got["1_i2t"] == pytest.approx(1 / 3) and got["1_t2i"] == pytest.approx(2 / 6)
    # ties on the text side: t0's own image 0 scores 0.5, image 1 also 0.5 -> rank 1, a miss at 1
    captions = [[[0.5, 0.5, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]
    got = _retrieval_scores(list(zip(ONE_HOT_IMAGES, captions)))
    # image -> text: image 0's caption t0 0.5, nothing else above 0 in its row: rank 0.
    # image 1: own t1 1.0, t0 0.5 below: rank 0. image 2: rank 0. Text -> image: t0 rank 1, others 0.
    assert got["1_i2t"] == 1.0 and got["1_t2i"] == pytest.approx(2 / 3)


# -- intervals and paired tests -----------------------------------------------------------------


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    small = rng.random(50) < 0.7
    large = rng.random(5000) < 0.7
    a, b = bootstrap_ci(small), bootstrap_ci(large)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low) / 5
    # the normal approximation for a proportion: half-width ~ 1.96 * sqrt(p(1-p)/n)
    assert (b.high - b.low) / 2 == pytest.approx(1.96 * np.sqrt(0.21 / 5000), rel=0.15)


def test_paired_bootstrap_sees_a_real_gap_and_not_a_fake_one():
    rng = np.random.default_rng(2)
    a = (rng.random(400) < 0.6).astype(float)
    better = a.copy()
    better[np.flatnonzero(a == 0)[:40]] = 1  # b fixes 40 of a's mistakes
    diff = paired_bootstrap(a, better)
    assert diff.difference == pytest.approx(0.1) and diff.significant and diff.low > 0
    same = paired_bootstrap(a, rng.permutation(a))  # same accuracy, different samples
    assert not same.significant and same.low < 0 < same.high


def test_mcnemar_exact():
    a = [1] * 10 + [0] * 10
    b = [1] * 10 + [1] * 10  # b alone right on 10, a alone right on 0: p = 2 * 0.5**10
    assert mcnemar(a, b) == pytest.approx(2 * 0.5**10)
    assert mcnemar(a, a) == 1.0
    # 3 vs 5 discordant: 2 * P(X <= 3), X ~ Bin(8, 0.5) = 2 * 93/256
    x = [1, 1, 1, 0, 0, 0, 0, 0]
    y = [0, 0, 0, 1, 1, 1, 1, 1]
    assert mcnemar(x, y) == pytest.approx(2 * 93 / 256)


def test_paired_bootstrap_ignores_float_noise():
    a = np.full(50, 1e-18)
    b = np.full(50, 2e-14)  # "better" only by BLEU's smoothing residue
    assert paired_bootstrap(a, b).p_value == 1.0 and not paired_bootstrap(a, b).significant
