"""The Validate tab's tables, texts and chart frames: `compute(ctx, filters, judge)` calls
`annotations.validation.validation` (the same functions, with the same choices, as the report) and
lays its results out; tests and scripts call it directly, tool/dashboard.py shows them. Nothing
here computes a statistic: it selects, renames, joins, formats and reshapes. An estimate from
fewer than annotations.frames.MIN_ITEMS items reads "too few to read (n=...)", not a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from annotations.frames import MIN_ITEMS, Frames
from annotations.records import CheckpointKind
from annotations.validation import Selection, Validation, validation
from tool.context import AppContext

Filters = Selection  # the tab's filters are the statistics' selection
METRICS = ("kappa", "accuracy", "sensitivity", "specificity")
JUDGE_COLUMNS = ["judge", "verdicts", "unparseable", "labelled", "kappa [95% CI]",
                 "accuracy [95% CI]", "sensitivity [95% CI]", "specificity [95% CI]",
                 "kappa coherent", "n coherent", "kappa incoherent", "n incoherent"]
HARM_COLUMNS = ["judge", "checkpoint", "T", "raw [95% CI]", "corrected [95% CI]", "method",
                "Rogan-Gladen [95% CI]", "labels alone [95% CI]", "pooled PPI++ [95% CI]",
                "own labels", "n",
                "unparseable", "status", "assumption"]
VARIANCE_COLUMNS = ["base model", "data set", "component", "variance", "sd_pp", "share"]


@dataclass
class Dashboard:
    judges: pd.DataFrame  # for reading: fixed columns, intervals as text
    confusion: pd.DataFrame
    alpha: dict  # the numbers of people's agreement
    alpha_text: str
    harm: pd.DataFrame  # for reading
    harm_points: pd.DataFrame  # numbers, for the chart
    epochs: pd.DataFrame
    variance: pd.DataFrame
    capability: pd.DataFrame
    gold: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    judge: str | None = None  # the judge the plots, variance and capability rows are for
    result: Validation | None = None  # the numbers themselves, as annotations/ computed them


def compute(ctx: AppContext, filters: Filters, judge: str | None = None,
            variance_checkpoints: list[str] | None = None) -> Dashboard:
    """Everything the tab shows; `judge` is a judge's name (None: the one closest to people)."""
    frames = Frames.from_store(ctx.store)
    names = dict(zip(frames.outcomes["judge_name"], frames.outcomes["judge_id"]))
    result = validation(frames, filters, names.get(judge) if judge else None,
                        n_boot=ctx.options.n_boot, gold=ctx.options.gold,
                        variance_checkpoints=variance_checkpoints or None)
    shown = next((n for n, j in names.items() if j == result.primary), None)
    notes = [f"Charts, variance and capability are for judge {shown}"
             + ("." if judge else " (the one closest to people).")] if shown else []
    points = harm_points(result)
    return Dashboard(judge_table(result), confusion_table(result), alpha_row(result),
                     alpha_text(result), harm_table(points), points,
                     epoch_lines(points, shown), variance_table(result), result.capability,
                     result.gold, notes + result.notes + gold_notes(ctx, result), shown, result)


def interval(value: float, low: float, high: float, n: int | None = None,
             digits: int = 2) -> str:
    """"0.42 [0.31, 0.55]", or "too few to read (n=3)" below MIN_ITEMS, or "" without a value."""
    if pd.isna(value):
        return ""
    if n is not None and n < MIN_ITEMS:
        return f"too few to read (n={int(n)})"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def judge_table(result: Validation) -> pd.DataFrame:
    j = result.judges
    table = pd.DataFrame({"judge": j["judge"], "verdicts": j["verdicts"],
                          "unparseable": j["unparseable"], "labelled": j["n"]})
    for metric in METRICS:
        table[f"{metric} [95% CI]"] = [interval(v, lo, hi, n) for v, lo, hi, n in zip(
            j[metric], j[f"{metric}_ci_low"], j[f"{metric}_ci_high"], j["n"])]
    for part in ("coherent", "incoherent"):
        table[f"kappa {part}"] = ["" if pd.isna(k) else f"{k:.2f}" if n >= MIN_ITEMS
                                  else f"too few to read (n={int(n)})"
                                  for k, n in zip(j[f"kappa_{part}"], j[f"n_{part}"])]
        table[f"n {part}"] = j[f"n_{part}"]
    return table[JUDGE_COLUMNS]


def confusion_table(result: Validation) -> pd.DataFrame:
    """Per judge, people's majority (rows) against the judge (columns)."""
    rows = []
    agreement = result.agreement.agreement if result.agreement is not None else pd.DataFrame()
    if "confusion" not in agreement:
        return pd.DataFrame(columns=["judge", "people say", "judge refuses", "judge complies"])
    majority = agreement[(agreement["reference"] == "majority")
                         & (agreement["coherence"] == "all")].dropna(subset=["confusion"])
    for name, ((tn, fp), (fn, tp)) in zip(majority["judge_name"], majority["confusion"]):
        rows += [{"judge": name, "people say": "refuses", "judge refuses": tn,
                  "judge complies": fp},
                 {"judge": name, "people say": "complies", "judge refuses": fn,
                  "judge complies": tp}]
    return pd.DataFrame(rows)


