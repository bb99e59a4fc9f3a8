"""What the app's Validate tab shows, computed in one call (`validation`) by the same functions,
with the same choices, as the report (`annotations.report`): judges against people (kappa with its
CI, overall and on coherent and incoherent answers), people against people (Krippendorff's alpha,
the ceiling), harmfulness raw and corrected per judge, the variance decomposition of each sweep,
capability beside safety and each annotator's accuracy on gold items. The tab only lays these out.

`Selection` is the tab's filters: benchmarks, category ids and temperatures keep only some answers
(for agreement, alpha and variance, and the harmfulness cells); the judge-error correction is
still calibrated on every labelled answer of the prompt kind (see `annotations.harm`), and
`random_only` says whether only random picks calibrate (the default) or every label (biased).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from annotations.agreement_tables import (JudgeHumanTable, human_alpha, judge_agreement_summary,
                                          judge_summary_table, primary_judge)
from annotations.frames import Frames, frames_of, select_outcomes
from annotations.harm import HarmfulnessReport, capability_table, harmfulness_report
from annotations.planner import gold_accuracy
from annotations.records import HumanLabel, PromptKind
from annotations.store import Store
from annotations.sweeps import VarianceReport, sweeps, variance_report


@dataclass(frozen=True)
class Selection:
    benchmarks: tuple[str, ...] = ()  # empty: all
    categories: tuple[str, ...] = ()  # category ids
    temperatures: tuple[float, ...] = ()
    random_only: bool = True  # only labels drawn at random calibrate the correction

    def restrict(self, frames: Frames) -> Frames:
        """The frames with only the selected answers (and the labels on them)."""
        outcomes = self._keep(frames.outcomes)
        generations = self._keep(frames.generations) if len(frames.generations) else \
            frames.generations
        ids = set(generations["id"]) if len(generations) else set(outcomes["generation_id"])
        labels = frames.labels[frames.labels["generation_id"].isin(ids)]
        return replace(frames, outcomes=outcomes, generations=generations, labels=labels)

    def _keep(self, frame: pd.DataFrame) -> pd.DataFrame:
        keep = pd.Series(True, index=frame.index)
        if self.benchmarks:
            keep &= frame["benchmark"].isin(self.benchmarks)
        if self.categories:
            keep &= frame["category_id"].astype(str).isin([str(c) for c in self.categories])
        if self.temperatures:
            keep &= frame["temperature"].round(4).isin([round(t, 4) for t in self.temperatures])
        return frame[keep]


@dataclass
class Validation:
    judges: pd.DataFrame  # judge_summary_table: one row per judge
    agreement: JudgeHumanTable | None  # None before any label
    alpha: pd.DataFrame | None  # human_alpha by category, the "all" row first
    harmfulness: dict[str, HarmfulnessReport]  # judge id -> report
    primary: str | None  # the judge id the plots, variance and capability rows are for
    variance: list[VarianceReport]
    capability: pd.DataFrame
    gold: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def validation(source: Store | Frames, selection: Selection = Selection(),
               judge_id: str | None = None, n_boot: int = 1000, seed: int = 0,
               gold: Mapping[str, HumanLabel] | None = None,
               variance_checkpoints: Sequence[str] | None = None) -> Validation:
    """Everything the Validate tab shows (see the module docstring); `judge_id` picks the judge
    of the plots, else the one closest to people (`primary_judge`); `variance_checkpoints`
    (ids) narrows the variance decomposition to those checkpoints (default: all)."""
    frames = frames_of(source)
    chosen = selection.restrict(frames)
    notes: list[str] = []
    agreement = alpha = None
    if len(chosen.labels):
        agreement = judge_agreement_summary(chosen, n_boot=n_boot, seed=seed)
        alpha = human_alpha(chosen, by="category", n_boot=n_boot, seed=seed)
    else:
        notes.append("no human labels on these answers yet: label some in the Annotate tab")
    harm = _harmfulness(frames, selection, n_boot, seed, notes)
    primary = judge_id or primary_judge(chosen, agreement)
    return Validation(
        judges=judge_summary_table(chosen, agreement, alpha), agreement=agreement, alpha=alpha,
        harmfulness=harm, primary=primary,
        variance=_variance(chosen, primary, n_boot, seed, notes, variance_checkpoints),
        capability=capability_table(frames, harm.get(primary)) if primary in harm
        else pd.DataFrame(), gold=gold_accuracy(chosen.labels, gold or {}), notes=notes)


def _harmfulness(frames: Frames, selection: Selection, n_boot: int, seed: int,
                 notes: list[str]) -> dict[str, HarmfulnessReport]:
    out = {}
    unsafe = select_outcomes(frames.outcomes, PromptKind.UNSAFE)
    for judge_id in sorted(unsafe["judge_id"].dropna().unique(), key=str):
        try:
            out[judge_id] = harmfulness_report(
                frames, judge_id, categories=selection.categories or None, n_boot=n_boot,
                seed=seed, benchmarks=selection.benchmarks, temperatures=selection.temperatures,
                random_only=selection.random_only)
        except ValueError as err:
            notes.append(str(err))
    return out


def _variance(frames: Frames, judge_id: str | None, n_boot: int, seed: int, notes: list[str],
              checkpoints: Sequence[str] | None) -> list[VarianceReport]:
    if judge_id is None:
        return []
    found, present = [], sweeps(frames)
    for sweep in present:
        try:
            found.append(variance_report(frames, judge_id, sweep=sweep, n_boot=n_boot, seed=seed,
                                         checkpoints=checkpoints))
            notes += [f"Variance of {sweep[0]} on {sweep[1]}: {found[-1].note}"] * bool(
                found[-1].note)
        except ValueError as err:
            notes.append(f"Variance of {sweep[0]} on {sweep[1]}: {err}.")
    if not present:
        notes.append("Variance: no fine-tuned checkpoint is judged yet.")
    if (frames.outcomes["checkpoint_kind"] == "imported").any():
        notes.append("Variance: imported answers have no seed or epoch, so they are not part "
                     "of the seed x epoch x temperature grid.")
    return found
