"""Benchmark definitions: a benchmark is a data file (TOML; YAML too when PyYAML is installed)
that says what task it is, where its data lives, how to prompt, how to read answers and which
metrics to report. Built-ins live in ``evaluation/benchmarks/``; ``load_benchmark`` also takes
a path to your own file.

Inputs: ``data.modality`` says what the data's files are (image, or audio, depth, thermal, imu
for models that embed more); formats that read several modalities list them in
``FORMAT_MODALITIES``, every other format reads images. Only classify and retrieve benchmarks
take inputs other than images.

Paths: ``data.path`` is relative to the benchmark file's folder; ``data.images`` (the folder
holding the input files, whatever their modality), ``data.annotations`` and
``data.class_names`` are relative to the folder ``data.path`` is in,
so pointing ``data.path`` elsewhere (``--data``) moves the whole dataset. ``~`` and
``$VAR``/``${VAR}`` expand. Paths are checked when samples are read, not when the file is
parsed, so every benchmark can be listed before any data is on disk.

Importing this module does not import torch or the metric implementations: metric names are
checked against the registry's table (``evaluation.metrics.TABLE``).
"""

from __future__ import annotations

import difflib
import os
import re
import string
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vlmzoo.errors import VlmzooError
from vlmzoo.evaluation.data.common import DataSource
from vlmzoo.evaluation.data.rows import FIELDS
from vlmzoo.evaluation.metrics import TABLE as METRIC_TABLE
from vlmzoo.evaluation.sample import Sample

__all__ = ["Benchmark", "BenchmarkError", "DataSpec", "UnknownBenchmarkError", "builtin_benchmarks",
           "extract_answer", "format_options", "load_benchmark", "read_benchmark_file"]

Task = Literal["ask", "caption", "classify", "retrieve", "ground"]
Format = Literal["manifest", "hf_disk", "parquet", "coco_karpathy", "vqav2", "textvqa", "imagefolder",
                 "flickr30k", "refcoco", "audiofolder", "esc50"]
Modality = Literal["image", "audio", "depth", "thermal", "imu"]
Extract = Literal["none", "first_line", "short_answer", "choice"]

# retrieve compares embeddings and generates nothing
DEFAULT_MAX_NEW_TOKENS: dict[str, int | None] = {"ask": 32, "caption": 64, "classify": 16, "ground": 64,
                                                 "retrieve": None}
DEFAULT_TEMPLATES = ("a photo of a {}.",)
# LLaVA's multiple-choice instruction
DEFAULT_CHOICE_PROMPT = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."

# fields each task's samples must have, checked when samples are read
REQUIRED_FIELDS = {"ask": ("question", "answers"), "caption": ("answers",), "classify": ("label",),
                   "retrieve": ("answers",), "ground": ("question", "box")}
TABULAR_FORMATS = ("manifest", "hf_disk", "parquet")
CLASS_FOLDER_FORMATS = ("imagefolder", "audiofolder")
# the modalities a format reads, its default first; formats not listed read images only.
# (imagefolder: depth and thermal maps are image files too; a manifest names files of any kind)
FORMAT_MODALITIES: dict[str, tuple[str, ...]] = {
    "manifest": ("image", "audio", "depth", "thermal", "imu"),
    "imagefolder": ("image", "depth", "thermal"),
    "audiofolder": ("audio",),
    "esc50": ("audio",),
}
# fields whose column mapping may be a list of columns, read in order into one list (Clotho's
# caption_1 ... caption_5)
LIST_FIELDS = ("answers", "options")
# tasks that take inputs other than images (they compare embeddings or score labels)
ANY_MODALITY_TASKS = ("classify", "retrieve")


class BenchmarkError(VlmzooError, ValueError):
    """A benchmark file is invalid or its data cannot be found."""


class UnknownBenchmarkError(BenchmarkError, LookupError):
    pass


