"""The Validate tab's tables and plot series: `compute(ctx, filters, judge)` calls
`annotations.validation.validation` (the same functions, with the same choices, as the report) and
lays its results out as frames; tests and scripts call it directly, tool/dashboard.py shows them.
Nothing here computes a statistic: it selects, renames, joins and reshapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from annotations.frames import Frames
from annotations.records import CheckpointKind
from annotations.validation import Selection, Validation, validation
from tool.context import AppContext

Filters = Selection  # the tab's filters are the statistics' selection

JUDGE_COLUMNS = {"judge": "judge", "verdicts": "verdicts", "unparseable": "unparseable",
                 "n": "labelled", "kappa": "kappa", "accuracy": "accuracy",
                 "sensitivity": "sensitivity", "specificity": "specificity",
                 "kappa_coherent": "kappa coherent", "n_coherent": "n coherent",
                 "kappa_incoherent": "kappa incoherent", "n_incoherent": "n incoherent",
                 "people_alpha": "people alpha"}
HARM_COLUMNS = ["judge", "checkpoint", "base_model", "seed", "epoch", "temperature",
                "harmfulness", "ci_low", "ci_high", "corrected", "corrected_ci_low",
                "corrected_ci_high", "n", "unparseable", "status"]


@dataclass
class Dashboard:
    judges: pd.DataFrame
    confusion: pd.DataFrame
    alpha: dict
    harm: pd.DataFrame
    epochs: pd.DataFrame
    variance: pd.DataFrame
    capability: pd.DataFrame
    gold: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    judge: str | None = None  # the judge the plots, variance and capability rows are for
    result: Validation | None = None  # the numbers themselves, as annotations/ computed them


def compute(ctx: AppContext, filters: Filters, judge: str | None = None) -> Dashboard:
    """Everything the tab shows, as frames; `judge` is a judge's name (None: the primary)."""
    frames = Frames.from_store(ctx.store)
    names = dict(zip(frames.outcomes["judge_name"], frames.outcomes["judge_id"]))
    result = validation(frames, filters, names.get(judge) if judge else None,
                        n_boot=ctx.options.n_boot, gold=ctx.options.gold)
    shown = next((n for n, j in names.items() if j == result.primary), None)
    notes = [f"plots, variance shares and capability rows: judge {shown}"
             + ("" if judge else " (the closest to people)")] if shown else []
    harm = harm_table(result)
    return Dashboard(judge_table(result), confusion_table(result), alpha_row(result), harm,
                     epoch_lines(harm, shown), variance_table(result), result.capability,
                     result.gold, notes + result.notes, shown, result)


def judge_table(result: Validation) -> pd.DataFrame:
    table = result.judges.rename(columns=JUDGE_COLUMNS)
    for metric in ("kappa", "accuracy", "sensitivity", "specificity"):
        table[f"{metric} CI"] = [_interval(lo, hi) for lo, hi in
                                 zip(result.judges[f"{metric}_ci_low"],
                                     result.judges[f"{metric}_ci_high"])]
    keep = [*JUDGE_COLUMNS.values()] + [f"{m} CI" for m in ("kappa", "accuracy", "sensitivity",
                                                            "specificity")]
    return table[keep]


def _interval(low: float, high: float) -> str:
    return "" if pd.isna(low) else f"[{low:.2f}, {high:.2f}]"


def confusion_table(result: Validation) -> pd.DataFrame:
    """Per judge, people's majority (rows) against the judge (columns)."""
    rows = []
    agreement = result.agreement.agreement if result.agreement is not None else pd.DataFrame()
    if "confusion" not in agreement:
        return pd.DataFrame(columns=["judge", "human", "judge refuses", "judge complies"])
    majority = agreement[(agreement["reference"] == "majority")
                         & (agreement["coherence"] == "all")].dropna(subset=["confusion"])
    for name, ((tn, fp), (fn, tp)) in zip(majority["judge_name"], majority["confusion"]):
        rows += [{"judge": name, "human": "refuses", "judge refuses": tn, "judge complies": fp},
                 {"judge": name, "human": "complies", "judge refuses": fn, "judge complies": tp}]
    return pd.DataFrame(rows)


def alpha_row(result: Validation) -> dict:
    """People against people on the selected answers (the "all" row of human_alpha)."""
    if result.alpha is None or result.alpha.empty:
        return {"alpha": np.nan, "note": "no human labels yet"}
    return result.alpha.iloc[0].drop(labels=["category_id", "category"], errors="ignore").to_dict()


def harm_table(result: Validation) -> pd.DataFrame:
    tables = [r.table.assign(judge=r.judge) for r in result.harmfulness.values()]
    if not tables:
        return pd.DataFrame(columns=HARM_COLUMNS)
    table = pd.concat(tables, ignore_index=True)
    return table[[*HARM_COLUMNS, "checkpoint_kind"]].reset_index(drop=True)


def epoch_lines(harm: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    """Harmfulness against epoch for one judge: one line per seed x temperature, the base model
    at epoch 0 of every line; a second line per seed x temperature for the corrected rate where
    the judge could be corrected. Imported answers have no epochs: never on these lines."""
    if harm.empty or judge is None:
        return pd.DataFrame(columns=["epoch", "harmfulness", "series"])
    part = harm[harm["judge"] == judge]
    base = part[part["checkpoint_kind"] == CheckpointKind.BASE.value]
    tuned = part[part["checkpoint_kind"] == CheckpointKind.FINETUNED.value]
    frame = pd.concat([tuned, *[base.assign(seed=s) for s in sorted(tuned["seed"].unique())]],
                      ignore_index=True)
    frame["series"] = [f"seed {int(s)} · T={t:g}"
                       for s, t in zip(frame["seed"], frame["temperature"])]
    fixed = frame.dropna(subset=["corrected"]).assign(
        harmfulness=lambda f: f["corrected"], series=lambda f: f["series"] + " · corrected")
    frame = pd.concat([frame, fixed], ignore_index=True)
    return frame[["epoch", "harmfulness", "series"]].sort_values(["series", "epoch"])


def variance_table(result: Validation) -> pd.DataFrame:
    parts = [r.components.to_frame().assign(base_model=r.sweep[0], dataset=r.sweep[1])
             for r in result.variance]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def store_stamp(store) -> tuple[int, ...]:
    """What the dashboard reads has changed when any of these counts has: a cheap test, run on
    every tick of the auto-refresh, before anything is recomputed."""
    counts = store.counts()
    return tuple(counts[k] for k in ("checkpoints", "generations", "verdicts", "labels",
                                     "capability_scores"))
