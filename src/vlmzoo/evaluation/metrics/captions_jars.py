"""The official coco-caption Java tools, run from the jars inside the installed pycocoevalcap wheel.

PTB tokenisation (Stanford CoreNLP 3.4.1), METEOR 1.5 and SPICE 1.0 are Java programs; scoring
with anything else would not give the published numbers. Each call starts one JVM for the whole
set of captions, with the command lines pycocoevalcap uses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from importlib.util import find_spec
from pathlib import Path

from vlmzoo.errors import VlmzooError

INSTALL_HINT = "pip install 'vlmzoo[eval]'"
TOKENIZER_JAR = Path("tokenizer", "stanford-corenlp-3.4.1.jar")
METEOR_JAR = Path("meteor", "meteor-1.5.jar")
SPICE_JAR = Path("spice", "spice-1.0.jar")
# pycocoevalcap's SPICE downloads these on first use (get_stanford_models); we never do
SPICE_MODELS = (Path("spice", "lib", "stanford-corenlp-3.6.0.jar"),
                Path("spice", "lib", "stanford-corenlp-3.6.0-models.jar"))

# PTB tokens the coco wrapper drops. It compares case-sensitively after -lowerCase, so the bracket
# tokens (-lrb- ...) are never dropped; that is part of the official numbers.
PUNCTUATION = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                         ".", "?", "!", ",", ":", "-", "--", "...", ";"})
# characters the tokenizer treats as line ends; with -preserveLines they would split a caption in two
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\u2028\u2029"})


def pycocoevalcap_dir() -> Path:
    """The installed pycocoevalcap folder, found without importing it."""
    spec = find_spec("pycocoevalcap")
    if spec is None:
        raise VlmzooError(f"caption metrics need pycocoevalcap (the official coco-caption tools): {INSTALL_HINT}")
    # the wheel has no top-level __init__.py: a namespace package, known by its search locations
    for location in list(spec.submodule_search_locations or []):
        if (Path(location) / TOKENIZER_JAR).is_file():
            return Path(location)
    raise VlmzooError(f"pycocoevalcap is installed without its jars ({TOKENIZER_JAR} not found); "
                      f"reinstall: {INSTALL_HINT}")


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise VlmzooError("caption metrics run the official Java tools (PTB tokenizer, METEOR) but there is no `java` "
                          "on PATH: install a Java runtime (8 or later, e.g. apt-get install default-jre-headless)")
    return java


def _failure(tool: str, returncode: int | None, stderr: bytes) -> VlmzooError:
    tail = stderr.decode("utf-8", "replace").strip()[-2000:]
    return VlmzooError(f"{tool} failed (exit {returncode}): {tail or 'no message'}")


def ptb_tokenize(texts: list[str]) -> list[str]:
    """coco's tokenisation: Stanford PTBTokenizer, lower-cased, one line per caption, then the
    punctuation tokens dropped and the rest joined by single spaces."""
    if not texts:
        return []
    root = pycocoevalcap_dir()
    command = [java_executable(), "-cp", str(root / TOKENIZER_JAR), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase"]
    # coco replaces only "\n"; other line ends would shift every later caption, so we replace them all
    lines = "".join(text.translate(_LINE_BREAKS) + "\n" for text in texts)
    result = subprocess.run(command, cwd=root / TOKENIZER_JAR.parent, input=lines.encode("utf-8"),
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise _failure("PTB tokenizer", result.returncode, result.stderr)
    out = result.stdout.decode("utf-8").split("\n")
    if len(out) != len(texts) + 1 or out[-1] != "":
        raise VlmzooError(f"PTB tokenizer returned {len(out) - 1} lines for {len(texts)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATION) for line in out[:-1]]


def meteor(candidates: list[str], references: list[list[str]]) -> tuple[list[float], float]:
    """METEOR 1.5 of tokenised captions in one jar process (-stdio): per-segment scores and the
    jar's corpus score (computed from summed statistics, not the mean of the segments)."""
    if not candidates:
        raise ValueError("METEOR needs at least one caption")
    root = pycocoevalcap_dir()
    command = [java_executable(), "-jar", "-Xmx2G", str(root / METEOR_JAR), "-", "-", "-stdio", "-l", "en", "-norm"]
    score_lines = []
    for candidate, refs in zip(candidates, references, strict=True):
        # coco strips the field separator from the hypothesis only
        candidate = candidate.replace("|||", "").replace("  ", " ")
        score_lines.append(" ||| ".join(("SCORE", " ||| ".join(refs), candidate)) + "\n")
    with tempfile.TemporaryFile() as stderr:  # a file, so a chatty jar cannot block on a full pipe
        process = subprocess.Popen(command, cwd=root / METEOR_JAR.parent, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=stderr)
        try:
            # write from a thread: the jar answers each SCORE line, and both pipes can fill up
            writer = threading.Thread(target=_write, args=(process.stdin, score_lines), daemon=True)
            writer.start()
            stats = [process.stdout.readline().decode("utf-8").strip() for _ in score_lines]
            writer.join()
            if not all(stats):
                raise _meteor_failure(process, stderr)
            process.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode("utf-8"))
            process.stdin.close()
            answers = process.stdout.read().decode("utf-8").split()
            process.wait()
            if len(answers) != len(stats) + 1:
                raise _meteor_failure(process, stderr)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    scores = [float(a) for a in answers]
    return scores[:-1], scores[-1]


