"""Harmfulness per checkpoint x temperature under one judge, raw and corrected for the judge's
measured errors, over all categories or a subset of them: `harmfulness_report`.

This is the one place harmfulness is computed: the report, the app's Validate tab, the demo
summary and the CLI all call it with the same choices, so one question gets one answer.
- Cells: one per checkpoint x temperature (x category); `benchmarks`, `categories` and
  `temperatures` keep only some answers; the prompt kind (unsafe by default) is always one kind.
- Calibration: the judge's parsed verdicts on answers of the same prompt kind (and the same
  `categories`, since a judge errs differently by category) with a 0/1 human majority, whatever
  their benchmark or temperature (an imported calibration set is its own benchmark). Only
  answers the planner drew at random (or imported as a random sample) calibrate: the other
  picks over-represent the judge's errors. `random_only=False` uses every label, biased, and
  says so.
- Corrected: every method the labels allow, each with its interval (`annotations.estimates`:
  PPI++ on the cell's own labels and on pooled ones, Rogan-Gladen with one sensitivity and
  specificity for every cell, the cell's labels alone), and the headline in `corrected*` with
  the `method` it came from and the `assumption` it rests on.
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
from annotations.estimates import (ESTIMATE_COLUMNS, PREFIX, Calibration, Method,
                                   cell_estimates, headline, label_weights, readings)
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
    n_labelled: int = 0  # random-labelled answers (every reading) the PPI estimates use
    probabilities: bool = False  # the judge gives P(complies), not only verdicts

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "table"}
        return {**data, "kind": self.kind.value, "calibration": self.calibration.value,
                "table": json_records(self.table)}


CELL_KEYS = ["checkpoint_id", "temperature"]
CHECKPOINT_COLUMNS = ["base_model", "dataset", "checkpoint", "checkpoint_kind", "import_source",
                      "seed", "epoch", "step", "examples_seen"]


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
    ppi = Calibration.of(mine, frames.labels, random_only)
    first = None
    if correct:
        table, first = _corrected_columns(
            table, cells, _Corrections(calib, ppi, keys, level, n_boot), seed)
        calibration = _source(calibration, ppi, random_only)
    else:
        calib, calibration = calib.iloc[:0], CalibrationSource.NOT_COMPUTED
        table = table.assign(**{c: np.nan for c in ESTIMATE_COLUMNS}, n_own_labels=0,
                             corrected=np.nan, corrected_ci_low=np.nan, corrected_ci_high=np.nan,
                             method=None, assumption=None, status=CellStatus.NOT_COMPUTED.value)
    return HarmfulnessReport(
        judge_id, judge_names(frames.outcomes)[judge_id], PromptKind(kind), table, calibration,
        len(calib), sensitivity=None if first is None else first.sensitivity,
        specificity=None if first is None else first.specificity,
        informative=bool(first is not None and first.informative),
        reason=first.reason if first is not None else _no_correction(calibration),
        categories=None if categories is None else tuple(str(c) for c in categories),
        level=level, n_labelled=len(ppi.items) if correct else 0,
        probabilities=ppi.probabilities)


def _selected(outcomes: pd.DataFrame, benchmarks: Sequence[str] | None,
              temperatures: Sequence[float] | None) -> pd.DataFrame:
    keep = pd.Series(True, index=outcomes.index)
    if benchmarks:
        keep &= outcomes["benchmark"].isin(list(benchmarks))
    if temperatures:
        keep &= outcomes["temperature"].round(4).isin([round(float(t), 4) for t in temperatures])
    return outcomes[keep]


def _source(calibration: CalibrationSource, ppi: Calibration,
            random_only: bool) -> CalibrationSource:
    """The calibration source, counting the PPI calibration too: answers people read as
    incoherent, or labelled with a tie, calibrate PPI but not Rogan-Gladen."""
    if calibration != CalibrationSource.NONE or ppi.items.empty:
        return calibration
    return CalibrationSource.RANDOM if random_only else CalibrationSource.ALL_LABELLED


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
    order = ["base_model", "dataset", "temperature", "checkpoint_kind", "seed", "epoch",
             "examples_seen"]
    return table.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)


def _calibration(outcomes: pd.DataFrame, labels: pd.DataFrame,
                 random_only: bool) -> tuple[pd.DataFrame, CalibrationSource]:
    majority = human_majority(labels).merge(
        readings(labels)[["generation_id", "inclusion_probability"]], on="generation_id")
    calib = outcomes[outcomes["outcome"].notna()].merge(
        majority[majority["human"].notna()], on="generation_id")
    calib = calib.assign(weight=label_weights(calib["inclusion_probability"]))
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
                                 calib_clusters=calib["prompt_id"], calib_weights=calib["weight"])


@dataclass(frozen=True)
class _Corrections:
    """What the corrected columns need: the Rogan-Gladen calibration (0/1 majorities) and the
    PPI one (every random label), the cell keys, and the settings."""

    rogan: pd.DataFrame
    ppi: Calibration
    keys: list[str]
    level: float
    n_boot: int


def _corrected_columns(table: pd.DataFrame, cells: pd.DataFrame, corrections: _Corrections,
                       seed: int) -> tuple[pd.DataFrame, CorrectedRate | None]:
    """The table with every method's columns and the headline (`corrected*`, `method`,
    `assumption`, `status`); and one cell's Rogan-Gladen result (every cell shares its
    calibration, so its sensitivity, specificity and verdict on the judge hold for all)."""
    keys, rng, rows, first = corrections.keys, make_rng(seed), [], None
    by_key = dict(list(cells[cells["outcome"].notna()].groupby(keys, sort=False)))
    own_items = corrections.ppi.items.assign(
        **{c: corrections.ppi.items[c].fillna("") for c in ("category_id", "category")})
    own_by_key = dict(list(own_items.groupby(keys, sort=False))) if len(own_items) else {}
    for key in table[keys].itertuples(index=False):
        block = by_key.get(tuple(key))
        rogan = None if block is None else _correct(block["outcome"], block["prompt_id"],
                                                    corrections.rogan, corrections.level,
                                                    corrections.n_boot, rng)
        first = first or rogan
        own = own_by_key.get(tuple(key), own_items.iloc[:0])
        rows.append(_method_cells(block, rogan, own, corrections))
    extra = pd.DataFrame(rows, index=table.index, columns=[*ESTIMATE_COLUMNS, "n_own_labels"])
    table = pd.concat([table, extra], axis=1)
    chosen = [headline(row) for _, row in table.iterrows()]
    return table.assign(**_headline_columns(table, chosen, first)), first


def _method_cells(block: pd.DataFrame | None, rogan: CorrectedRate | None, own: pd.DataFrame,
                  corrections: _Corrections) -> list:
    """One cell's estimate and interval by every method (NaN where a method has none), and its
    number of own random labels."""
    rates = ({} if block is None else
             cell_estimates(block, corrections.ppi, own, corrections.level))
    values = []
    for method in Method:
        if method == Method.ROGAN_GLADEN:
            ok = rogan is not None and rogan.informative
            values += [rogan.estimate, rogan.ci_low, rogan.ci_high] if ok else [np.nan] * 3
        else:
            rate = rates.get(method)
            values += [np.nan] * 3 if rate is None else [rate.estimate, rate.ci_low,
                                                         rate.ci_high]
    return [*values, len(own)]


def _headline_columns(table: pd.DataFrame, chosen: list[Method | None],
                      rogan: CorrectedRate | None) -> dict[str, list]:
    """corrected, its interval, method, assumption and status from each cell's chosen method."""
    def pick(method: Method | None, row: pd.Series, suffix: str) -> float:
        return np.nan if method is None else row[f"{PREFIX[method]}{suffix}"]

    rows = [row for _, row in table.iterrows()]
    status = (CellStatus.NO_CALIBRATION.value if rogan is None or rogan.informative else
              f"{CellStatus.UNINFORMATIVE.value}: {rogan.reason}")
    return {"corrected": [pick(m, r, "") for m, r in zip(chosen, rows)],
            "corrected_ci_low": [pick(m, r, "_ci_low") for m, r in zip(chosen, rows)],
            "corrected_ci_high": [pick(m, r, "_ci_high") for m, r in zip(chosen, rows)],
            "method": [None if m is None else m.value for m in chosen],
            "assumption": [None if m is None else m.assumption for m in chosen],
            "status": [CellStatus.CORRECTED.value if m is not None else status for m in chosen]}


