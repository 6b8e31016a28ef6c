"""The model card schema: what every catalog file must say, and how it is checked.

Cards are TOML files in ``catalog/cards/`` (one per model). Facts carry a source each;
where a seed table was wrong, the card records the corrected value in ``corrections``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlmzoo.tasks import TASKS

Kind = Literal["VLM", "LMM", "multimodal"]
Architecture = Literal[
    "dual encoder", "vision-language bridge", "unified transformer", "cross-modal embedding"
]
Access = Literal["open", "gated", "api"]
Support = Literal["supported", "planned", "unavailable"]
GroundingFormat = Literal[
    "none",
    "kosmos2-patch-index",
    "paligemma-loc",
    "qwen-box",
    "florence2-loc",
    "molmo-point",
    "moondream-region",
    "text-coordinates",
]

# Fact fields: each needs an entry in ``sources``.
FACT_FIELDS = (
    "kind",
    "architecture",
    "vision",
    "text",
    "objective",
    "loss",
    "params_b",
    "token_limit",
    "resolution",
    "training_data",
    "license",
    "access",
    "multi_image",
    "any_resolution",
    "grounding_format",
    "languages",
)


class Price(BaseModel):
    """What an API checkpoint costs, in USD per million tokens, as read from the provider's
    pricing page on ``read_on``. Prices change: the source and date say how old the fact is.

    Some prices rise for long prompts (Gemini 1.5 above 128k tokens): ``long_prompt_tokens``
    is that threshold, with the higher prices beside it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)
    source: str = Field(pattern=r"^https?://")
    read_on: date
    long_prompt_tokens: int | None = Field(default=None, gt=0)
    long_input_per_1m: float | None = Field(default=None, ge=0)
    long_output_per_1m: float | None = Field(default=None, ge=0)
    note: str = ""

    @model_validator(mode="after")
    def _tiers_complete(self):
        tier = (self.long_prompt_tokens, self.long_input_per_1m, self.long_output_per_1m)
        if any(v is not None for v in tier) and any(v is None for v in tier):
            raise ValueError("a long-prompt price needs long_prompt_tokens, long_input_per_1m and long_output_per_1m")
        return self

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one request with these token counts."""
        long = self.long_prompt_tokens is not None and prompt_tokens > self.long_prompt_tokens
        per_in = self.long_input_per_1m if long else self.input_per_1m
        per_out = self.long_output_per_1m if long else self.output_per_1m
        return (prompt_tokens * per_in + completion_tokens * per_out) / 1_000_000


class Checkpoint(BaseModel):
    """One loadable set of weights. ``name`` is a vlmzoo id (``vlmzoo.load(name)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hub_id: str | None = None  # None for API models
    revision: str | None = None  # the hub revision (branch, tag or commit) vlmzoo's code follows
    # files the official code takes from other hub repos, by file name -> repo (moondream2's
    # tokenizer.json comes from moondream/starmie-v1): laid beside the checkpoint's own files
    files_from: dict[str, str] = {}
    # set where the published files cannot be fetched by name as one checkpoint (MiniGPT-4's lie in
    # four places, some on Google Drive): what folder to lay out, said when the name is loaded
    from_folder: str = ""
    params_b: float | None = None
    tasks: tuple[str, ...] | None = None  # narrows the card's tasks for this checkpoint
    note: str = ""
    price: Price | None = None  # API checkpoints only

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v):
        if v is not None:
            unknown = set(v) - set(TASKS)
            if unknown:
                raise ValueError(f"unknown task(s) {sorted(unknown)}; known: {list(TASKS)}")
        return v


class Correction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    seed: str
    corrected: str
    why: str


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    aliases: tuple[str, ...] = ()
    family: str
    support: Support
    kind: Kind
    architecture: Architecture
    vision: str
    text: str
    objective: str
    loss: str
    params_b: float | None = None  # None only for API models whose size is not published
    token_limit: int | None
    resolution: str
    training_data: str
    license: str  # the full text: which license, for what, with caveats
    # what a table shows: the SPDX id where one exists, else "proprietary", "non-commercial" or
    # the license's own short name (Gemma, Llama-2, Llama-3.2, MiniCPM), or "unknown"
    license_short: str = Field(pattern=r"^[A-Za-z0-9.+\-]+( / [A-Za-z0-9.+\-]+)?$", max_length=24)
    access: Access
    tasks: tuple[str, ...]
    multi_image: bool
    any_resolution: bool
    grounding_format: GroundingFormat
    languages: tuple[str, ...]
    checkpoints: tuple[Checkpoint, ...]
    sources: dict[str, str]
    corrections: tuple[Correction, ...] = ()
    notes: str = ""
    # for a model vlmzoo implements itself: the official code (repository@commit, path) it follows
    ported_from: str = ""
    # CPU dtype when the user asks for none; unset means the family's choice
    cpu_dtype: Literal["float32", "bfloat16"] | None = None

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v):
        unknown = set(v) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}; known: {list(TASKS)}")
        if not v:
            raise ValueError("a card lists at least one task")
        return v

    @field_validator("family")
    @classmethod
    def _known_family(cls, v):
        from vlmzoo.families import families

        if v not in families():
            raise ValueError(f"unknown family {v!r}; known families: {sorted(families())}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        missing = [f for f in FACT_FIELDS if f not in self.sources]
        if missing:
            raise ValueError(f"card {self.id!r} has no source for: {', '.join(missing)}")
        if not self.checkpoints:
            raise ValueError(f"card {self.id!r} lists no checkpoints")
        if self.access != "api" and any(c.price is not None for c in self.checkpoints):
            raise ValueError(f"card {self.id!r}: only API checkpoints carry a price")
        if self.access != "api" and any(c.hub_id is None for c in self.checkpoints):
            raise ValueError(f"card {self.id!r}: open/gated checkpoints need a hub_id")
        if self.params_b is None and self.access != "api":
            raise ValueError(f"card {self.id!r}: params_b is required for open models")
        for c in self.checkpoints:
            if c.tasks and not set(c.tasks) <= set(self.tasks):
                raise ValueError(f"checkpoint {c.name!r} lists tasks its card does not")
        from vlmzoo.families import loadable

        if self.support == "supported" and not loadable(self.family):
            raise ValueError(
                f"card {self.id!r} says supported but family {self.family!r} has no code yet"
            )
        return self
