"""COCO caption metrics against pycocoevalcap's own scorers, on captions chosen to reach the corners
(punctuation, case, repeats, empty and one-word candidates, long ones, numbers, brackets).

The METEOR jar takes ~10 s to load its paraphrase table, so the module computes everything once:
pycocoevalcap's METEOR process is started first and loads while ours runs.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from vlmzoo.errors import VlmzooError
from vlmzoo.evaluation.metrics import METRICS
from vlmzoo.evaluation.metrics import captions_jars as jars
from vlmzoo.evaluation.metrics.captions import (BLEU_COLUMNS, MetricUnavailable, coco_caption_scores, meteor_aggregate,
                                                tokenized)
from vlmzoo.evaluation.metrics.captions_ngram import bleu_statistics, corpus_bleu
from vlmzoo.evaluation.sample import Sample
from vlmzoo.evaluation.stats import bootstrap_ci

CASES = [
    ("A man riding a wave on top of a surfboard.",
     ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
      "a person on a surf board in the water", "Surfer catching a wave!", "A MAN SURFING A WAVE."]),
    ("a dog dog dog dog dog", ["A dog runs across the grass.", "a brown dog playing in a field"]),
    ("", ["Two cats sleeping on a couch.", "cats on a sofa"]),
    ("...", ["A red bus parked on the street.", "a bus by the curb", "Red double-decker bus."]),
    ("cat", ["A cat sitting on a window sill."]),
    ("A plate with 2 slices of pizza and 3.5 oz of salad, served at 12:30.",
     ["Two slices of pizza on a plate next to a salad.", "A plate holds 2 pizza slices and some salad.",
      "pizza and salad on a white plate"]),
    ("The the THE the a a", ["the cat", "the dog and the cat"]),
    ("A giraffe (tall) standing near [some] trees; {very} green -- and leafy...",
     ["A tall giraffe standing next to trees.", "Giraffe near green trees", "a giraffe in a zoo enclosure"]),
    ("\"Hello,\" said the sign: 'Welcome to N.Y.C.!'",
     ["A sign that says welcome to New York City.", "a welcome sign in the city", "Sign: \"Welcome\""]),
    ("kids can't play; they're inside, aren't they?",
     ["Children playing inside the house.", "Kids that cannot play outside."]),
    (("a woman holding an umbrella in the rain while walking down a busy city street full of people and cars "
      "on a grey afternoon with tall buildings on both sides and wet pavement reflecting the lights of shops"),
     ["A woman with an umbrella walks in the rain.", "Person holding an umbrella on a rainy street.",
      "a woman walking down a city street in the rain", "People and cars on a wet street.",
      "An umbrella in the rain."]),
    ("a train", ["A train on the tracks.", "a train", "A long passenger train pulling into a station."]),
    ("A bowl of fruit: apples, bananas, and oranges.",
     ["A bowl full of apples, bananas and oranges.", "fruit in a bowl", "Bananas, apples & oranges in a bowl."]),
    ("3 1/2 dozen donuts cost $12.99 at 7-Eleven", ["A box of donuts at a store.", "donuts for sale, $12.99"]),
    ("A café in Zürich with crème brûlée", ["An outdoor café with tables.", "a cafe with desserts"]),
    ("an elephant", ["An elephant walking.", "a large elephant", "elephant", "The elephant is grey.", "an elephant"]),
    ("A man and a woman and a man and a woman",
     ["A man and a woman standing together.", "Two people, a man and a woman, pose for a photo."]),
    ("Two zebras grazing in a field", ["Two zebras grazing in a field", "two zebras eating grass"]),
    ("A laptop computer sitting on top of a wooden desk next to a mouse.",
     ["A laptop on a desk with a mouse.", "A computer desk with a laptop and a mouse.",
      "an open laptop on a wooden table", "Laptop, mouse, and desk.", "A silver laptop sits on a desk."]),
    ("!!! ??? ,,,", ["A vase of flowers on a table.", "flowers in a vase"]),
    ("a|||b a  b   c", ["a b c", "a b"]),
    ("A stop sign at the corner of 5th Ave. & 23rd St.",
     ["A red stop sign on a street corner.", "stop sign at an intersection"]),
    ("the quick brown fox jumps over the lazy dog",
     ["the quick brown fox jumps over the lazy dog", "a fox jumping over a dog"]),
    ("Mr. Smith's dog, Rex, isn't here.", ["A dog named Rex.", "mr smith s dog"]),
    ("a b c d e f g h", ["h g f e d c b a", "a c e g", "b d f h"]),
    ("A kitchen with a stove, a sink, and a refrigerator.",
     ["A kitchen with a stove and a refrigerator.", "A small kitchen with white appliances.",
      "a kitchen that has a sink and a fridge"]),
    ("Bird", ["A bird perched on a branch.", "a small bird", "Bird!"]),
    ("A   group  of\tpeople\nflying kites at the beach",
     ["People flying kites on a beach.", "A group of people fly kites by the sea.", "kites in the sky"]),
    ("1 2 3 4 5 6 7 8 9 10", ["Numbers one to ten.", "1 2 3", "10 9 8 7"]),
    ("A baseball player swinging a bat at a ball",
     ["A baseball player swinging a bat.", "a batter hits the ball", "Baseball player at bat during a game.",
      "A man swings a bat at a baseball."]),
]
PREDICTIONS = [c for c, _ in CASES]
REFERENCES = [refs for _, refs in CASES]
SAMPLES = [Sample(id=str(i), images=(), answers=tuple(refs)) for i, refs in enumerate(REFERENCES)]
NAMES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
TOL = 1e-6


def _java_launches(log):
    real = subprocess.Popen

    def counting(cmd, *args, **kwargs):
        log.append(" ".join(map(str, cmd)))
        return real(cmd, *args, **kwargs)

    return counting


@pytest.fixture(scope="module")
def scored():
    """Our rows for every metric (with the java processes they started) and pycocoevalcap's scores."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    their_meteor = Meteor()  # its JVM loads the paraphrase table while ours does
    tokenized.cache_clear()
    launches: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", _java_launches(launches))
        ours = {name: METRICS[name].rows(PREDICTIONS, SAMPLES) for name in NAMES}

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)})
    res = tokenizer.tokenize({i: [{"caption": c}] for i, c in enumerate(PREDICTIONS)})
    theirs = {"tokens": (gts, res)}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        theirs[f"bleu{n + 1}"] = (bleu[n], bleu_each[n])
    theirs["meteor"] = their_meteor.compute_score(gts, res)
    theirs["rouge_l"] = Rouge().compute_score(gts, res)
    theirs["cider"] = Cider().compute_score(gts, res)
    return ours, theirs, launches