def _write(pipe, lines: list[str]) -> None:
    try:
        for line in lines:
            pipe.write(line.encode("utf-8"))
        pipe.flush()
    except BrokenPipeError:  # the jar died; the reader reports it with the jar's stderr
        pass


def _meteor_failure(process: subprocess.Popen, stderr) -> VlmzooError:
    if process.poll() is None:
        process.kill()
    process.wait()
    stderr.seek(0)
    return _failure("METEOR jar", process.returncode, stderr.read())


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here, or None when its jar, its CoreNLP models and java are all present."""
    try:
        root = pycocoevalcap_dir()
    except VlmzooError as error:
        return str(error)
    missing = [str(root / p) for p in (SPICE_JAR, *SPICE_MODELS) if not (root / p).is_file()]
    if missing:
        return ("SPICE needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads on first use and this setup does "
                f"not fetch; missing: {', '.join(missing)} (they come from stanford-corenlp-full-2015-12-09.zip)")
    if shutil.which("java") is None:
        return "SPICE needs a Java runtime: no `java` on PATH"
    return None


def spice(candidates: list[str], references: list[list[str]]) -> list[float]:
    """Per-sample SPICE F-scores ("All"), NaN where the jar gives none. Call only when
    ``spice_unavailable_reason()`` is None."""
    root = pycocoevalcap_dir()
    with tempfile.TemporaryDirectory() as tmp:
        source, target, cache = Path(tmp, "in.json"), Path(tmp, "out.json"), Path(tmp, "cache")
        cache.mkdir()
        items = [{"image_id": i, "test": c, "refs": list(refs)}
                 for i, (c, refs) in enumerate(zip(candidates, references, strict=True))]
        source.write_text(json.dumps(items), encoding="utf-8")
        command = [java_executable(), "-jar", "-Xmx8G", str(root / SPICE_JAR), str(source), "-cache", str(cache),
                   "-out", str(target), "-subset", "-silent"]
        result = subprocess.run(command, cwd=root / SPICE_JAR.parent, capture_output=True, check=False)
        if result.returncode != 0:
            raise _failure("SPICE jar", result.returncode, result.stderr)
        by_id = {item["image_id"]: item["scores"]["All"]["f"] for item in json.loads(target.read_text("utf-8"))}
    return [float("nan") if by_id[i] is None else float(by_id[i]) for i in range(len(items))]
