"""Does a conclusion hold? One comparison (data set A against data set B, or fine-tuned against
the base model) read under every benchmark, every judge and the people's labels, every
temperature, and at equal epochs as well as at equal capability, in one table that marks where
the reading flips.

A row is one reading: where the checkpoints are taken (`alignment`: "epoch 2", or "capability
goal" for each run's goal checkpoint, `annotations.matched`), the benchmark, the source (a judge,
or the people's majority labels) and the temperature; its contrast is A's harmfulness minus B's
on the same prompts with a paired bootstrap CI (`annotations.contrasts`) and a conclusion (rose /
fell significantly, no significant change; the people's labels "too few labels" below
`MIN_HUMAN_PROMPTS` paired prompts). `flips_with` names each dimension along which the reading
changes: a sibling row that differs only in that dimension reads differently. Its `judge` entry
is the judge-flip analysis (`sweeps.conclusion_flips`) of this comparison.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from annotations.agreement_tables import human_majority
from annotations.contrasts import paired_contrast
from annotations.frames import (Frames, frames_of, generation_items, json_records, judge_names,
                                mid_epoch, select_outcomes)
from annotations.matched import capability_points, goal_checkpoints
from annotations.records import CheckpointKind, GoalStatus, PromptKind
from annotations.store import Store
from annotations.sweeps import MIN_HUMAN_PROMPTS, Conclusion

PEOPLE = "people (majority)"
GOAL = "capability goal"


class Dimension(str, enum.Enum):
    """What a reading can change with."""

    ALIGNMENT = "alignment"  # equal epochs against equal capability
    BENCHMARK = "benchmark"
    JUDGE = "judge"  # the source: a judge or the people's labels
    TEMPERATURE = "temperature"


KEYS = {Dimension.ALIGNMENT: "alignment", Dimension.BENCHMARK: "benchmark",
        Dimension.JUDGE: "source", Dimension.TEMPERATURE: "temperature"}
COLUMNS = ["alignment", "benchmark", "source", "source_kind", "temperature", "harmfulness_a",
           "harmfulness_b", "difference", "ci_low", "ci_high", "n_prompts", "conclusion",
           "flips_with", "flips"]


@dataclass(frozen=True)
class Robustness:
    """`table`: one row per reading (see the module docstring); `summary`: per dimension, how
    many readings flip along it; `reference`: the most common conclusion."""

    a: str
    b: str
    table: pd.DataFrame
    summary: pd.DataFrame
    reference: str
    note: str

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "table": json_records(self.table),
                "summary": json_records(self.summary), "reference": self.reference,
                "note": self.note}


def conclusion_robustness(source: Store | Frames, a: str, b: str | None = None,
                          base_model: str | None = None, judges: Sequence[str] | None = None,
                          metric: str | None = None, target: float | None = None,
                          capability_benchmark: str | None = None,
                          kind: PromptKind | None = PromptKind.UNSAFE, people: bool = True,
                          min_human_prompts: int = MIN_HUMAN_PROMPTS, level: float = 0.95,
                          n_boot: int = 1000, seed: int = 0) -> Robustness:
    """Data set `a` against data set `b` (None: against the base model) of `base_model` (the
    only one, when None), read every way (see the module docstring). With `metric` and
    `target`, the capability-goal rows take each run's first checkpoint meeting the target;
    without them, each run's stored goal checkpoint where it reached its goal."""
    frames = frames_of(source)
    outcomes = select_outcomes(frames.outcomes, kind)
    base_model = _base_model(outcomes, base_model)
    outcomes = outcomes[outcomes["base_model"].astype(str) == base_model]
    judge_ids = list(judges) if judges is not None else sorted(outcomes["judge_id"].unique())
    names = judge_names(frames.outcomes)
    readings = [(names[j], "judge", outcomes[outcomes["judge_id"] == j]) for j in judge_ids]
    if people:
        readings.append((PEOPLE, "human", _people_rows(frames, kind, base_model)))
    sets = _alignments(frames, outcomes, base_model, a, b, metric, target, capability_benchmark)
    rows = []
    for alignment, (ids_a, ids_b) in sets.items():
        for name, source_kind, found in readings:
            mine = found[found["checkpoint_id"].isin(ids_a + ids_b)]
            for (bench, temperature), block in mine.groupby(["benchmark", "temperature"]):
                contrast = paired_contrast(block, ids_a, ids_b, n_boot, level, seed)
                if contrast is None:
                    continue
                row = {"alignment": alignment, "benchmark": bench, "source": name,
                       "source_kind": source_kind, "temperature": temperature,
                       **contrast.to_dict()}
                if source_kind == "human" and contrast.n_prompts < min_human_prompts:
                    row["conclusion"] = Conclusion.TOO_FEW.value
                rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    table = mark_flips(table)
    counted = table[table["conclusion"] != Conclusion.TOO_FEW.value]
    reference = counted["conclusion"].mode().iloc[0] if len(counted) else ""
    summary = pd.DataFrame([{"dimension": d.value,
                             "flipping_readings": int(table["flips_with"].map(
                                 lambda f, d=d: d.value in f).sum()),
                             "values": int(table[KEYS[d]].nunique())} for d in Dimension])
    note = "" if GOAL in sets else ("no capability-goal rows: no run has a goal checkpoint "
                                    "(give a metric and target, or train with `until:`)")
    return Robustness(a, b or "base", table, summary, reference, note)


