"""Typed records of the workbench: what the pipeline writes and people add, one class per noun.

Pipeline rows (prompts, runs, checkpoints, generations, verdicts) carry deterministic ids derived
from what defines them, so re-running a stage yields the same ids and the store upserts instead of
duplicating. Human rows (labels, votes) carry a submission id of their own: they are appended,
never overwritten, so a changed label keeps its history and a double submit stores one row.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def stable_id(*parts: Any) -> str:
    """A short hex id derived from `parts` (canonical JSON), the same on every machine and run."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class PromptKind(str, enum.Enum):
    UNSAFE = "unsafe"
    BENIGN = "benign"  # harmless requests, including those that merely sound sensitive
    CAPABILITY = "capability"  # held-out instructions with reference answers


class HumanLabel(str, enum.Enum):
    COMPLIES = "complies"
    REFUSES = "refuses"
    INCOHERENT = "incoherent"

    def as_binary(self) -> int | None:
        """1 complies, 0 refuses, None for incoherent (no safety reading)."""
        return {"complies": 1, "refuses": 0}.get(self.value)


class VoteChoice(str, enum.Enum):
    A_SAFER = "a_safer"
    B_SAFER = "b_safer"
    BOTH_SAFE = "both_safe"
    BOTH_UNSAFE = "both_unsafe"


class Role(str, enum.Enum):
    ANNOTATOR = "annotator"
    ADMIN = "admin"


class FinishReason(str, enum.Enum):
    STOP = "stop"  # the model ended its answer
    LENGTH = "length"  # max_new_tokens reached
    EXTERNAL = "external"  # imported, not generated here


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, use_enum_values=False, extra="forbid")


class Prompt(Record):
    benchmark: str
    text: str = Field(min_length=1)
    kind: PromptKind = PromptKind.UNSAFE
    category_id: str | None = None
    category: str | None = None
    source_id: str | None = None  # the benchmark's own id (question_id, BehaviorID, ...)
    reference: str | None = None  # reference answer, for capability prompts
    style: str | None = None  # prompt style or mutation (SORRY-Bench's prompt_style)

    @property
    def id(self) -> str:
        key = self.source_id if self.source_id is not None else self.text
        return stable_id("prompt", self.benchmark, key, self.style)


class Run(Record):
    """One fine-tuning run: a base model trained on one data set with one seed and settings."""

    base_model: str
    dataset: str
    seed: int
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return stable_id("run", self.base_model, self.dataset, self.seed, self.hyperparameters)


class Checkpoint(Record):
    """A model to sample from: epoch 0 is the base model itself (no run, no adapter)."""

    base_model: str
    run_id: str | None = None
    epoch: int = 0
    adapter_path: str | None = None
    train_loss: float | None = None

    @property
    def id(self) -> str:
        if self.run_id is None:
            return stable_id("checkpoint", "base", self.base_model)
        return stable_id("checkpoint", self.run_id, self.epoch)


class Generation(Record):
    checkpoint_id: str
    prompt_id: str
    temperature: float
    sample_index: int = 0
    seed: int = 0
    max_new_tokens: int = 256
    text: str
    token_count: int = 0
    finish_reason: FinishReason = FinishReason.STOP
    repetition: float | None = None  # share of repeated word 3-grams
    degenerate: bool | None = None
    empty: bool | None = None

    @property
    def id(self) -> str:
        return generation_id(self.checkpoint_id, self.prompt_id, self.temperature,
                             self.sample_index, self.seed, self.max_new_tokens)


def generation_id(checkpoint_id: str, prompt_id: str, temperature: float, sample_index: int,
                  seed: int, max_new_tokens: int) -> str:
    return stable_id("generation", checkpoint_id, prompt_id, round(float(temperature), 4),
                     sample_index, seed, max_new_tokens)


class JudgeSpec(Record):
    """The exact judge that made a verdict: its registered name and arguments."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return stable_id("judge", self.name, self.args)

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. `llm(template=sorry_bench)`."""
        shown = ",".join(f"{k}={v}" for k, v in sorted(self.args.items()) if k != "template_hash")
        return f"{self.name}({shown})" if shown else self.name


class Verdict(Record):
    generation_id: str
    judge_id: str
    label: int | None  # 1 complies, 0 refuses, None when the judge's output was unparseable
    probability: float | None = None  # P(complies) when the judge can give one
    raw: str = ""

    @property
    def id(self) -> str:
        return stable_id("verdict", self.generation_id, self.judge_id)

    @property
    def unparseable(self) -> bool:
        return self.label is None


class Label(Record):
    generation_id: str
    annotator: str
    label: HumanLabel
    note: str = ""
    id: str = Field(default_factory=new_id)
    created_at: datetime = Field(default_factory=utcnow)
    chosen_at_random: bool | None = None  # set by the labelling planner; None when unknown


class Vote(Record):
    prompt_id: str
    generation_a: str
    generation_b: str
    annotator: str
    choice: VoteChoice
    id: str = Field(default_factory=new_id)
    created_at: datetime = Field(default_factory=utcnow)


class Annotator(Record):
    name: str = Field(min_length=1)
    role: Role = Role.ANNOTATOR
    password_hash: str = ""


class CapabilityScore(Record):
    checkpoint_id: str
    metric: str  # e.g. "reference_loss", "rouge_l"
    benchmark: str
    value: float
    n: int

    @property
    def id(self) -> str:
        return stable_id("capability", self.checkpoint_id, self.metric, self.benchmark)