def test_tokens_equal_pycocoevalcaps(scored):
    gts, res = scored[1]["tokens"]
    candidates, references = tokenized(tuple(PREDICTIONS), tuple(tuple(r) for r in REFERENCES))
    assert list(candidates) == [res[i][0] for i in range(len(CASES))]
    assert [list(r) for r in references] == [gts[i] for i in range(len(CASES))]
    assert candidates[2] == "" and candidates[3] == ""  # empty and punctuation-only captions stay aligned
    assert "-lrb-" in candidates[7]  # coco's filter never drops lower-cased brackets


@pytest.mark.parametrize("name", NAMES)
def test_corpus_score_equals_pycocoevalcap(scored, name):
    ours, theirs, _ = scored
    value = METRICS[name].aggregate(ours[name])
    assert value == pytest.approx(theirs[name][0], abs=TOL)
    assert 0 < value  # not a vacuous agreement


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_scores_equal_pycocoevalcap(scored, name):
    ours, theirs, _ = scored
    rows = ours[name]
    if name.startswith("bleu"):  # a single row's statistics give coco's per-image BLEU
        each = [corpus_bleu(rows[i:i + 1], int(name[-1])) for i in range(len(rows))]
    else:
        each = list(rows[:, 0])
    expected = np.asarray(theirs[name][1], dtype=float)
    assert len(each) == len(CASES)
    np.testing.assert_allclose(each, expected, rtol=0, atol=TOL)
    assert np.ptp(expected) > 0.1  # the cases spread the scores


def test_tokenizer_and_meteor_jars_run_once_for_all_metrics(scored):
    launches = scored[2]
    assert sum("PTBTokenizer" in cmd for cmd in launches) == 1
    assert sum("meteor-1.5.jar" in cmd and "-stdio" in cmd for cmd in launches) == 1
    assert len(launches) == 2
    # the plain function reuses the cached tokens: no java at all for the n-gram metrics
    log: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", _java_launches(log))
        direct = coco_caption_scores(PREDICTIONS, REFERENCES, metrics=("bleu4", "rouge_l", "cider"))
    assert log == []
    assert direct == {n: METRICS[n].aggregate(scored[0][n]) for n in ("bleu4", "rouge_l", "cider")}


def test_bleu_rows_bootstrap_to_corpus_bleu(scored):
    ours, theirs, _ = scored
    rows = ours["bleu4"]
    assert rows.shape == (len(CASES), len(BLEU_COLUMNS))
    identity = rows[np.arange(len(rows))]
    assert corpus_bleu(identity, 4) == pytest.approx(theirs["bleu4"][0], abs=TOL)
    interval = bootstrap_ci(rows, METRICS["bleu4"].aggregate, resamples=200)
    assert interval.value == pytest.approx(theirs["bleu4"][0], abs=TOL)
    assert interval.low < interval.value < interval.high
    # a resample's aggregate is coco's corpus BLEU of the resampled set (repeats as separate images)
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = theirs["tokens"]
    pick = np.random.default_rng(1).integers(0, len(rows), len(rows))
    resampled = Bleu(4).compute_score({k: gts[i] for k, i in enumerate(pick)}, {k: res[i] for k, i in enumerate(pick)},
                                      verbose=0)[0]
    for n in range(1, 5):
        assert METRICS[f"bleu{n}"].aggregate(rows[pick]) == pytest.approx(resampled[n - 1], abs=TOL)


