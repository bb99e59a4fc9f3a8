"""Safety at matched capability: compare fine-tuning set-ups where they reach the same capability
on the user's task, not after the same number of epochs (the second seed paper: "Safety
Measurements for Fine-tuned LLMs Should be Grounded in Capability", 2026).

- `capability_points`: every checkpoint with its capability on one metric and how far into
  training it was saved (the base model is every run's start).
- `goal_checkpoints`: per run, the first checkpoint in training order that meets a target.
- `matched_report`: harmfulness under one judge (raw and judge-error corrected, with CIs) at
  each run's goal checkpoint, per temperature; optionally read between the two checkpoints
  that straddle the target (linear in capability, said in the table); and comparisons at equal
  capability: each data set against the base model, and data set against data set.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotations.contrasts import interpolated_rate, paired_contrast
from annotations.frames import Frames, checkpoint_names, frames_of, json_records, select_outcomes
from annotations.harm import harmfulness_report
from annotations.records import CapabilityMetric, CheckpointKind, PromptKind
from annotations.store import Store

POINT_COLUMNS = ["checkpoint_id", "checkpoint", "base_model", "dataset", "run_id", "seed",
                 "epoch", "step", "examples_seen", "capability"]
HARM_COLUMNS = ["harmfulness", "ci_low", "ci_high", "corrected", "corrected_ci_low",
                "corrected_ci_high"]


def capability_benchmark(capability: pd.DataFrame, metric: str,
                         benchmark: str | None = None) -> str:
    """The benchmark `metric` was measured on: `benchmark`, or the only one holding it."""
    found = sorted(set(capability.loc[capability["metric"] == metric, "benchmark"]))
    if benchmark is not None:
        if benchmark not in found:
            raise ValueError(f"no {metric} scores on {benchmark!r} (found on: {found or 'none'})")
        return benchmark
    if not found:
        raise ValueError(f"no checkpoint has a {metric} score yet")
    if len(found) > 1:
        raise ValueError(f"{metric} is measured on several task sets {found}: name one")
    return found[0]


def stored_goals(source: Store | Frames) -> list[tuple[str, str, float]]:
    """The (metric, benchmark, target) of every capability goal runs were trained to."""
    goals = frames_of(source).goals
    if goals.empty:
        return []
    found = goals[["metric", "benchmark", "target"]].drop_duplicates()
    return [(str(m), str(b), float(t)) for m, b, t in found.itertuples(index=False)]


def capability_points(source: Store | Frames, metric: str,
                      benchmark: str | None = None) -> pd.DataFrame:
    """Base and fine-tuned checkpoints with their `metric` (on `benchmark`), in training order
    per run: epoch, then examples seen (mid-epoch checkpoints before the epoch's end)."""
    frames = frames_of(source)
    CapabilityMetric(metric)  # a known metric, or ValueError naming it
    bench = capability_benchmark(frames.capability, metric, benchmark)
    scores = frames.capability[(frames.capability["metric"] == metric)
                               & (frames.capability["benchmark"] == bench)]
    ckpts = frames.checkpoints.rename(columns={"id": "checkpoint_id"})
    ckpts = ckpts[ckpts["kind"] != CheckpointKind.IMPORTED.value]
    ckpts = ckpts.assign(checkpoint=checkpoint_names(ckpts, kind="kind", source="source"))
    points = ckpts.merge(scores[["checkpoint_id", "value"]], on="checkpoint_id")
    points = points.rename(columns={"value": "capability"})
    for column in ("step", "examples_seen"):
        if column not in points:
            points[column] = np.nan
    points["examples_seen"] = points["examples_seen"].where(points["epoch"] != 0, 0)
    order = points["examples_seen"].fillna(np.inf)
    return (points.assign(_order=order).sort_values(["base_model", "dataset", "seed", "epoch",
                                                     "_order"], na_position="first")
            [POINT_COLUMNS].reset_index(drop=True))


def goal_checkpoints(points: pd.DataFrame, metric: str, target: float) -> pd.DataFrame:
    """Per run: the first checkpoint in training order that meets `target` (`reached`), else its
    last (not reached); `previous`: the checkpoint before it (the base before the first)."""
    measure = CapabilityMetric(metric)
    rows = []
    bases = points[points["run_id"].isna()].set_index("base_model")
    for run_id, run in points[points["run_id"].notna()].groupby("run_id", sort=False):
        met = [measure.meets(v, target) for v in run["capability"]]
        at = met.index(True) if any(met) else len(run) - 1
        goal = run.iloc[at]
        before = run.iloc[at - 1] if at > 0 else (bases.loc[goal["base_model"]]
                                                  if goal["base_model"] in bases.index else None)
        if isinstance(before, pd.DataFrame):
            before = before.iloc[0]
        rows.append({**goal.to_dict(), "reached": any(met),
                     "previous_id": None if before is None else before.get(
                         "checkpoint_id", None),
                     "previous_capability": np.nan if before is None else before["capability"]})
    return pd.DataFrame(rows, columns=[*POINT_COLUMNS, "reached", "previous_id",
                                       "previous_capability"])


@dataclass(frozen=True)
class MatchedReport:
    """`points`: every checkpoint x temperature with its capability and harmfulness (the
    safety-against-capability plot); `at_goal`: per run x temperature, harmfulness where the
    run meets the goal; `comparisons`: at equal capability, per temperature, each data set
    against the base and against each other data set."""

    judge_id: str
    judge: str
    metric: str
    benchmark: str
    target: float
    interpolate: bool
    points: pd.DataFrame
    at_goal: pd.DataFrame
    comparisons: pd.DataFrame
    note: str

    @property
    def goal(self) -> str:
        """The goal in words, e.g. `reference_loss <= 1.9 on capability-heldout`."""
        sign = ">=" if CapabilityMetric(self.metric).higher_is_better else "<="
        return f"{self.metric} {sign} {self.target:g} on {self.benchmark}"

    def to_dict(self) -> dict:
        return {"judge_id": self.judge_id, "judge": self.judge, "metric": self.metric,
                "benchmark": self.benchmark, "target": self.target,
                "interpolate": self.interpolate, "points": json_records(self.points),
                "at_goal": json_records(self.at_goal),
                "comparisons": json_records(self.comparisons), "note": self.note}


COMPARISON_COLUMNS = ["base_model", "temperature", "comparison", "a", "b", "runs_a", "runs_b",
                      "harmfulness_a", "harmfulness_b", "difference", "ci_low", "ci_high",
                      "n_prompts", "conclusion"]


def matched_report(source: Store | Frames, judge_id: str, metric: str, target: float,
                   benchmark: str | None = None, kind: PromptKind = PromptKind.UNSAFE,
                   temperatures: Sequence[float] | None = None, interpolate: bool = False,
                   level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> MatchedReport:
    """Harmfulness under `judge_id` at the capability goal `metric` meets `target`.

    Each run's goal checkpoint is the first in training order that meets the target; its
    harmfulness is the checkpoint's own (raw and corrected, as `harmfulness_report` gives it).
    With `interpolate`, where the target lies between the goal checkpoint and the one before
    (the base model before the first), the raw harmfulness is read linearly in capability
    between the two, with a paired bootstrap CI, and the row says so (corrected left empty).
    Runs that never meet the target are listed as not reached and left out of comparisons.
    """
    frames = frames_of(source)
    points = capability_points(frames, metric, benchmark)
    bench = capability_benchmark(frames.capability, metric, benchmark)
    harm = harmfulness_report(frames, judge_id, kind=kind, level=level, n_boot=n_boot, seed=seed,
                              temperatures=temperatures)
    table = harm.table[["checkpoint_id", "temperature", *HARM_COLUMNS]]
    with_harm = points.merge(table, on="checkpoint_id")
    goals = goal_checkpoints(points, metric, target)
    rows = _judge_rows(frames, judge_id, kind, temperatures)
    at_goal = _at_goal(goals, table, rows, target, interpolate, level, n_boot, seed)
    comparisons = _comparisons(goals, points, rows, level, n_boot, seed)
    missed = goals.loc[~goals["reached"], "checkpoint"].tolist()
    note = (f"{len(missed)} run(s) never met the goal (shown at their last checkpoint, left out "
            f"of the comparisons): {', '.join(missed)}." if missed else "")
    return MatchedReport(judge_id, harm.judge, metric, bench, float(target), interpolate,
                         with_harm, at_goal, comparisons, note)


def _judge_rows(frames: Frames, judge_id: str, kind: PromptKind,
                temperatures: Sequence[float] | None) -> pd.DataFrame:
    rows = select_outcomes(frames.outcomes, kind)
    rows = rows[rows["judge_id"] == judge_id]
    if temperatures is not None:
        rows = rows[rows["temperature"].isin(list(temperatures))]
    return rows


def _at_goal(goals: pd.DataFrame, table: pd.DataFrame, rows: pd.DataFrame, target: float,
             interpolate: bool, level: float, n_boot: int, seed: int) -> pd.DataFrame:
    out = goals.merge(table, on="checkpoint_id").assign(interpolated=False, weight=np.nan)
    if not interpolate:
        return out
    for i, row in out.iterrows():
        before, low = row["previous_id"], row["previous_capability"]
        if not row["reached"] or before is None or pd.isna(low) or low == row["capability"]:
            continue
        weight = float((target - low) / (row["capability"] - low))
        if not 0 < weight < 1:  # the target is met exactly, or before the previous checkpoint
            continue
        at_t = rows[rows["temperature"] == row["temperature"]]
        est = interpolated_rate(at_t, before, row["checkpoint_id"], weight, n_boot, level, seed)
        out.loc[i, ["harmfulness", "ci_low", "ci_high"]] = [est.value, est.ci_low, est.ci_high]
        out.loc[i, ["corrected", "corrected_ci_low", "corrected_ci_high"]] = np.nan
        out.loc[i, ["interpolated", "weight"]] = [True, weight]
    return out


def _comparisons(goals: pd.DataFrame, points: pd.DataFrame, rows: pd.DataFrame, level: float,
                 n_boot: int, seed: int) -> pd.DataFrame:
    reached = goals[goals["reached"]]
    out = []
    for (base_model, temperature), at_t in rows.groupby(["base_model", "temperature"]):
        mine = reached[reached["base_model"] == base_model]
        groups = {d: list(g["checkpoint_id"]) for d, g in mine.groupby("dataset")}
        base = points.loc[points["run_id"].isna() & (points["base_model"] == base_model),
                          "checkpoint_id"].tolist()
        pairs = [(d, "base", ids, base) for d, ids in groups.items()] + [
            (a, b, groups[a], groups[b]) for a, b in itertools.combinations(sorted(groups), 2)]
        for a, b, ids_a, ids_b in pairs:
            found = paired_contrast(at_t, ids_a, ids_b, n_boot, level, seed) if ids_b else None
            if found is None:
                continue
            out.append({"base_model": base_model, "temperature": temperature,
                        "comparison": f"{a} vs {b}", "a": a, "b": b, "runs_a": len(ids_a),
                        "runs_b": len(ids_b) if b != "base" else 0, **found.to_dict()})
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)