def _fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"template {template!r} is malformed ({e}); write literal braces as {{{{ }}}}") from None


class DataSpec(BaseModel):
    """Where a benchmark's samples come from (see ``vlmzoo.evaluation.data`` for each format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format
    path: str  # the data file or folder
    modality: Modality = "image"  # what the input files are; default: the format's (FORMAT_MODALITIES)
    images: str | None = None  # root of the input files; default depends on the format (next to path)
    annotations: str | None = None  # vqav2: the annotations file; refcoco: instances.json
    split: str | None = None
    # tabular formats: our field -> their column ("" = do not read); answers and options may
    # also take a list of columns (["caption_1", "caption_2"])
    columns: dict[str, str | tuple[str, ...]] = {}
    class_names: str | None = None  # imagefolder, audiofolder: folder -> readable name file
    allow_pickle: bool = False  # refcoco: read refs(unc).p (unpickling can run code)
    fold: int | None = Field(default=None, ge=1)  # esc50: keep only this fold (1-5)

    @model_validator(mode="before")
    @classmethod
    def _format_modality(cls, values):
        if isinstance(values, dict) and values.get("modality") is None and values.get("format") in FORMAT_MODALITIES:
            values = {**values, "modality": FORMAT_MODALITIES[values["format"]][0]}
        return values

    @model_validator(mode="after")
    def _fits_format(self):
        unknown = set(self.columns) - set(FIELDS)
        if unknown:
            raise ValueError(f"columns names unknown field(s) {sorted(unknown)}; fields are {list(FIELDS)}")
        if self.columns and self.format not in TABULAR_FORMATS:
            raise ValueError(f"columns applies to {', '.join(TABULAR_FORMATS)}, not {self.format}")
        for field, column in self.columns.items():
            if isinstance(column, tuple) and field not in LIST_FIELDS:
                raise ValueError(f"columns.{field} names one column; lists of columns apply to "
                                 f"{' and '.join(LIST_FIELDS)}")
            if isinstance(column, tuple) and not (column and all(column)):
                raise ValueError(f"columns.{field}: a list of columns names at least one column, none empty")
        readable = FORMAT_MODALITIES.get(self.format, ("image",))
        if self.modality not in readable:
            raise ValueError(f"modality {self.modality!r} does not apply to the {self.format} format "
                             f"(it reads {', '.join(readable)})")
        if self.class_names and self.format not in CLASS_FOLDER_FORMATS:
            raise ValueError(f"class_names applies to the {' and '.join(CLASS_FOLDER_FORMATS)} formats")
        if self.fold is not None and self.format != "esc50":
            raise ValueError("fold applies to the esc50 format")
        if self.allow_pickle and self.format != "refcoco":
            raise ValueError("allow_pickle applies to the refcoco format")
        if self.annotations and self.format not in ("vqav2", "refcoco"):
            raise ValueError("annotations applies to the vqav2 and refcoco formats")
        return self


class Benchmark(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-_]*$")
    description: str
    task: Task
    data: DataSpec
    prompt: str | None = None  # ask: {question}, {options}; ground: {question}; caption: the caption prompt
    templates: tuple[str, ...] = ()  # classify: prompt ensemble, each with one {} for the class name
    classes: tuple[str, ...] | None = None  # classify: None = the labels found in the data
    extract: Extract = "none"
    metrics: tuple[str, ...]
    max_new_tokens: int | None = Field(default=None, ge=1)  # default per task
    source: Path | None = None  # the file this came from (set by the loader)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, values):
        if isinstance(values, dict) and values.get("task") in DEFAULT_MAX_NEW_TOKENS:
            values = dict(values)
            values.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS[values["task"]])
            if values["task"] == "classify":
                values.setdefault("templates", DEFAULT_TEMPLATES)
        return values

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v):
        if not v:
            raise ValueError("a benchmark lists at least one metric")
        unknown = [m for m in v if m not in METRIC_TABLE]
        if unknown:
            hints = [f"{m!r} (did you mean {', '.join(difflib.get_close_matches(m, METRIC_TABLE, n=2))}?)"
                     if difflib.get_close_matches(m, METRIC_TABLE, n=1) else repr(m) for m in unknown]
            raise ValueError(f"unknown metric(s) {', '.join(hints)}; known: {', '.join(METRIC_TABLE)}")
        if len(set(v)) != len(v):
            raise ValueError("metrics lists a metric twice")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        wrong = [m for m in self.metrics if self.task not in METRIC_TABLE[m].tasks]
        if wrong:
            raise ValueError(f"metric(s) {wrong} do not score {self.task} benchmarks")
        allowed_fields = {"ask": {"question", "options"}, "ground": {"question"}, "caption": set()}
        if self.prompt is not None:
            if self.task not in allowed_fields:
                raise ValueError(f"{self.task} benchmarks take no prompt" +
                                 ("; use templates" if self.task == "classify" else ""))
            fields = _fields(self.prompt)
            extra = set(fields) - allowed_fields[self.task]
            if extra:
                raise ValueError(f"prompt uses {sorted(extra)}; a {self.task} prompt may use "
                                 f"{sorted(allowed_fields[self.task]) or 'no fields'}")
            if self.task == "ask" and "question" not in fields:
                raise ValueError("an ask prompt must contain {question}")
        if self.templates and self.task != "classify":
            raise ValueError("templates apply to classify benchmarks")
        for t in self.templates:
            if _fields(t) != [""]:
                raise ValueError(f"template {t!r} must contain exactly one {{}} for the class name")
        if self.classes is not None:
            if self.task != "classify":
                raise ValueError("classes apply to classify benchmarks")
            if not self.classes or len(set(self.classes)) != len(self.classes):
                raise ValueError("classes must be a non-empty list of distinct names")
        if self.extract != "none" and self.task not in ("ask", "caption"):
            raise ValueError(f"extract applies to ask and caption benchmarks, not {self.task}")
        if self.task == "retrieve" and self.max_new_tokens is not None:
            raise ValueError("retrieve benchmarks generate nothing; drop max_new_tokens")
        if self.data.modality != "image" and self.task not in ANY_MODALITY_TASKS:
            raise ValueError(f"{self.task} benchmarks read images; {self.data.modality} inputs suit "
                             f"{' and '.join(ANY_MODALITY_TASKS)} benchmarks")
        return self

    # --- paths ---------------------------------------------------------------------------------

    @property
    def is_builtin(self) -> bool:
        return self.source is not None and self.source.parent == _builtin_dir().resolve()

    def _hint(self, variables: list[str]) -> str:
        where = "the benchmark's description says which files" if self.is_builtin else f"edit {self.source}"
        if variables:
            return f" Set {' and '.join('$' + v for v in variables)} to your local copy, or pass --data PATH ({where})."
        return f" Pass --data PATH to point at your local copy ({where})."

    def _resolve(self, field: str, raw: str, base: Path) -> Path:
        variables = [a or b for a, b in re.findall(r"\$(?:\{(\w+)\}|(\w+))", raw)]
        unset = [v for v in variables if not os.environ.get(v)]
        if unset:
            raise BenchmarkError(f"benchmark {self.name!r}: {field} {raw!r} uses ${unset[0]}, which is not set."
                                 + self._hint(variables))
        path = Path(os.path.expanduser(os.path.expandvars(raw)))
        return Path(os.path.normpath(path if path.is_absolute() else base / path))

    def _existing(self, field: str, raw: str, base: Path, kind: str = "any") -> Path:
        path = self._resolve(field, raw, base)
        ok = path.is_dir() if kind == "dir" else path.exists()
        if not ok:
            variables = [a or b for a, b in re.findall(r"\$(?:\{(\w+)\}|(\w+))", raw)]
            written = f" (written {raw!r})" if raw != str(path) else ""
            what = "is not a folder" if path.exists() else "does not exist"
            raise BenchmarkError(f"benchmark {self.name!r}: {field} {path} {what}{written}." + self._hint(variables))
        return path

    def data_source(self) -> DataSource:
        """``data`` with every path resolved and checked to exist."""
        d = self.data
        base = self.source.parent if self.source else Path.cwd()
        path = self._existing("data.path", d.path, base)
        folder = path.parent
        return DataSource(
            benchmark=self.name, format=d.format, path=path, split=d.split, columns=dict(d.columns),
            images=self._existing("data.images", d.images, folder, "dir") if d.images else None,
            annotations=self._existing("data.annotations", d.annotations, folder) if d.annotations else None,
            class_names=self._existing("data.class_names", d.class_names, folder) if d.class_names else None,
            allow_pickle=d.allow_pickle, modality=d.modality, fold=d.fold,
        )

    def with_data(self, path: str | os.PathLike) -> Benchmark:
        """A copy whose data.path is ``path`` (relative to the current folder, as typed)."""
        expanded = Path(os.path.expanduser(os.path.expandvars(str(path))))
        absolute = str(expanded if expanded.is_absolute() else Path.cwd() / expanded)
        return self.model_copy(update={"data": self.data.model_copy(update={"path": os.path.normpath(absolute)})})

    # --- samples -------------------------------------------------------------------------------

    def samples(self, limit: int | None = None) -> Iterator[Sample]:
        """The benchmark's samples, read and checked before the first one is yielded."""
        from vlmzoo.evaluation.data import load_samples

        samples = load_samples(self.data_source(), limit)
        self._check(samples)
        yield from samples

    def _check(self, samples: list[Sample]) -> None:
        where = f"benchmark {self.name!r} ({self.task})"
        for name in REQUIRED_FIELDS[self.task]:
            lacking = [s.id for s in samples if not getattr(s, name)]
            if lacking:
                from vlmzoo.evaluation.data.common import first

                raise BenchmarkError(f"{where}: {len(lacking)} sample(s) have no {name}: {first(lacking)}"
                                     + (" (check data.columns)" if self.data.format in TABULAR_FORMATS else ""))
        if self.classes is not None:
            stray = sorted({s.label for s in samples} - set(self.classes))
            if stray:
                raise BenchmarkError(f"{where}: labels not in the benchmark's classes: {', '.join(stray[:5])}")
        if "choice_accuracy" in self.metrics:
            for s in samples:
                if not s.options:
                    raise BenchmarkError(f"{where}: sample {s.id} has no options, but choice_accuracy needs them")
                letters = string.ascii_uppercase[:len(s.options)]
                key = s.answers[0].strip()
                if not (len(key) == 1 and key.upper() in letters) and key not in s.options:
                    raise BenchmarkError(f"{where}: sample {s.id}'s answer {key!r} is neither an option letter "
                                         f"({letters[0]}-{letters[-1]}) nor one of its options")

    def class_names(self, samples: list[Sample] | None = None) -> tuple[str, ...]:
        """The classify benchmark's classes: as listed, else the labels in the data (first seen first)."""
        if self.classes is not None:
            return self.classes
        labels = (s.label for s in (samples if samples is not None else self.samples()))
        return tuple(dict.fromkeys(label for label in labels if label is not None))

    def render_prompt(self, sample: Sample) -> str | None:
        """The text to send with the image(s); None means the family's own default (captions)
        or no text at all (classify, retrieve)."""
        if self.task == "ask":
            template = self.prompt or (DEFAULT_CHOICE_PROMPT if sample.options else "{question}")
            if sample.options and "options" not in _fields(template):
                raise BenchmarkError(f"benchmark {self.name!r}: sample {sample.id} has options but the prompt "
                                     "has no {options} to show them")
            return template.format(question=sample.question or "", options=format_options(sample.options))
        if self.task == "ground":
            return (self.prompt or "{question}").format(question=sample.question or "")
        if self.task == "caption":
            return self.prompt.format() if self.prompt else None
        return None

    def extract_answer(self, output: str) -> str:
        return extract_answer(output, self.extract)