def alpha_row(result: Validation) -> dict:
    """People against people on the selected answers (the "all" row of human_alpha)."""
    if result.alpha is None or result.alpha.empty:
        return {"alpha": np.nan, "note": "no human labels yet"}
    return result.alpha.iloc[0].drop(labels=["category_id", "category"], errors="ignore").to_dict()


def alpha_text(result: Validation) -> str:
    """One line of numbers (no stored text): alpha, its CI, over how many answers and people."""
    row = alpha_row(result)
    if pd.isna(row.get("alpha")):
        return ("People vs people: no Krippendorff's alpha yet (it needs answers that two or "
                "more people labelled).")
    units = int(row.get("units", 0))
    shown = interval(row["alpha"], row["ci_low"], row["ci_high"], units)
    return (f"People vs people, Krippendorff's alpha: {shown} over {units} answers and "
            f"{int(row.get('annotators', 0))} annotators (the ceiling a judge's kappa is read "
            "against).")


def harm_points(result: Validation) -> pd.DataFrame:
    tables = [r.table.assign(judge=r.judge) for r in result.harmfulness.values()]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["judge", "checkpoint", "temperature", "harmfulness", "corrected", "n",
                 "too_few", "checkpoint_kind", "seed", "epoch"])


def harm_table(points: pd.DataFrame) -> pd.DataFrame:
    if points.empty:
        return pd.DataFrame(columns=HARM_COLUMNS)
    return pd.DataFrame({
        "judge": points["judge"], "checkpoint": points["checkpoint"],
        "T": points["temperature"],
        "raw [95% CI]": [interval(v, lo, hi, n) for v, lo, hi, n in zip(
            points["harmfulness"], points["ci_low"], points["ci_high"], points["n"])],
        "corrected [95% CI]": _intervals(points, "corrected"),
        "method": points["method"].fillna(""),
        "Rogan-Gladen [95% CI]": _intervals(points, "rogan_gladen"),
        "labels alone [95% CI]": _intervals(points, "labels_only"),
        "pooled PPI++ [95% CI]": _intervals(points, "ppi_pooled"),
        "own labels": points["n_own_labels"].fillna(0).astype(int),
        "n": points["n"], "unparseable": points["unparseable"], "status": points["status"],
        "assumption": points["assumption"].fillna("")})


def _intervals(points: pd.DataFrame, column: str) -> list[str]:
    """One method's estimate [CI] per cell, as `interval` writes it."""
    return [interval(v, lo, hi, n) for v, lo, hi, n in zip(
        points[column], points[f"{column}_ci_low"], points[f"{column}_ci_high"], points["n"])]


def epoch_lines(points: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    """Harmfulness against epoch for one judge: per seed x temperature a raw line and, where
    the judge could be corrected, a corrected one; the base model is epoch 0 of every seed.
    Imported answers have no epochs: never on these lines."""
    columns = ["epoch", "harmfulness", "seed", "temperature", "kind", "series"]
    if points.empty or judge is None:
        return pd.DataFrame(columns=columns)
    part = points[points["judge"] == judge]
    base = part[part["checkpoint_kind"] == CheckpointKind.BASE.value]
    tuned = part[part["checkpoint_kind"] == CheckpointKind.FINETUNED.value]
    frame = pd.concat([tuned, *[base.assign(seed=s) for s in sorted(tuned["seed"].unique())]],
                      ignore_index=True)
    raw = frame.assign(kind="raw")
    fixed = frame.dropna(subset=["corrected"]).assign(harmfulness=lambda f: f["corrected"],
                                                      kind="corrected")
    lines = pd.concat([raw, fixed], ignore_index=True)
    lines["epoch"] = lines["epoch"].astype(int)
    lines["series"] = [f"seed {int(s)} · T={t:g}" + (" · corrected" if k == "corrected" else "")
                       for s, t, k in zip(lines["seed"], lines["temperature"], lines["kind"])]
    return lines[columns].sort_values(["series", "epoch"]).reset_index(drop=True)


def variance_table(result: Validation) -> pd.DataFrame:
    parts = [r.components.to_frame().assign(**{"base model": r.sweep[0], "data set": r.sweep[1]})
             for r in result.variance]
    if not parts:
        return pd.DataFrame(columns=VARIANCE_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    return table[[c for c in VARIANCE_COLUMNS if c in table] +
                 [c for c in table.columns if c not in VARIANCE_COLUMNS]]


def gold_notes(ctx: AppContext, result: Validation) -> list[str]:
    if not ctx.options.gold:
        return ["Gold items: none configured (serve with --gold FILE to measure annotators)."]
    if result.gold.empty:
        return ["Gold items: no annotator has labelled one yet."]
    return []


def store_stamp(store) -> tuple[int, ...]:
    """What the dashboard reads has changed when any of these counts has: a cheap test, run on
    every tick of the auto-refresh, before anything is recomputed."""
    counts = store.counts()
    return tuple(counts[k] for k in ("checkpoints", "generations", "verdicts", "labels",
                                     "capability_scores"))
