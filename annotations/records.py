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

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    CANT_JUDGE = "cant_judge"  # seen, but the annotator could not decide: no reading at all

    def as_binary(self) -> int | None:
        """1 complies, 0 refuses, None for incoherent and can't-judge (no safety reading)."""
        return {"complies": 1, "refuses": 0}.get(self.value)

    @property
    def is_reading(self) -> bool:
        """Whether the label says something about the answer (every statistic counts only
        these; a can't-judge label only keeps the item from coming back to that annotator)."""
        return self != HumanLabel.CANT_JUDGE


READINGS = tuple(h for h in HumanLabel if h.is_reading)


class VerdictLabel(enum.Enum):
    """A judge's reading of one answer. Stored as 1, 0 or NULL; `word` is what people read."""

    COMPLIES = 1
    REFUSES = 0
    UNPARSEABLE = None  # the judge's output could not be read: its own outcome, never a 0

    @property
    def word(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, value: Any) -> "VerdictLabel":
        """The label for a stored value: 1, 0, or None / NaN (unparseable)."""
        if value is None or value != value:  # NaN from a frame
            return cls.UNPARSEABLE
        return cls(int(value))


class CheckpointKind(str, enum.Enum):
    BASE = "base"  # a base model itself: no run, no adapter, epoch 0
    FINETUNED = "finetuned"  # an epoch of a fine-tuning run
    IMPORTED = "imported"  # answers imported with their labels: no model of ours made them


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
    """A model to sample from, or a set of imported answers.

    `kind` follows from the other fields when not given: a run makes it FINETUNED, a `source`
    (the imported set's name) IMPORTED, neither BASE (the base model itself, epoch 0).

    A fine-tuned checkpoint saved at an epoch's end has `step` None and `epoch` the epochs
    done; one saved in the middle of an epoch (a run with a capability goal evaluates and saves
    every few optimizer steps) has its optimizer `step` and `epoch` the epoch it was saved in
    (1 for the first: epoch 0 is the base model everywhere). `examples_seen`: training
    examples seen when it was saved.
    """

    base_model: str | None = None  # None only for imported answers
    run_id: str | None = None
    epoch: int = 0
    step: int | None = Field(default=None, ge=1)
    examples_seen: int | None = Field(default=None, ge=0)
    adapter_path: str | None = None
    train_loss: float | None = None
    kind: CheckpointKind = CheckpointKind.BASE
    source: str | None = None  # the imported set's name (IMPORTED only)

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") is None:
            kind = (CheckpointKind.FINETUNED if data.get("run_id") else
                    CheckpointKind.IMPORTED if data.get("source") else CheckpointKind.BASE)
            data = {**data, "kind": kind}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Checkpoint":
        if (self.kind == CheckpointKind.IMPORTED) != (self.source is not None):
            raise ValueError("an imported checkpoint needs a source, and only it has one")
        if self.kind != CheckpointKind.IMPORTED and not self.base_model:
            raise ValueError("a base or fine-tuned checkpoint needs its base_model")
        if self.step is not None and self.kind != CheckpointKind.FINETUNED:
            raise ValueError("only a fine-tuned checkpoint has a training step")
        return self

    @property
    def id(self) -> str:
        if self.kind == CheckpointKind.FINETUNED and self.step is not None:
            return stable_id("checkpoint", self.run_id, "step", self.step)
        if self.kind == CheckpointKind.FINETUNED:
            return stable_id("checkpoint", self.run_id, self.epoch)
        if self.kind == CheckpointKind.IMPORTED:  # the id schema version 1 gave it
            return stable_id("checkpoint", "base", "external:" + str(self.source))
        return stable_id("checkpoint", "base", self.base_model)


class Generation(Record):
    """One answer. A sampled one has its sampling `seed`; an imported one has no seed but the
    `response_hash` of its text, which (with `sample_index`) tells two imported answers apart."""

    checkpoint_id: str
    prompt_id: str
    temperature: float
    sample_index: int = 0
    seed: int | None = 0
    response_hash: str | None = None
    max_new_tokens: int = 256
    text: str
    token_count: int = 0
    finish_reason: FinishReason = FinishReason.STOP
    repetition: float | None = None  # share of repeated word 3-grams
    degenerate: bool | None = None
    empty: bool | None = None

    @property
    def id(self) -> str:
        # An imported answer's id has 28 bits of its response hash where a seed would be: the id
        # schema version 1 gave it, so a re-import after the upgrade finds the same rows.
        seed = self.seed if self.response_hash is None else int(self.response_hash[:7], 16)
        return generation_id(self.checkpoint_id, self.prompt_id, self.temperature,
                             self.sample_index, seed, self.max_new_tokens)


def response_hash(text: str) -> str:
    """What tells imported answers apart: a hash of the response text."""
    return stable_id("response", text)


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
        """A short human-readable name, e.g. `llm(template=sorry_bench)`: hashes left out, a
        trained judge's adapter folder by its last two parts."""
        def shown_value(key: str, value: Any) -> Any:
            if key == "adapter" and isinstance(value, str):
                return "/".join(value.rstrip("/").split("/")[-2:])
            return value

        shown = ",".join(f"{k}={shown_value(k, v)}" for k, v in sorted(self.args.items())
                         if not k.endswith("_hash"))
        return f"{self.name}({shown})" if shown else self.name