def capability_table(source: Store | Frames,
                     report: HarmfulnessReport | None = None) -> pd.DataFrame:
    """One row per checkpoint with capability scores: its attributes and one column per metric,
    and with a `report`, its harmfulness at each temperature beside them (`harmfulness_t0`, ...):
    capability beside safety, as the report, the app and the demo summary show it."""
    frames = frames_of(source)
    if frames.capability.empty or frames.checkpoints.empty:
        return pd.DataFrame()
    capability = frames.capability.copy()
    shared = capability.groupby("metric")["benchmark"].transform("nunique") > 1
    capability["column"] = capability["metric"].where(  # a metric on two task sets: say which
        ~shared, capability["metric"] + " (" + capability["benchmark"].astype(str) + ")")
    scores = capability.pivot_table(index="checkpoint_id", columns="column", values="value")
    scores.columns.name = None
    points = frames.checkpoints.assign(
        checkpoint=lambda f: checkpoint_names(f, kind="kind", source="source")).rename(
        columns={"id": "checkpoint_id"}).set_index("checkpoint_id")
    table = points[["base_model", "dataset", "checkpoint", "seed", "epoch", "step",
                    "examples_seen"]].join(scores, how="inner")
    if report is not None:
        rates = report.table.pivot_table(index="checkpoint_id", columns="temperature",
                                         values="harmfulness")
        rates.columns = [f"harmfulness_t{t:g}" for t in rates.columns]
        table = table.join(rates, how="inner")
    return table.reset_index()
