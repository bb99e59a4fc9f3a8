"""The store's frames as the statistics read them, and the helpers every statistic shares.

`Frames` holds the verdicts, labels, checkpoints, capability scores and (optionally) generations
as plain frames; every statistic takes `source`, a `Store` or a `Frames`, and calls `frames_of`.
`generation_items` gives one row per generation with its checkpoint's and prompt's attributes;
`select_outcomes` keeps the verdicts on one kind of prompt (and category subset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from annotations.store import Store

# Responses imported with their labels (run.py import labelled, a sweep's `calibration:`) sit under a
# pseudo base model of this prefix: no seed, no epoch, never part of a sweep's epoch lines.
IMPORTED_PREFIX = "external:"

OUTCOME_COLUMNS = ["generation_id", "judge_id", "judge_name", "outcome", "probability",
                   "checkpoint_id", "prompt_id", "temperature", "sample_index", "degenerate",
                   "empty", "repetition", "base_model", "run_id", "epoch", "seed", "dataset",
                   "benchmark", "kind", "category_id", "category"]
LABEL_COLUMNS = ["generation_id", "annotator", "label", "chosen_at_random"]


@dataclass(frozen=True)
class Frames:
    """The store's frames the statistics read; build it from plain frames or `from_store`.
    `generations` (the store's generations_frame without text) is optional: it lets labelled
    answers that no judge has seen yet count for the people-only statistics."""

    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)
    labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    checkpoints: pd.DataFrame = field(default_factory=pd.DataFrame)
    capability: pd.DataFrame = field(default_factory=pd.DataFrame)
    generations: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def from_store(cls, store: Store) -> "Frames":
        return cls(store.outcomes_frame(), store.labels_frame(current=True),
                   store.checkpoints_frame(), store.capability_frame(),
                   store.generations_frame(with_text=False))

    def __post_init__(self) -> None:
        outcomes = with_columns(self.outcomes, OUTCOME_COLUMNS)
        outcomes["outcome"] = pd.to_numeric(outcomes["outcome"]).astype(float)
        outcomes["seed"] = pd.to_numeric(outcomes["seed"]).astype(float)
        outcomes["checkpoint"] = _checkpoint_names(outcomes)
        object.__setattr__(self, "outcomes", outcomes)
        object.__setattr__(self, "labels", with_columns(self.labels, LABEL_COLUMNS))


def is_imported(base_model: object) -> bool:
    """Whether a checkpoint's base model stands for imported responses, not a model."""
    return isinstance(base_model, str) and base_model.startswith(IMPORTED_PREFIX)


def checkpoint_name(seed: float | None, epoch: int, base_model: str | None = None) -> str:
    """"base", "seed 1 epoch 2", or "imported: SOURCE" for responses imported with labels."""
    if is_imported(base_model):
        return "imported: " + base_model[len(IMPORTED_PREFIX):]
    return "base" if pd.isna(seed) or epoch == 0 else f"seed {int(seed)} epoch {int(epoch)}"


def _checkpoint_names(frame: pd.DataFrame) -> list[str]:
    return [checkpoint_name(s, e, b)
            for s, e, b in zip(frame["seed"], frame["epoch"], frame["base_model"])]


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
    """Judge id -> name to show; a name two judges share gets the id's first characters."""
    pairs = outcomes[["judge_id", "judge_name"]].drop_duplicates("judge_id")
    shared = pairs["judge_name"].duplicated(keep=False)
    return {j: f"{n} [{str(j)[:6]}]" if s else str(n)
            for j, n, s in zip(pairs["judge_id"], pairs["judge_name"], shared)}


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with None for missing values (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def select_outcomes(outcomes: pd.DataFrame, kind: str | None = "unsafe",
                    categories: Sequence[str] | None = None) -> pd.DataFrame:
    """Verdicts on prompts of one kind (None: all), optionally only in `categories` (ids)."""
    keep = outcomes["kind"].eq(kind) if kind else pd.Series(True, index=outcomes.index)
    if categories is not None:
        keep &= outcomes["category_id"].astype(str).isin([str(c) for c in categories])
    return outcomes[keep]


ITEM_COLUMNS = ["generation_id", "prompt_id", "checkpoint_id", "checkpoint", "base_model",
                "dataset", "run_id", "seed", "epoch", "temperature", "sample_index", "category_id",
                "category", "kind", "degenerate", "empty"]


def generation_items(frames: Frames, kind: str | None = "unsafe") -> pd.DataFrame:
    """One row per generation with its checkpoint's and prompt's attributes: from `generations`
    when given (judged or not), else from the verdicts (judged generations only)."""
    if frames.generations.empty or frames.checkpoints.empty:
        items = select_outcomes(frames.outcomes, kind)[ITEM_COLUMNS]
        return items.drop_duplicates("generation_id").reset_index(drop=True)
    points = frames.checkpoints.rename(columns={"id": "checkpoint_id"})[
        ["checkpoint_id", "base_model", "run_id", "epoch", "seed", "dataset"]]
    items = (select_outcomes(frames.generations, kind)
             .drop(columns=["seed"], errors="ignore")  # the sampling seed, not the run's
             .rename(columns={"id": "generation_id"}).merge(points, on="checkpoint_id"))
    items["seed"] = pd.to_numeric(items["seed"]).astype(float)
    items["checkpoint"] = _checkpoint_names(items)
    return with_columns(items, ITEM_COLUMNS)[ITEM_COLUMNS].reset_index(drop=True)
