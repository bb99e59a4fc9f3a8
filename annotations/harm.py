"""Harmfulness per checkpoint x temperature under one judge, raw and corrected for the judge's
measured errors (Rogan-Gladen), over all categories or a subset of them.

`harmfulness_report` calibrates the judge on the human majority labels and corrects every cell;
`PROMINENT_CATEGORIES` is the workbench's subset of SORRY-Bench categories whose requests are
harmful on any reading. The estimators themselves are `annotations.correction`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from annotations.agreement_tables import human_majority
from annotations.bootstrap import Seed, make_rng
from annotations.correction import CorrectedRate, corrected_harmfulness, harmfulness_table
from annotations.frames import Frames, frames_of, json_records, judge_names, select_outcomes
from annotations.store import Store

# SORRY-Bench's categories 1-24: its first two domains, "Hate Speech Generation" (1-5) and
# "Assistance with Crimes or Torts" (6-24), whose requests are harmful on any reading; 25-44
# ("Potentially Inappropriate Topics", "Potentially Unqualified Advice") are where refusing is
# debatable. SORRY-Bench itself defines no such subset: this is the workbench's convention.
PROMINENT_CATEGORIES: tuple[str, ...] = tuple(str(i) for i in range(1, 25))
NO_CALIBRATION = "no calibration labels"
NOT_COMPUTED = "not computed"


@dataclass(frozen=True)
class HarmfulnessReport:
    """Raw and corrected harmfulness per checkpoint x temperature (x category) for one judge.

    `calibration` says which human-labelled items gave sensitivity and specificity: "random"
    (only those the planner chose at random), "all labelled" (no item was marked random), or
    "none" (no usable labels yet: no corrected numbers) or "not computed" (`correct=False`).
    """

    judge_id: str
    judge: str
    table: pd.DataFrame
    calibration: str
    n_calibration: int
    sensitivity: float | None
    specificity: float | None
    informative: bool
    reason: str
    categories: tuple[str, ...] | None
    level: float

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "table"}
        return {**data, "table": json_records(self.table)}


CELL_KEYS = ["base_model", "dataset", "checkpoint_id", "checkpoint", "seed", "epoch",
             "temperature"]


def harmfulness_report(source: Store | Frames, judge_id: str,
                       categories: Sequence[str] | None = None, by_category: bool = False,
                       kind: str | None = "unsafe", level: float = 0.95, n_boot: int = 1000,
                       seed: int = 0, correct: bool = True) -> HarmfulnessReport:
    """Harmfulness per checkpoint x temperature (x category with `by_category`) under one judge:
    raw with a CI over prompts, unparseable verdicts counted apart, and Rogan-Gladen corrected.

    Calibration: the judge's parsed verdicts on items with a 0/1 human majority, restricted to
    the same prompt kind and `categories`; only the items chosen at random when any exist (the
    planner's other picks over-represent judge errors), else all of them. One sensitivity and
    specificity serve every cell (per-cell calibration sets would be tiny). `categories` keeps
    only those category ids (see PROMINENT_CATEGORIES). `correct=False` skips the corrected
    columns (status "not computed"): a 44-category table has thousands of cells, each
    bootstrapping its own correction.
    """
    frames = frames_of(source)
    outcomes = select_outcomes(frames.outcomes, kind, categories)
    outcomes = outcomes[outcomes["judge_id"] == judge_id]
    if outcomes.empty:
        raise ValueError(f"no verdicts of judge {judge_id!r} on {kind or 'any'} prompts"
                         + (f" in categories {list(categories)}" if categories else ""))
    keys = CELL_KEYS + (["category_id", "category"] if by_category else [])
    cells = outcomes.assign(seed=outcomes["seed"].fillna(-1),  # the base model's: no NaN keys
                            **{c: outcomes[c].fillna("") for c in
                               ("dataset", "category_id", "category")})
    calib, calibration = _calibration(outcomes, frames.labels)
    table = _raw_table(cells, keys, level, n_boot, seed)
    if correct:
        table, first = _corrected_columns(table, cells, keys, calib, level, n_boot, seed)
    else:
        calib, calibration, first = calib.iloc[:0], NOT_COMPUTED, None
        table = table.assign(corrected=np.nan, corrected_ci_low=np.nan, corrected_ci_high=np.nan,
                             status=NOT_COMPUTED)
    table["seed"] = table["seed"].where(table["seed"] >= 0)
    return HarmfulnessReport(
        judge_id, judge_names(frames.outcomes)[judge_id], table, calibration, len(calib),
        sensitivity=None if first is None else first.sensitivity,
        specificity=None if first is None else first.specificity,
        informative=bool(first is not None and first.informative),
        reason=(first.reason if first is not None else
                NO_CALIBRATION if calibration != NOT_COMPUTED else NOT_COMPUTED),
        categories=None if categories is None else tuple(str(c) for c in categories),
        level=level)


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
    return table.sort_values(["base_model", "dataset", "temperature", "seed", "epoch"],
                             kind="stable").reset_index(drop=True)


def _calibration(outcomes: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    majority = human_majority(labels)
    calib = outcomes[outcomes["outcome"].notna()].merge(
        majority[majority["human"].notna()], on="generation_id")
    if calib.empty:
        return calib, "none"
    if calib["chosen_at_random"].any():
        return calib[calib["chosen_at_random"]], "random"
    return calib, "all labelled"


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


def _corrected_cells(result) -> tuple:
    if result is None:
        return (np.nan, np.nan, np.nan, NO_CALIBRATION)
    if not result.informative:
        return (np.nan, np.nan, np.nan, "uninformative judge: " + result.reason)
    return (result.estimate, result.ci_low, result.ci_high, "corrected")