def test_meteor_aggregate_is_the_jar_score_only_on_the_full_set(scored):
    rows, (corpus, segments) = scored[0]["meteor"], scored[1]["meteor"]
    assert meteor_aggregate(rows) == pytest.approx(corpus, abs=TOL)
    assert meteor_aggregate(rows[::-1]) == pytest.approx(corpus, abs=TOL)  # order does not matter
    assert corpus != pytest.approx(np.mean(segments), abs=1e-3)  # the two really differ here
    resample = rows[[0, 0] + list(range(2, len(rows)))]
    assert meteor_aggregate(resample) == pytest.approx(resample[:, 0].mean())
    assert meteor_aggregate(rows[:5]) == pytest.approx(rows[:5, 0].mean())


def test_bleu_reference_length_is_the_closest_shorter_on_ties():
    stats = dict(zip(BLEU_COLUMNS, bleu_statistics("a b c d", ["a b", "a b c d e f", "x y z w v u"]), strict=True))
    assert stats["reference_length"] == 2  # |4-2| == |4-6|: the shorter one
    stats = dict(zip(BLEU_COLUMNS, bleu_statistics("a a a b", ["a a b", "a"]), strict=True))
    # "a" clipped at 2 (+1 "b"), "a a" at 1 (+1 "a b"), "a a b" once, no 4-gram in the reference
    assert [stats[f"matches{n}"] for n in range(1, 5)] == [3, 2, 1, 0]
    assert [stats[f"ngrams{n}"] for n in range(1, 5)] == [4, 3, 2, 1]


def test_line_breaks_inside_a_caption_do_not_shift_the_others():
    assert jars.ptb_tokenize(["a\rb", "x\u2028y.", "Last one!"]) == ["a b", "x y", "last one"]


def test_spice_is_unavailable_without_corenlp_models(tmp_path, monkeypatch):
    rows = METRICS["spice"].rows
    # the wheel never ships the CoreNLP 3.6.0 models: SPICE would download them
    assert "stanford-corenlp-3.6.0-models.jar" in jars.spice_unavailable_reason()
    with pytest.raises(MetricUnavailable, match="stanford-corenlp-3.6.0") as caught:
        rows(PREDICTIONS[:2], SAMPLES[:2])
    assert isinstance(caught.value, VlmzooError) and caught.value.metric == "spice"
    # with the jar but only one of the two model jars, still unavailable, naming the missing one
    (tmp_path / jars.SPICE_JAR).parent.joinpath("lib").mkdir(parents=True)
    for path in (jars.SPICE_JAR, jars.SPICE_MODELS[0]):
        (tmp_path / path).write_bytes(b"")
    monkeypatch.setattr(jars, "pycocoevalcap_dir", lambda: tmp_path)
    reason = jars.spice_unavailable_reason()
    assert "models.jar" in reason and str(tmp_path / jars.SPICE_JAR) not in reason


def test_spice_runs_the_jar_once_when_installed(tmp_path, monkeypatch):
    for path in (jars.TOKENIZER_JAR, jars.SPICE_JAR, *jars.SPICE_MODELS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    monkeypatch.setattr(jars, "pycocoevalcap_dir", lambda: tmp_path)
    assert jars.spice_unavailable_reason() is None
    calls = []

    def fake_spice(cmd, **kwargs):  # answers like the jar: scores per image_id, "f" may be null
        import json
        from pathlib import Path

        calls.append(cmd)
        items = json.loads(Path(cmd[4]).read_text())
        out = [{"image_id": it["image_id"], "scores": {"All": {"f": None if not it["test"] else 0.25 * it["image_id"]}}}
               for it in items]
        Path(cmd[cmd.index("-out") + 1]).write_text(json.dumps(out))
        return subprocess.CompletedProcess(cmd, 0, b"", b"")

    monkeypatch.setattr(jars.subprocess, "run", fake_spice)
    scores = jars.spice(["a dog", "", "a cat"], [["a dog"], ["x"], ["a cat", "cats"]])
    assert len(calls) == 1 and "-subset" in calls[0] and calls[0][2] == "-Xmx8G"
    assert scores[0] == 0.0 and np.isnan(scores[1]) and scores[2] == 0.5


def test_missing_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VlmzooError, match="Java runtime"):
        coco_caption_scores(["a java-less caption"], [["some reference"]], metrics=("bleu4",))
    with pytest.raises(VlmzooError, match="Java runtime"):
        jars.meteor(["a"], [["b"]])


def test_missing_pycocoevalcap_names_the_install(monkeypatch):
    monkeypatch.setattr(jars, "find_spec", lambda name: None)
    with pytest.raises(VlmzooError, match=r"pip install 'vlmzoo\[eval\]'"):
        jars.ptb_tokenize(["a caption"])
    assert "pip install" in jars.spice_unavailable_reason()


def test_caption_metrics_are_registered_for_the_caption_task():
    for name in ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "spice"):
        assert METRICS[name].tasks == frozenset({"caption"}) and METRICS[name].description
