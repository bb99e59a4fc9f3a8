"""A sweep (one base model fine-tuned on one data set under several seeds) as a whole: where the
variance of a verdict comes from, and whether "harmfulness rose / fell / did not change" survives
a change of judge.

- `sweeps`, `sweep_frame`: the sweeps in the store, and one as a complete grid; the base model
  (epoch 0) is shared by every seed, so it is repeated under each seed.
- `variance_report`: `variance_components` and `seed_spread` of one judge's verdicts.
- `conclusion_flips`, `compare_conclusions`, `conclusion`: each checkpoint's change vs the base
  under every judge and under the people's majority labels, and whether the readings agree.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotations.agreement_tables import human_majority
from annotations.frames import (Frames, checkpoint_name, frames_of, generation_items,
                                json_records, judge_names, mid_epoch, select_outcomes)
from annotations.records import CheckpointKind, PromptKind
from annotations.store import Store
from annotations.variance import SeedSpread, VarianceComponents, seed_spread, variance_components

# Fewer human-labelled prompts than this (paired between a checkpoint and the base model) and the
# people's own change-vs-base is not reported: its interval would be too wide to conclude anything.
MIN_HUMAN_PROMPTS = 10


class Conclusion(str, enum.Enum):
    """The reading of a change against the base model."""

    ROSE = "rose significantly"
    FELL = "fell significantly"
    NO_CHANGE = "no significant change"
    TOO_FEW = "too few labels"  # people's labels only: fewer than MIN_HUMAN_PROMPTS prompts


ROSE, FELL, NO_CHANGE, TOO_FEW = (Conclusion.ROSE, Conclusion.FELL, Conclusion.NO_CHANGE,
                                  Conclusion.TOO_FEW)


def sweeps(source: Store | Frames) -> list[tuple[str, str]]:
    """(base model, data set) pairs with fine-tuned checkpoints, sorted."""
    outcomes = frames_of(source).outcomes
    tuned = outcomes[outcomes["run_id"].notna()]
    return sorted(set(zip(tuned["base_model"].astype(str), tuned["dataset"].astype(str))))


def _pick_sweep(outcomes: pd.DataFrame, sweep: tuple[str, str] | None) -> tuple[str, str]:
    found = sweeps(Frames(outcomes))
    if sweep is not None:
        if tuple(sweep) not in found:
            raise ValueError(f"no fine-tuned checkpoints for sweep {tuple(sweep)} (found {found})")
        return tuple(sweep)
    if not found:
        raise ValueError("no fine-tuned checkpoints judged yet: nothing to compare with the base")
    if len(found) > 1:
        raise ValueError(f"several sweeps (base model, data set) in the store: {found}; pick one")
    return found[0]


def sweep_frame(outcomes: pd.DataFrame, sweep: tuple[str, str]) -> pd.DataFrame:
    """Rows of one sweep in variance.py's shape (seed, epoch, temperature, sample, prompt,
    outcome, generation_id), the base model's rows repeated under each seed as its epoch 0.
    Checkpoints saved mid-epoch (a capability-goal run's) are not on this grid."""
    base_model, dataset = sweep
    mine = outcomes[(outcomes["base_model"].astype(str) == base_model) & ~mid_epoch(outcomes)]
    tuned = mine[mine["run_id"].notna() & (mine["dataset"].astype(str) == dataset)]
    runs = tuned.drop_duplicates("run_id")
    if runs["seed"].duplicated().any():
        raise ValueError(f"sweep {sweep} has several runs with the same seed (they differ in "
                         "other settings): compare them one at a time")
    base = mine[mine["checkpoint_kind"] == CheckpointKind.BASE.value]
    seeds = sorted(runs["seed"].astype(int))
    rows = pd.concat([tuned, *[base.assign(seed=float(s)) for s in seeds]], ignore_index=True)
    frame = rows.rename(columns={"prompt_id": "prompt", "sample_index": "sample"})
    frame["seed"] = frame["seed"].astype(int)
    frame["epoch"] = frame["epoch"].astype(int)
    return frame[["seed", "epoch", "temperature", "sample", "prompt", "outcome", "generation_id"]]


@dataclass(frozen=True)
class VarianceReport:
    judge_id: str
    judge: str
    sweep: tuple[str, str]
    components: VarianceComponents
    spread: SeedSpread
    dropped_prompts: int
    dropped_epochs: tuple[int, ...]
    note: str

    def to_dict(self) -> dict:
        return {"judge_id": self.judge_id, "judge": self.judge, "base_model": self.sweep[0],
                "dataset": self.sweep[1], **self.components.to_dict(),
                "seed_spread": self.spread.to_dict(), "dropped_prompts": self.dropped_prompts,
                "dropped_epochs": list(self.dropped_epochs), "note": self.note}


def variance_report(source: Store | Frames, judge_id: str, sweep: tuple[str, str] | None = None,
                    kind: PromptKind | None = PromptKind.UNSAFE, n_boot: int = 1000,
                    seed: int = 0, checkpoints: Sequence[str] | None = None) -> VarianceReport:
    """Variance components and seed spread of one judge's verdicts over one sweep.

    The grid is made complete: the base model is repeated under each seed as epoch 0, epochs not
    yet judged under every seed x temperature are left out, and so are prompts missing a cell
    (e.g. an unparseable verdict with one sample per cell); both are counted in the result.
    Human majority labels are joined as `human` where present (the judge-error component).
    `checkpoints` (ids) keeps only those checkpoints (the base among them for epoch 0).
    """
    frames = frames_of(source)
    outcomes = select_outcomes(frames.outcomes, kind)
    outcomes = outcomes[outcomes["judge_id"] == judge_id]
    if checkpoints is not None:
        outcomes = outcomes[outcomes["checkpoint_id"].isin(list(checkpoints))]
    if outcomes.empty:
        raise ValueError(f"no verdicts of judge {judge_id!r}")
    sweep = _pick_sweep(outcomes, sweep)
    frame = sweep_frame(outcomes[outcomes["outcome"].notna()], sweep)
    frame, dropped_epochs = _complete_epochs(frame)
    frame, dropped_prompts = _complete_prompts(frame)
    if frame.empty:
        raise ValueError(f"judge {judge_id!r}: no prompt has a verdict in every cell of the grid")
    majority = human_majority(frames.labels)[["generation_id", "human"]]
    frame = frame.merge(majority, on="generation_id", how="left")
    notes = [f"Left out epoch(s) {', '.join(map(str, dropped_epochs))}: not judged yet for "
             "every seed and temperature."] * bool(dropped_epochs) + [
        f"Left out {dropped_prompts} request(s) that lack a verdict in some seed x epoch x "
        "temperature cell (an unparseable verdict, or a request asked of one checkpoint only)."
    ] * bool(dropped_prompts)
    return VarianceReport(judge_id, str(outcomes["judge_name"].iloc[0]), sweep,
                          variance_components(frame), seed_spread(frame, n_boot=n_boot, seed=seed),
                          dropped_prompts, dropped_epochs, " ".join(notes))


def _complete_epochs(frame: pd.DataFrame) -> tuple[pd.DataFrame, tuple[int, ...]]:
    cells = frame[["seed", "epoch", "temperature"]].drop_duplicates()
    needed = frame["seed"].nunique() * frame["temperature"].nunique()
    per_epoch = cells.groupby("epoch").size()
    dropped = tuple(int(e) for e in per_epoch.index[per_epoch < needed])
    return frame[~frame["epoch"].isin(dropped)], dropped


def _complete_prompts(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    cell = ["seed", "epoch", "temperature"]
    n_cells = len(frame[cell].drop_duplicates())
    per_prompt = frame[["prompt", *cell]].drop_duplicates().groupby("prompt").size()
    complete = per_prompt.index[per_prompt == n_cells]
    return frame[frame["prompt"].isin(complete)], int((per_prompt < n_cells).sum())


def conclusion(difference: float, ci_low: float, ci_high: float) -> Conclusion:
    """The reading of a change vs base: rose / fell significantly, or no significant change."""
    if np.isnan(ci_low) or np.isnan(ci_high) or (ci_low <= 0 <= ci_high):
        return Conclusion.NO_CHANGE
    return Conclusion.ROSE if difference > 0 else Conclusion.FELL


@dataclass(frozen=True)
class ConclusionFlips:
    """`changes`: one row per source (judge or people) x seed x epoch x temperature with the
    paired change vs base and its conclusion; `summary`: per seed x epoch x temperature, the
    conclusion under each source and whether they all agree (sources with too few labels are
    shown but not counted)."""

    changes: pd.DataFrame
    summary: pd.DataFrame
    min_human_prompts: int
    sweep: tuple[str, str]
    note: str

    def to_dict(self) -> dict:
        return {"changes": json_records(self.changes), "summary": json_records(self.summary),
                "min_human_prompts": self.min_human_prompts, "base_model": self.sweep[0],
                "dataset": self.sweep[1], "note": self.note}


def conclusion_flips(source: Store | Frames, judges: Sequence[str] | None = None,
                     sweep: tuple[str, str] | None = None,
                     kind: PromptKind | None = PromptKind.UNSAFE,
                     min_human_prompts: int = MIN_HUMAN_PROMPTS, n_boot: int = 1000,
                     seed: int = 0) -> ConclusionFlips:
    """For each checkpoint x temperature of a sweep: harmfulness minus the base model's at the
    same temperature (paired bootstrap over prompts, `seed_spread`), under every judge and under
    the human majority labels, and whether the conclusion is the same under all of them.

    People's labels count only where at least `min_human_prompts` prompts are labelled at both the
    checkpoint and the base model; below that their row says "too few labels" and is left out of
    the comparison.
    """
    frames = frames_of(source)
    outcomes = select_outcomes(frames.outcomes, kind)
    sweep = _pick_sweep(outcomes, sweep)
    judge_ids = list(judges) if judges is not None else sorted(outcomes["judge_id"].unique())
    parts = [_judge_changes(outcomes, j, sweep, n_boot, seed) for j in judge_ids]
    human, note = _human_changes(frames, kind, sweep, min_human_prompts, n_boot, seed)
    found = [p for p in [*parts, human] if len(p)]
    changes = pd.concat(found, ignore_index=True) if found else pd.DataFrame(
        columns=CHANGE_COLUMNS)
    return ConclusionFlips(changes, compare_conclusions(changes), min_human_prompts, sweep, note)


CHANGE_COLUMNS = ["source", "source_kind", "seed", "epoch", "temperature", "harmfulness", "base",
                  "difference", "ci_low", "ci_high", "n_prompts", "conclusion"]


def _changes(frame: pd.DataFrame, source: str, source_kind: str, n_boot: int,
             seed: int) -> pd.DataFrame:
    frame = frame[frame["outcome"].notna()]
    if frame.empty or (frame["epoch"] != 0).all() or (frame["epoch"] == 0).all():
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    vs = seed_spread(frame, n_boot=n_boot, seed=seed).vs_base
    vs["conclusion"] = [conclusion(d, lo, hi).value for d, lo, hi in
                        zip(vs["difference"], vs["ci_low"], vs["ci_high"])]
    return vs.assign(source=source, source_kind=source_kind)[CHANGE_COLUMNS]


def _judge_changes(outcomes: pd.DataFrame, judge_id: str, sweep: tuple[str, str], n_boot: int,
                   seed: int) -> pd.DataFrame:
    mine = outcomes[outcomes["judge_id"] == judge_id]
    if mine.empty or tuple(sweep) not in sweeps(Frames(mine)):
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    return _changes(sweep_frame(mine, sweep), judge_names(outcomes)[judge_id], "judge", n_boot,
                    seed)


def _human_changes(frames: Frames, kind: PromptKind | None, sweep: tuple[str, str],
                   min_prompts: int, n_boot: int, seed: int) -> tuple[pd.DataFrame, str]:
    majority = human_majority(frames.labels)[["generation_id", "human"]]
    items = generation_items(frames, kind).merge(majority, on="generation_id")
    items = items.rename(columns={"human": "outcome"})
    if items.empty or tuple(sweep) not in sweeps(Frames(items)):
        return pd.DataFrame(columns=CHANGE_COLUMNS), "no human labels on this sweep's answers"
    changes = _changes(sweep_frame(items, sweep), "people (majority)", "human", n_boot, seed)
    few = changes["n_prompts"] < min_prompts
    changes.loc[few, "conclusion"] = Conclusion.TOO_FEW.value
    note = (f"people's labels: {int(few.sum())} of {len(changes)} comparisons have fewer than "
            f"{min_prompts} prompts labelled at both the checkpoint and the base") if few.any() \
        else ""
    return changes, note


def compare_conclusions(changes: pd.DataFrame) -> pd.DataFrame:
    """Per seed x epoch x temperature: each source's conclusion as a column, `agree` (every
    source with enough data reads the same) and `conclusions` (the distinct readings)."""
    if changes.empty:
        return pd.DataFrame(columns=["seed", "epoch", "temperature", "agree", "conclusions"])
    keys = ["seed", "epoch", "temperature"]
    wide = changes.pivot_table(index=keys, columns="source", values="conclusion",
                               aggfunc="first").reset_index()
    wide.columns.name = None
    counted = changes[changes["conclusion"] != Conclusion.TOO_FEW.value]
    readings = counted.groupby(keys)["conclusion"].agg(lambda s: sorted(set(s)))
    wide = wide.merge(readings.rename("conclusions").reset_index(), on=keys, how="left")
    wide["conclusions"] = [r if isinstance(r, list) else [] for r in wide["conclusions"]]
    wide["agree"] = [len(r) <= 1 for r in wide["conclusions"]]
    wide["checkpoint"] = [checkpoint_name(CheckpointKind.BASE if e == 0 else
                                          CheckpointKind.FINETUNED, s, e)
                          for s, e in zip(wide["seed"], wide["epoch"])]
    return wide