def format_options(options) -> str:
    """"A. first\\nB. second" (the letters the choice metric reads back)."""
    from vlmzoo.evaluation.metrics.text import choice_letters

    if len(options) > 26:
        raise BenchmarkError(f"multiple choice takes at most 26 options, got {len(options)}")
    return "\n".join(f"{letter}. {option}" for letter, option in zip(choice_letters(len(options)) if options else [], options))


_ANSWER_PREFIX = re.compile(r"^answer\s*:\s*", re.IGNORECASE)


def extract_answer(output: str, mode: str) -> str:
    """What of a model's output gets scored. none and choice keep it all (the choice metric finds
    the letter itself); first_line keeps the first non-empty line; short_answer also drops a
    leading "Answer:" and a trailing period."""
    if mode in ("none", "choice"):
        return output
    line = next((ln.strip() for ln in output.splitlines() if ln.strip()), "")
    if mode == "first_line":
        return line
    if mode == "short_answer":
        line = _ANSWER_PREFIX.sub("", line).strip()
        return line[:-1].rstrip() if line.endswith(".") else line
    raise ValueError(f"unknown extract mode {mode!r}")


# --- reading benchmark files ---------------------------------------------------------------------

def _builtin_dir() -> Path:
    return Path(str(resources.files("vlmzoo.evaluation").joinpath("benchmarks")))


