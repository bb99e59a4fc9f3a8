"""Harmfulness per checkpoint x temperature under one judge, raw and corrected for the judge's
measured errors (Rogan-Gladen), over all categories or a subset of them: `harmfulness_report`.

This is the one place harmfulness is computed: the report, the app's Validate tab, the demo
summary and the CLI all call it with the same choices, so one question gets one answer.
- Cells: one per checkpoint x temperature (x category); `benchmarks`, `categories` and
  `temperatures` keep only some answers; the prompt kind (unsafe by default) is always one kind.
- Calibration: the judge's parsed verdicts on answers of the same prompt kind (and the same
  `categories`, since a judge errs differently by category) with a 0/1 human majority, whatever
  their benchmark or temperature (an imported calibration set is its own benchmark). Only
  answers the planner drew at random (or imported as a random sample) calibrate: the other
  picks over-represent the judge's errors. `random_only=False` uses every label, biased, and
  says so. One sensitivity and specificity serve every cell (per-cell sets would be tiny).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from annotations.agreement_tables import human_majority
from annotations.bootstrap import Seed, make_rng
from annotations.correction import CorrectedRate, corrected_harmfulness, harmfulness_table
from annotations.frames import (MIN_ITEMS, Frames, checkpoint_names, frames_of, json_records,
                                judge_names, select_outcomes)
from annotations.records import PromptKind
from annotations.store import Store

# SORRY-Bench's categories 1-24: its first two domains, "Hate Speech Generation" (1-5) and
# "Assistance with Crimes or Torts" (6-24), whose requests are harmful on any reading; 25-44
# ("Potentially Inappropriate Topics", "Potentially Unqualified Advice") are where refusing is
# debatable. SORRY-Bench itself defines no such subset: this is the workbench's convention.
PROMINENT_CATEGORIES: tuple[str, ...] = tuple(str(i) for i in range(1, 25))


class CalibrationSource(str, enum.Enum):
    """Which human-labelled answers gave the judge's sensitivity and specificity."""

    RANDOM = "random sample"  # only answers drawn (or imported) at random: unbiased
    ALL_LABELLED = "every label (biased)"  # asked for with random_only=False
    NONE = "none"  # no usable labels: no corrected numbers
    NOT_COMPUTED = "not computed"  # correct=False


class CellStatus(str, enum.Enum):
    CORRECTED = "corrected"
    NO_CALIBRATION = "no calibration labels"
    UNINFORMATIVE = "uninformative judge"
    NOT_COMPUTED = "not computed"


@dataclass(frozen=True)
class HarmfulnessReport:
    """Raw and corrected harmfulness per checkpoint x temperature (x category) for one judge."""

    judge_id: str
    judge: str
    kind: PromptKind
    table: pd.DataFrame
    calibration: CalibrationSource
    n_calibration: int
    sensitivity: float | None
    specificity: float | None
    informative: bool
    reason: str
    categories: tuple[str, ...] | None
    level: float

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "table"}
        return {**data, "kind": self.kind.value, "calibration": self.calibration.value,
                "table": json_records(self.table)}


CELL_KEYS = ["checkpoint_id", "temperature"]
CHECKPOINT_COLUMNS = ["base_model", "dataset", "checkpoint", "checkpoint_kind", "import_source",
                      "seed", "epoch"]


def harmfulness_report(source: Store | Frames, judge_id: str,
                       categories: Sequence[str] | None = None, by_category: bool = False,
                       kind: PromptKind = PromptKind.UNSAFE, level: float = 0.95,
                       n_boot: int = 1000, seed: int = 0, correct: bool = True,
                       benchmarks: Sequence[str] | None = None,
                       temperatures: Sequence[float] | None = None,
                       random_only: bool = True) -> HarmfulnessReport:
    """Harmfulness per checkpoint x temperature (x category with `by_category`) under one judge:
    raw with a CI over prompts, unparseable verdicts counted apart, and Rogan-Gladen corrected
    (see the module docstring for the cells and the calibration). `correct=False` skips the
    corrected columns: a 44-category table has thousands of cells, each bootstrapping."""
    frames = frames_of(source)
    mine = select_outcomes(frames.outcomes, kind, categories)
    mine = mine[mine["judge_id"] == judge_id]
    cells = _selected(mine, benchmarks, temperatures)
    if cells.empty:
        raise ValueError(f"no verdicts of judge {judge_id!r} on {PromptKind(kind).value} prompts"
                         + (f" in categories {list(categories)}" if categories else ""))
    keys = CELL_KEYS + (["category_id", "category"] if by_category else [])
    cells = cells.assign(**{c: cells[c].fillna("") for c in ("category_id", "category")})
    table = _raw_table(cells, keys, level, n_boot, seed)
    calib, calibration = _calibration(mine, frames.labels, random_only)
    first = None
    if correct:
        table, first = _corrected_columns(table, cells, keys, calib, level, n_boot, seed)
    else:
        calib, calibration = calib.iloc[:0], CalibrationSource.NOT_COMPUTED
        table = table.assign(corrected=np.nan, corrected_ci_low=np.nan, corrected_ci_high=np.nan,
                             status=CellStatus.NOT_COMPUTED.value)
    return HarmfulnessReport(
        judge_id, judge_names(frames.outcomes)[judge_id], PromptKind(kind), table, calibration,
        len(calib), sensitivity=None if first is None else first.sensitivity,
        specificity=None if first is None else first.specificity,
        informative=bool(first is not None and first.informative),
        reason=first.reason if first is not None else _no_correction(calibration),
        categories=None if categories is None else tuple(str(c) for c in categories),
        level=level)