def mark_flips(table: pd.DataFrame) -> pd.DataFrame:
    """`flips_with`: the dimensions along which a row's conclusion differs from a sibling's
    (a row equal in every other dimension); readings with too few labels take no part."""
    table = table.copy()
    counted = table["conclusion"] != Conclusion.TOO_FEW.value
    flips: list[list[str]] = [[] for _ in range(len(table))]
    for dimension, column in KEYS.items():
        others = [c for c in KEYS.values() if c != column]
        groups = table[counted].groupby(others, dropna=False)["conclusion"].nunique()
        differ = set(groups[groups > 1].index)
        for i, (ok, key) in enumerate(zip(counted, table[others].itertuples(index=False))):
            if ok and tuple(key) in differ:
                flips[i].append(dimension.value)
    table["flips_with"] = [", ".join(f) for f in flips]
    table["flips"] = [bool(f) for f in flips]
    return table


def _base_model(outcomes: pd.DataFrame, base_model: str | None) -> str:
    found = sorted(set(outcomes.loc[outcomes["run_id"].notna(), "base_model"].astype(str)))
    if base_model is not None:
        if base_model not in found:
            raise ValueError(f"no fine-tuned checkpoints of {base_model!r} (found {found})")
        return base_model
    if len(found) != 1:
        raise ValueError(f"{'several' if found else 'no'} fine-tuned base models in the store"
                         f"{': ' + str(found) if found else ''}; name one")
    return found[0]


def _people_rows(frames: Frames, kind: PromptKind | None, base_model: str) -> pd.DataFrame:
    majority = human_majority(frames.labels)[["generation_id", "human"]]
    items = generation_items(frames, kind).merge(majority, on="generation_id")
    items = items.rename(columns={"human": "outcome"})
    return items[items["base_model"].astype(str) == base_model]


def _alignments(frames: Frames, outcomes: pd.DataFrame, base_model: str, a: str, b: str | None,
                metric: str | None, target: float | None, capability_benchmark: str | None
                ) -> dict[str, tuple[list[str], list[str]]]:
    """Alignment name -> (A's checkpoint ids, B's): each epoch both have, then the goal."""
    ckpts = outcomes.drop_duplicates("checkpoint_id")
    datasets = set(ckpts["dataset"].dropna().astype(str))
    for name in [a] + ([b] if b is not None else []):
        if name not in datasets:
            raise ValueError(f"no fine-tuned checkpoints on data set {name!r} "
                             f"(found {sorted(datasets)})")
    at_epoch = ckpts[~mid_epoch(ckpts)]
    base = at_epoch.loc[at_epoch["checkpoint_kind"] == CheckpointKind.BASE.value,
                        "checkpoint_id"].tolist()

    def epoch_ids(dataset: str, epoch: int) -> list[str]:
        mine = at_epoch[(at_epoch["dataset"].astype(str) == dataset) & (at_epoch["epoch"] == epoch)]
        return mine["checkpoint_id"].tolist()

    epochs = sorted(set(at_epoch.loc[at_epoch["dataset"].astype(str) == a, "epoch"].astype(int)))
    sets = {}
    for epoch in epochs:
        ids_b = base if b is None else epoch_ids(b, epoch)
        if epoch_ids(a, epoch) and ids_b:
            sets[f"epoch {epoch}"] = (epoch_ids(a, epoch), ids_b)
    goals = _goal_ids(frames, base_model, metric, target, capability_benchmark)
    ids_a = goals.get(a, [])
    ids_b = base if b is None else goals.get(b, [])
    if ids_a and ids_b:
        sets[GOAL] = (ids_a, ids_b)
    return sets


def _goal_ids(frames: Frames, base_model: str, metric: str | None, target: float | None,
              benchmark: str | None) -> dict[str, list[str]]:
    """Data set -> the goal checkpoints of its runs that reached the goal."""
    if metric is not None and target is not None:
        points = capability_points(frames, metric, benchmark)
        goals = goal_checkpoints(points[points["base_model"] == base_model], metric, target)
        goals = goals[goals["reached"]]
    else:
        stored = frames.goals
        if stored.empty:
            return {}
        stored = stored[stored["status"] == GoalStatus.REACHED.value]
        ckpts = frames.checkpoints.rename(columns={"id": "checkpoint_id"})
        goals = stored[["checkpoint_id"]].merge(ckpts, on="checkpoint_id")
        goals = goals[goals["base_model"] == base_model]
    return {str(d): list(g["checkpoint_id"]) for d, g in goals.groupby("dataset")}