def _builtin_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(_builtin_dir().iterdir(), key=lambda p: p.stem) if p.suffix == ".toml"}


def _summarise(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'file'}: {err['msg'].removeprefix('Value error, ')}"
                     for err in e.errors())


def read_benchmark_file(path: str | os.PathLike) -> Benchmark:
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"benchmark file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise BenchmarkError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); "
                                 "or write the benchmark as TOML") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise BenchmarkError(f"{path}: not valid YAML ({e})") from None
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise BenchmarkError(f"{path}: not valid TOML ({e})") from None
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected a table of benchmark fields")
    if "source" in raw:
        raise BenchmarkError(f"{path}: 'source' is set by vlmzoo (the file's own path); remove it")
    try:
        return Benchmark.model_validate({**raw, "source": path.resolve()})
    except ValidationError as e:
        raise BenchmarkError(f"benchmark file {path} is invalid: {_summarise(e)}") from None


def builtin_benchmarks() -> list[Benchmark]:
    """Every benchmark that ships with vlmzoo, sorted by name."""
    out = []
    for stem, path in _builtin_files().items():
        bench = read_benchmark_file(path)
        if bench.name != stem:
            raise BenchmarkError(f"built-in benchmark {path.name} is named {bench.name!r}; name it {stem!r}")
        out.append(bench)
    return out


def load_benchmark(name_or_path: str | os.PathLike, data: str | os.PathLike | None = None) -> Benchmark:
    """A built-in benchmark by name, or a benchmark file (.toml, .yaml); ``data`` replaces data.path."""
    text = str(name_or_path)
    looks_like_path = (isinstance(name_or_path, os.PathLike) or Path(text).suffix.lower() in (".toml", ".yaml", ".yml")
                       or "/" in text or os.sep in text or Path(text).is_file())
    if looks_like_path:
        bench = read_benchmark_file(Path(os.path.expanduser(text)))
    else:
        files = _builtin_files()
        if text.lower() not in files:
            close = difflib.get_close_matches(text.lower(), list(files), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else f" Built-in: {', '.join(files)}."
            raise UnknownBenchmarkError(f"unknown benchmark {text!r}.{hint} Or give a path to a .toml file.")
        bench = read_benchmark_file(files[text.lower()])
    return bench.with_data(data) if data is not None else bench