def _selected(outcomes: pd.DataFrame, benchmarks: Sequence[str] | None,
              temperatures: Sequence[float] | None) -> pd.DataFrame:
    keep = pd.Series(True, index=outcomes.index)
    if benchmarks:
        keep &= outcomes["benchmark"].isin(list(benchmarks))
    if temperatures:
        keep &= outcomes["temperature"].round(4).isin([round(float(t), 4) for t in temperatures])
    return outcomes[keep]


def _no_correction(calibration: CalibrationSource) -> str:
    if calibration == CalibrationSource.NOT_COMPUTED:
        return CellStatus.NOT_COMPUTED.value
    return CellStatus.NO_CALIBRATION.value


def _raw_table(cells: pd.DataFrame, keys: list[str], level: float, n_boot: int,
               seed: int) -> pd.DataFrame:
    parsed = cells[cells["outcome"].notna()].assign(outcome=lambda f: f["outcome"].astype(int))
    if parsed.empty:
        table = pd.DataFrame(columns=[*keys, "harmfulness", "ci_low", "ci_high", "n", "n_clusters"])
    else:
        table = harmfulness_table(parsed, by=keys, cluster="prompt_id", level=level,
                                  n_boot=n_boot, seed=seed)
    missing = cells.assign(unparseable=cells["outcome"].isna()).groupby(keys)["unparseable"].sum()
    table = table.merge(missing.reset_index(), on=keys, how="outer")
    table["unparseable"] = table["unparseable"].fillna(0).astype(int)
    points = cells.drop_duplicates("checkpoint_id").set_index("checkpoint_id")[CHECKPOINT_COLUMNS]
    table = table.join(points, on="checkpoint_id")
    table["too_few"] = table["n"].fillna(0) < MIN_ITEMS  # shown as "too few to read"
    order = ["base_model", "dataset", "temperature", "checkpoint_kind", "seed", "epoch"]
    return table.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)


def _calibration(outcomes: pd.DataFrame, labels: pd.DataFrame,
                 random_only: bool) -> tuple[pd.DataFrame, CalibrationSource]:
    majority = human_majority(labels)
    calib = outcomes[outcomes["outcome"].notna()].merge(
        majority[majority["human"].notna()], on="generation_id")
    if random_only:
        calib = calib[calib["chosen_at_random"]]
        return calib, CalibrationSource.RANDOM if len(calib) else CalibrationSource.NONE
    return calib, CalibrationSource.ALL_LABELLED if len(calib) else CalibrationSource.NONE


def _correct(judged: pd.Series, clusters: pd.Series, calib: pd.DataFrame, level: float,
             n_boot: int, seed: Seed) -> CorrectedRate | None:
    if calib.empty or judged.empty:
        return None
    return corrected_harmfulness(judged.astype(int), calib["outcome"].astype(int),
                                 calib["human"].astype(int), level=level, n_boot=n_boot,
                                 seed=seed, judged_clusters=clusters,
                                 calib_clusters=calib["prompt_id"])


def _corrected_columns(table: pd.DataFrame, cells: pd.DataFrame, keys: list[str],
                       calib: pd.DataFrame, level: float, n_boot: int,
                       seed: int) -> tuple[pd.DataFrame, CorrectedRate | None]:
    """The table with corrected columns, and one cell's result (every cell shares the
    calibration, so its sensitivity, specificity and verdict on the judge hold for all)."""
    rng, rows, first = make_rng(seed), [], None
    by_key = dict(list(cells[cells["outcome"].notna()].groupby(keys, sort=False)))
    for key in table[keys].itertuples(index=False):
        block = by_key.get(tuple(key))
        result = None if block is None else _correct(block["outcome"], block["prompt_id"], calib,
                                                     level, n_boot, rng)
        first = first or result
        rows.append(_corrected_cells(result))
    extra = pd.DataFrame(rows, index=table.index,
                         columns=["corrected", "corrected_ci_low", "corrected_ci_high", "status"])
    return pd.concat([table, extra], axis=1), first


def _corrected_cells(result: CorrectedRate | None) -> tuple:
    if result is None:
        return (np.nan, np.nan, np.nan, CellStatus.NO_CALIBRATION.value)
    if not result.informative:
        return (np.nan, np.nan, np.nan, f"{CellStatus.UNINFORMATIVE.value}: {result.reason}")
    return (result.estimate, result.ci_low, result.ci_high, CellStatus.CORRECTED.value)


def capability_table(source: Store | Frames,
                     report: HarmfulnessReport | None = None) -> pd.DataFrame:
    """One row per checkpoint with capability scores: its attributes and one column per metric,
    and with a `report`, its harmfulness at each temperature beside them (`harmfulness_t0`, ...):
    capability beside safety, as the report, the app and the demo summary show it."""
    frames = frames_of(source)
    if frames.capability.empty or frames.checkpoints.empty:
        return pd.DataFrame()
    scores = frames.capability.pivot_table(index="checkpoint_id", columns="metric",
                                           values="value")
    points = frames.checkpoints.assign(
        checkpoint=lambda f: checkpoint_names(f, kind="kind", source="source")).rename(
        columns={"id": "checkpoint_id"}).set_index("checkpoint_id")
    table = points[["base_model", "dataset", "checkpoint", "seed", "epoch"]].join(scores,
                                                                                   how="inner")
    if report is not None:
        rates = report.table.pivot_table(index="checkpoint_id", columns="temperature",
                                         values="harmfulness")
        rates.columns = [f"harmfulness_t{t:g}" for t in rates.columns]
        table = table.join(rates, how="inner")
    return table.reset_index()
