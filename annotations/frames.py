"""The store's frames as the statistics read them, and the helpers every statistic shares.

`Frames` holds the verdicts, labels, checkpoints, capability scores and (optionally) generations
as plain frames; every statistic takes `source`, a `Store` or a `Frames`, and calls `frames_of`.
`generation_items` gives one row per generation with its checkpoint's and prompt's attributes;
`select_outcomes` keeps the verdicts on one kind of prompt (and category subset).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from annotations.records import CheckpointKind, HumanLabel, JudgeSpec, PromptKind
from annotations.store import Store

# An estimate from fewer items than this is shown as "too few to read", not as a number: with
# three items a rate's bootstrap interval can read "1 [1, 1]", which looks certain and is not.
MIN_ITEMS = 10

OUTCOME_COLUMNS = ["generation_id", "judge_id", "judge_name", "outcome", "probability", "score",
                   "checkpoint_id", "prompt_id", "temperature", "sample_index", "degenerate",
                   "empty", "repetition", "base_model", "run_id", "epoch", "step",
                   "examples_seen", "checkpoint_kind",
                   "import_source", "seed", "dataset", "benchmark", "kind", "category_id",
                   "category"]
LABEL_COLUMNS = ["generation_id", "annotator", "label", "chosen_at_random",
                 "inclusion_probability"]


@dataclass(frozen=True)
class Frames:
    """The store's frames the statistics read; build it from plain frames or `from_store`.
    `generations` (the store's generations_frame without text) is optional: it lets labelled
    answers that no judge has seen yet count for the people-only statistics. `scores` (the
    store's scores_frame) is what the toxicity table reads."""

    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)
    labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    checkpoints: pd.DataFrame = field(default_factory=pd.DataFrame)
    capability: pd.DataFrame = field(default_factory=pd.DataFrame)
    generations: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # scorers' (toxicity) per answer
    goals: pd.DataFrame = field(default_factory=pd.DataFrame)  # runs' capability goals

    @classmethod
    def from_store(cls, store: Store) -> "Frames":
        return cls(store.outcomes_frame(), store.labels_frame(current=True),
                   store.checkpoints_frame(), store.capability_frame(),
                   store.generations_frame(with_text=False), store.scores_frame(),
                   store.goals_frame())

    def __post_init__(self) -> None:
        outcomes = with_columns(self.outcomes, OUTCOME_COLUMNS)
        outcomes["outcome"] = pd.to_numeric(outcomes["outcome"]).astype(float)
        outcomes["seed"] = pd.to_numeric(outcomes["seed"]).astype(float)
        # judge_name becomes the one name every view shows (judge_names), once
        outcomes["judge_name"] = outcomes["judge_id"].map(judge_names(outcomes))
        outcomes = outcomes.drop(columns=["judge_args"], errors="ignore")
        outcomes["checkpoint_kind"] = checkpoint_kinds(outcomes)
        outcomes["checkpoint"] = checkpoint_names(outcomes)
        object.__setattr__(self, "outcomes", outcomes)
        labels = with_columns(self.labels, LABEL_COLUMNS)  # can't-judge labels are no reading
        labels = labels[labels["label"].ne(HumanLabel.CANT_JUDGE.value)].reset_index(drop=True)
        object.__setattr__(self, "labels", labels)


def checkpoint_name(kind: CheckpointKind | str, seed: float | None = None, epoch: int = 0,
                    source: str | None = None, step: float | None = None) -> str:
    """"base", "seed 1 epoch 2", "seed 1 step 12" (saved mid-epoch), or "imported: SOURCE"
    for answers imported with labels."""
    kind = CheckpointKind(kind)
    if kind == CheckpointKind.IMPORTED:
        return f"imported: {source}"
    if kind == CheckpointKind.BASE:
        return "base"
    if step is not None and not pd.isna(step):
        return f"seed {int(seed)} step {int(step)}"
    return f"seed {int(seed)} epoch {int(epoch)}"


def mid_epoch(frame: pd.DataFrame) -> pd.Series:
    """Rows of checkpoints saved in the middle of an epoch (a capability-goal run's): analyses
    over seeds x epochs leave them out, the capability comparisons use them."""
    if "step" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["step"].notna()


def checkpoint_kinds(frame: pd.DataFrame, column: str = "checkpoint_kind") -> pd.Series:
    """Each row's CheckpointKind value; where a frame built by hand lacks it, a run makes it
    fine-tuned and no run the base."""
    derived = frame["run_id"].notna().map({True: CheckpointKind.FINETUNED.value,
                                           False: CheckpointKind.BASE.value})
    given = frame[column] if column in frame else pd.Series(None, index=frame.index)
    return given.where(given.notna(), derived).astype(str)


def checkpoint_names(frame: pd.DataFrame, kind: str = "checkpoint_kind",
                     source: str = "import_source") -> list[str]:
    """checkpoint_name of every row of a frame with the checkpoint's columns; where the frame
    holds several base models, each name says whose it is ("base · Llama-3.2-1B")."""
    sources = frame[source] if source in frame else [None] * len(frame)
    steps = frame["step"] if "step" in frame else [None] * len(frame)
    names = [checkpoint_name(k, s, e, src, st) for k, s, e, src, st in
             zip(checkpoint_kinds(frame, kind), frame["seed"], frame["epoch"], sources, steps)]
    bases = frame["base_model"] if "base_model" in frame else pd.Series(dtype=object)
    if bases.dropna().nunique() < 2:
        return names
    return [n if pd.isna(b) else f"{n} · {model_short_name(b)}" for n, b in zip(names, bases)]


def model_short_name(base_model: str) -> str:
    """The last part of a model's path or hub id: what tells two base models apart to a reader."""
    return str(base_model).rstrip("/").rsplit("/", 1)[-1]


def checkpoint_labels(checkpoints: pd.DataFrame) -> dict[str, str]:
    """Checkpoint id -> checkpoint_name, from the store's checkpoints_frame."""
    if checkpoints.empty:
        return {}
    return dict(zip(checkpoints["id"], checkpoint_names(checkpoints, kind="kind",
                                                        source="source")))


def frames_of(source: Store | Frames) -> Frames:
    return source if isinstance(source, Frames) else Frames.from_store(source)


def with_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy of `frame` with each of `columns` it lacks added, empty."""
    frame = frame.copy()
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    return frame


def judge_names(outcomes: pd.DataFrame) -> dict[str, str]:
    """Judge id -> the name every view shows: the judge's name where no other judge has it;
    where several share it (e.g. two LLM judges), the name with the arguments they differ in
    (`llm(template=harmbench)`), read from `judge_args` when the frame has it; the id's first
    characters where even those are the same."""
    pairs = outcomes.drop_duplicates("judge_id")
    args = [a if isinstance(a, dict) else {} for a in
            (pairs["judge_args"] if "judge_args" in pairs else [None] * len(pairs))]
    names = [str(n) for n in pairs["judge_name"]]
    shown = [_distinct_label(n, a, [b for m, b in zip(names, args) if m == n])
             for n, a in zip(names, args)]
    shared = pd.Series(shown).duplicated(keep=False).tolist()
    return {j: f"{n} [{str(j)[:6]}]" if s else n
            for j, n, s in zip(pairs["judge_id"], shown, shared)}


def _distinct_label(name: str, args: dict, siblings: list[dict]) -> str:
    """`name`, or name(the arguments in which it differs from the judges sharing its name)."""
    if len(siblings) < 2:
        return name
    keys = {k for other in siblings for k in set(other) | set(args)}
    differ = {k: args.get(k) for k in keys if len({repr(o.get(k)) for o in siblings}) > 1}
    return JudgeSpec(name=name, args={k: v for k, v in differ.items() if v is not None}).label


def judge_labels(judges: pd.DataFrame) -> dict[str, str]:
    """judge_names from the store's judges_frame (id, name, args): the same names."""
    return judge_names(judges.rename(columns={"id": "judge_id", "name": "judge_name",
                                              "args": "judge_args"}))


def jsonable(value: Any) -> Any:
    """`value` with nan/inf as None and numpy scalars as Python ones, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with None for missing values (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def select_outcomes(outcomes: pd.DataFrame, kind: PromptKind | None = PromptKind.UNSAFE,
                    categories: Sequence[str] | None = None) -> pd.DataFrame:
    """Verdicts on prompts of one kind (None: all), optionally only in `categories` (ids)."""
    keep = outcomes["kind"].eq(kind) if kind else pd.Series(True, index=outcomes.index)
    if categories is not None:
        keep &= outcomes["category_id"].astype(str).isin([str(c) for c in categories])
    return outcomes[keep]


ITEM_COLUMNS = ["generation_id", "prompt_id", "checkpoint_id", "checkpoint", "base_model",
                "dataset", "run_id", "seed", "epoch", "checkpoint_kind", "import_source",
                "temperature", "sample_index", "category_id",
                "category", "kind", "degenerate", "empty", "benchmark"]


def generation_items(frames: Frames, kind: PromptKind | None = PromptKind.UNSAFE) -> pd.DataFrame:
    """One row per generation with its checkpoint's and prompt's attributes: from `generations`
    when given (judged or not), else from the verdicts (judged generations only)."""
    if frames.generations.empty or frames.checkpoints.empty:
        items = select_outcomes(frames.outcomes, kind)[ITEM_COLUMNS]
        return items.drop_duplicates("generation_id").reset_index(drop=True)
    points = frames.checkpoints.rename(columns={"id": "checkpoint_id", "kind": "checkpoint_kind",
                                                "source": "import_source"})
    points = with_columns(points, ["checkpoint_kind", "import_source"])[
        ["checkpoint_id", "base_model", "run_id", "epoch", "checkpoint_kind", "import_source",
         "seed", "dataset"]]
    items = (select_outcomes(frames.generations, kind)
             .drop(columns=["seed"], errors="ignore")  # the sampling seed, not the run's
             .rename(columns={"id": "generation_id"}).merge(points, on="checkpoint_id"))
    items["seed"] = pd.to_numeric(items["seed"]).astype(float)
    items["checkpoint_kind"] = checkpoint_kinds(items)
    items["checkpoint"] = checkpoint_names(items)
    return with_columns(items, ITEM_COLUMNS)[ITEM_COLUMNS].reset_index(drop=True)