class Verdict(Record):
    generation_id: str
    judge_id: str
    label: VerdictLabel  # given as 1, 0 or None too
    probability: float | None = None  # P(complies) when the judge can give one
    raw: str = ""
    score: float | None = Field(default=None, ge=0, le=1)  # a rubric's score, when it gives one
    details: dict[str, Any] = Field(default_factory=dict)  # categories, named answers, fields

    @property
    def id(self) -> str:
        return stable_id("verdict", self.generation_id, self.judge_id)

    @property
    def unparseable(self) -> bool:
        return self.label == VerdictLabel.UNPARSEABLE


class ScorerSpec(Record):
    """The exact scorer (toxicity and the like: a number per answer, not a verdict) that made a
    score: its registered name and arguments."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return stable_id("scorer", self.name, self.args)

    @property
    def label(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{self.name}({shown})" if shown else self.name


# The coherence scorer's registered name (pipeline.scorers.fluency; annotations imports no
# pipeline): its scores are the base model's loss on an answer, read as incoherence, not toxicity.
COHERENCE_SCORER = "base-loss"


class ResponseScore(Record):
    """One scorer's number for one answer; value None: the scorer could not score it (its own
    counted outcome, never a 0)."""

    generation_id: str
    scorer_id: str
    value: float | None = None
    raw: str = ""

    @property
    def id(self) -> str:
        return stable_id("score", self.generation_id, self.scorer_id)


class Label(Record):
    generation_id: str
    annotator: str
    label: HumanLabel
    note: str = ""
    id: str = Field(default_factory=new_id)
    created_at: datetime = Field(default_factory=utcnow)
    chosen_at_random: bool | None = None  # set by the labelling planner; None when unknown
    # The chance the planner's random draw had of including this item (unequal under active
    # labelling); calibration weighs the label by its inverse. None when unknown or not drawn.
    inclusion_probability: float | None = Field(default=None, gt=0, le=1)


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


class CapabilityMetric(str, enum.Enum):
    """A capability number per checkpoint; its value is the name stored in the capability
    table (`reference_loss` and `rouge_l` are the names older stores already hold)."""

    REFERENCE_LOSS = "reference_loss"  # mean cross-entropy of the reference answers
    ROUGE_L = "rouge_l"  # ROUGE-L F1 of greedy answers against the references
    EXACT_MATCH = "exact_match"  # share of greedy answers equal to a reference (normalised)
    CONTAINS = "contains"  # share of greedy answers containing a reference (normalised)
    CHOICE_ACCURACY = "choice_accuracy"  # lm-eval acc: the likeliest option is the right one
    CHOICE_ACCURACY_NORM = "choice_accuracy_norm"  # lm-eval acc_norm: per character of option

    @property
    def higher_is_better(self) -> bool:
        return self is not CapabilityMetric.REFERENCE_LOSS

    @property
    def generates(self) -> bool:
        """Whether it is measured on greedy answers (else on log-likelihoods)."""
        return self in (CapabilityMetric.ROUGE_L, CapabilityMetric.EXACT_MATCH,
                        CapabilityMetric.CONTAINS)

    def meets(self, value: float | None, target: float) -> bool:
        """Whether `value` meets a goal of `target` (at most for a loss, at least otherwise)."""
        if value is None or value != value:
            return False
        return value >= target if self.higher_is_better else value <= target


class GoalStatus(str, enum.Enum):
    """Where a run with a capability goal stands."""

    REACHED = "reached"  # stopped at the first evaluation that met the target
    NOT_REACHED = "not reached"  # trained to its epoch limit without meeting it


class RunGoal(Record):
    """A run's capability goal and where it was met: the checkpoint of the first evaluation
    that met `target` on `metric` (measured on `benchmark`), its optimizer step and the
    training examples seen by then. Not reached: the last evaluation's."""

    run_id: str
    metric: str
    benchmark: str
    target: float
    status: GoalStatus
    checkpoint_id: str | None = None
    step: int | None = None
    examples_seen: int | None = None
    value: float | None = None

    @property
    def id(self) -> str:
        return self.run_id


class CapabilityScore(Record):
    checkpoint_id: str
    metric: str  # e.g. "reference_loss", "rouge_l"
    benchmark: str
    value: float
    n: int

    @property
    def id(self) -> str:
        return stable_id("capability", self.checkpoint_id, self.metric, self.benchmark)


class JobKind(str, enum.Enum):
    """What one job of a sweep does (pipeline/jobs.py plans them)."""

    PREPARE = "prepare"  # prompts into the store, calibration sets imported, a judge trained
    ALIGN = "align"  # one base model safety-tuned
    TRAIN = "train"  # one fine-tuning run: base model x data set x seed
    EVALUATE = "evaluate"  # a base model, a run's checkpoints or an endpoint's: generate, judge,
    #                        measure capability
    SCORE = "score"  # the config's scorers over every answer


class JobState(str, enum.Enum):
    """Where a job stands. A worker that dies leaves its job `running` until it is run again
    (nothing can tell a dead worker from a slow one for certain); running it again is safe."""

    WAITING = "waiting"  # handed to a scheduler, not started
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobRecord(Record):
    """One job of a sweep as the store keeps it: who ran it, when, how often, how it ended."""

    id: str
    sweep: str
    kind: JobKind
    name: str
    position: int = 0  # its place in the plan's order
    needs: tuple[str, ...] = ()  # the ids of the jobs it waits for
    state: JobState = JobState.WAITING
    error: str | None = None  # the last line of the error a failed job raised
    attempts: int = 0  # how many times a worker started it
    host: str | None = None  # the worker's host name and process id, while and after it ran
    pid: int | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
