"""VQA accuracy as the official VQA v2 evaluation computes it (GT-Vision-Lab/VQA,
PythonEvaluationTools/vqaEvaluation/vqaEval.py as of its 2021-03-11 fix "Fixed processing
answers bug", the current master).

Definition carried over, quirks included, because published numbers depend on them:
- the prediction and the human answers: newlines and tabs become spaces, then stripped;
- only when the human answers disagree, all of them and the prediction are normalised:
  punctuation handling, then lower-case words with number words as digits, articles dropped
  and contractions restored. When the answers all agree, the prediction must equal them as is;
- punctuation: each mark is deleted where it touches a space (or anywhere, if the text holds a
  digit-comma-digit), otherwise replaced by a space; then periods not followed by a digit are
  removed, at most 32 of them (the official code passes re.UNICODE, 32, as re.sub's count);
- score: for each answer left out in turn, min(matches among the others / 3, 1), averaged.
"""

from __future__ import annotations

import re

from vlmzoo.evaluation.metrics.rows import per_sample

_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the official pattern, lookahead quirk and all
_OFFICIAL_SUB_COUNT = re.UNICODE  # == 32: see the module docstring
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}

# The official contraction table: written without apostrophe -> with it. One entry per line.
_CONTRACTIONS_TABLE = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've
couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've
hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's
howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd
itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't
mightnt've mightn't've|mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've
neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at
'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's|shouldve should've
shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd
somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's
someoned someone'd|someoned've someone'd've|someone'dve someone'd've|someonell someone'll
someones someone's|somethingd something'd|somethingd've something'd've|something'dve something'd've
somethingll something'll|thats that's|thered there'd|thered've there'd've|there'dve there'd've
therere there're|theres there's|theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll
theyre they're|theyve they've|twas 'twas|wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've
werent weren't|whatll what'll|whatre what're|whats what's|whatve what've|whens when's|whered where'd
wheres where's|whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's
whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|wouldnt wouldn't
wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|youd've you'd've
you'dve you'd've|youll you'll|youre you're|youve you've
"""
_CONTRACTIONS = dict(pair.split(" ") for pair in _CONTRACTIONS_TABLE.replace("\n", "|").split("|") if pair)


def strip_punctuation(text: str) -> str:
    out = text
    comma_number = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCT:
        if p + " " in text or " " + p in text or comma_number:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, _OFFICIAL_SUB_COUNT)


def normalize_words(text: str) -> str:
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize(text: str) -> str:
    """The official normalisation of an answer (applied when the human answers disagree)."""
    return normalize_words(strip_punctuation(text))


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Official VQA accuracy of one prediction against its human answers (usually ten)."""
    if not answers:
        raise ValueError("VQA accuracy needs at least one reference answer")
    pred = _clean_whitespace(prediction)
    refs = [_clean_whitespace(a) for a in answers]
    if len(set(refs)) > 1:
        pred, refs = normalize(pred), [normalize(a) for a in refs]
    total = 0.0
    for left_out in range(len(refs)):
        matches = sum(1 for j, a in enumerate(refs) if j != left_out and a == pred)
        total += min(1.0, matches / 3)
    return total / len(refs)


@per_sample
def vqa_accuracy_rows(prediction, sample) -> float:
    return vqa_accuracy(prediction, list(sample.answers))
