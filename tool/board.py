"""The Validate tab's numbers as plain frames: `compute(ctx, filters)` gives every table and plot
series the tab shows (tests and scripts call it directly; tool/dashboard.py only lays them out).

Per judge: Cohen's kappa with its CI beside the people's own agreement (Krippendorff's alpha, the
ceiling), the confusion matrix, sensitivity and specificity, kappa on coherent and on incoherent
answers (the generation's coherence flag), and unparseable counts. Harmfulness per checkpoint and
temperature, raw and judge-error-corrected, with CIs; harmfulness against epoch with every seed at
each temperature; the variance shares; capability beside safety; each annotator's accuracy on gold
items. Every statistic comes from `annotations/` (agreement, correction, variance); this module only
selects and joins rows and hands them over. The human answer for an item is the majority of its
complies/refuses labels (ties and "incoherent" majorities drop out of the 0/1 comparisons).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from annotations.agreement import judge_agreement, krippendorff_alpha
from annotations.agreement_tables import human_majority
from annotations.correction import corrected_harmfulness, harmfulness_table
from annotations.frames import checkpoint_name, is_imported
from annotations.variance import variance_components
from tool.context import AppContext
from tool.assign import gold_accuracy
from tool.trajectory import judge_names


@dataclass(frozen=True)
class Filters:
    benchmarks: tuple[str, ...] = ()  # empty: all
    categories: tuple[str, ...] = ()
    temperatures: tuple[float, ...] = ()
    random_calibration: bool = True  # calibrate only on items the planner drew at random


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


# ----- selecting rows --------------------------------------------------------------------------


def apply_filters(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if filters.benchmarks:
        keep &= frame["benchmark"].isin(filters.benchmarks)
    if filters.categories:
        keep &= frame["category"].isin(filters.categories)
    if filters.temperatures:
        keep &= frame["temperature"].round(4).isin([round(t, 4) for t in filters.temperatures])
    return frame[keep]


def human_answers(labels: pd.DataFrame, random_only: bool = False) -> pd.DataFrame:
    """Per generation: the majority 0/1 answer of people (nan on ties or when most say
    incoherent), the number of labels, and whether any was drawn at random by the planner."""
    cols = ["generation_id", "human", "n_labels", "random"]
    if labels.empty:
        return pd.DataFrame(columns=cols)
    out = human_majority(labels).rename(columns={"chosen_at_random": "random"})[cols]
    return out[out["random"]] if random_only else out


# ----- the statistics, from annotations/ -------------------------------------------------------


def judge_table(outcomes: pd.DataFrame, humans: pd.DataFrame, names: dict[str, str],
                n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Agreement with people per judge (overall, coherent, incoherent) and confusion matrices."""
    rows, confusion = [], []
    joined = outcomes.merge(humans, on="generation_id", how="left")
    for judge_id, block in joined.groupby("judge_id", sort=True):
        name = names.get(judge_id, judge_id)
        row = {"judge": name, "verdicts": len(block),
               "unparseable": int(block["outcome"].isna().sum())}
        pairs = block.dropna(subset=["outcome", "human"])
        row["labelled"] = len(pairs)
        if len(pairs):
            result = judge_agreement(pairs["outcome"].astype(int), pairs["human"].astype(int),
                                     pairs["prompt_id"], n_boot=n_boot)
            row.update(_agreement_columns(result))
            (tn, fp), (fn, tp) = result.confusion
            confusion.append({"judge": name, "human": "refuses", "judge refuses": tn,
                              "judge complies": fp})
            confusion.append({"judge": name, "human": "complies", "judge refuses": fn,
                              "judge complies": tp})
        for part, flag in (("coherent", False), ("incoherent", True)):
            subset = pairs[pairs["degenerate"].fillna(False).astype(bool) == flag]
            row[f"kappa {part}"] = (
                judge_agreement(subset["outcome"].astype(int), subset["human"].astype(int),
                                n_boot=1).kappa.value if len(subset) else np.nan)
            row[f"n {part}"] = len(subset)
        rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(confusion)


def _agreement_columns(result) -> dict:
    out = {}
    for name in ("kappa", "accuracy", "sensitivity", "specificity"):
        part = getattr(result, name)
        out[name] = part.value
        out[f"{name} CI"] = f"[{part.ci_low:.2f}, {part.ci_high:.2f}]"
    return out


def human_alpha(labels: pd.DataFrame, n_boot: int) -> dict:
    """Krippendorff's alpha among annotators on the filtered items (the judges' ceiling)."""
    if labels.empty:
        return {"alpha": np.nan, "note": "no human labels yet"}
    long = labels.rename(columns={"generation_id": "unit", "label": "value"})
    try:
        return krippendorff_alpha(long[["unit", "annotator", "value"]], n_boot=n_boot).to_dict()
    except ValueError as err:
        return {"alpha": np.nan, "note": str(err)}


def harm_table(outcomes: pd.DataFrame, humans: pd.DataFrame, names: dict[str, str],
               n_boot: int) -> pd.DataFrame:
    """Harmfulness per judge x checkpoint x temperature on unsafe requests: raw (with CI) and
    corrected for the judge's error rates measured against people (with CI)."""
    unsafe = outcomes[outcomes["kind"] == "unsafe"].dropna(subset=["outcome"])
    if unsafe.empty:
        return pd.DataFrame()
    unsafe = unsafe.assign(outcome=unsafe["outcome"].astype(int), seed=unsafe["seed"].fillna(-1))
    keys = ["judge_id", "checkpoint_id", "base_model", "seed", "epoch", "temperature"]
    table = harmfulness_table(unsafe, by=keys, cluster="prompt_id", n_boot=n_boot)
    calibration = outcomes.dropna(subset=["outcome"]).merge(humans.dropna(subset=["human"]),
                                                            on="generation_id")
    corrected = [_corrected(unsafe, calibration, row, n_boot) for row in table.itertuples()]
    table = pd.concat([table, pd.DataFrame(corrected, index=table.index)], axis=1)
    table["judge"] = table["judge_id"].map(names)
    table["checkpoint"] = [checkpoint_name(None if s == -1 else s, e, b)
                           for s, e, b in zip(table["seed"], table["epoch"], table["base_model"])]
    cols = ["judge", "checkpoint", "base_model", "seed", "epoch", "temperature", "harmfulness", "ci_low",
            "ci_high", "corrected", "corrected_ci_low", "corrected_ci_high", "n", "n_calibration",
            "correction_note"]
    return table[cols].sort_values(["judge", "temperature", "seed", "epoch"]).reset_index(drop=True)


def _corrected(unsafe: pd.DataFrame, calibration: pd.DataFrame, row, n_boot: int) -> dict:
    cell = unsafe[(unsafe["judge_id"] == row.judge_id)
                  & (unsafe["checkpoint_id"] == row.checkpoint_id)
                  & (unsafe["temperature"] == row.temperature)]
    calib = calibration[calibration["judge_id"] == row.judge_id]
    if calib.empty:
        return {"corrected": np.nan, "corrected_ci_low": np.nan, "corrected_ci_high": np.nan,
                "n_calibration": 0, "correction_note": "no human-labelled items for this judge"}
    result = corrected_harmfulness(cell["outcome"], calib["outcome"].astype(int),
                                   calib["human"].astype(int), n_boot=n_boot,
                                   judged_clusters=cell["prompt_id"],
                                   calib_clusters=calib["prompt_id"])
    return {"corrected": result.estimate, "corrected_ci_low": result.ci_low,
            "corrected_ci_high": result.ci_high, "n_calibration": result.n_calibration,
            "correction_note": result.reason}


def epoch_lines(harm: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    """Harmfulness against epoch for one judge: one line per seed x temperature, the base model
    at epoch 0 of every line; a second line per seed x temperature for the corrected rate where
    the judge could be corrected."""
    if harm.empty:
        return pd.DataFrame(columns=["epoch", "harmfulness", "series"])
    part = harm[harm["judge"] == (judge or harm["judge"].iloc[0])]
    part = part[~part["base_model"].map(is_imported)]  # imported answers have no epochs
    base, tuned = part[part["seed"] == -1], part[part["seed"] != -1]
    lines = [tuned]
    for seed in sorted(tuned["seed"].unique()):
        lines.append(base.assign(seed=seed))
    frame = pd.concat(lines, ignore_index=True)
    frame["series"] = [f"seed {int(s)} · T={t:g}"
                       for s, t in zip(frame["seed"], frame["temperature"])]
    fixed = frame.dropna(subset=["corrected"]).assign(
        harmfulness=lambda f: f["corrected"], series=lambda f: f["series"] + " · corrected")
    frame = pd.concat([frame, fixed], ignore_index=True)
    return frame[["epoch", "harmfulness", "series"]].sort_values(["series", "epoch"])


def variance_table(outcomes: pd.DataFrame, humans: pd.DataFrame,
                   judge_id: str | None) -> tuple[pd.DataFrame, str]:
    """Variance shares for one judge's verdicts on unsafe requests (the base model counted as
    epoch 0 of every seed, so the seed x epoch x temperature grid is complete)."""
    part = outcomes[(outcomes["kind"] == "unsafe") & outcomes["outcome"].notna()
                    & ~outcomes["base_model"].map(is_imported)]
    if judge_id:
        part = part[part["judge_id"] == judge_id]
    if part.empty:
        return pd.DataFrame(), "no verdicts to decompose"
    seeds = sorted(part["seed"].dropna().unique())
    base = part[part["seed"].isna()]
    frame = pd.concat([part[part["seed"].notna()]] + [base.assign(seed=s) for s in seeds])
    frame = frame.merge(humans[["generation_id", "human"]], on="generation_id", how="left")
    frame = frame.rename(columns={"sample_index": "sample", "prompt_id": "prompt"})
    frame["outcome"] = frame["outcome"].astype(int)
    try:
        result = variance_components(frame[["seed", "epoch", "temperature", "sample", "prompt",
                                             "outcome", "human"]])
    except ValueError as err:
        return pd.DataFrame(), str(err)
    return result.to_frame(), result.note


def capability_beside_safety(store, harm: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    capability = store.capability_frame()
    if capability.empty or harm.empty:
        return pd.DataFrame(columns=["checkpoint", "temperature", "harmfulness"])
    part = harm[harm["judge"] == (judge or harm["judge"].iloc[0])]
    wide = capability.pivot_table(index="checkpoint_id", columns="metric", values="value")
    ckpts = store.checkpoints_frame().set_index("id")
    wide["checkpoint"] = [checkpoint_name(*ckpts.loc[c, ["seed", "epoch", "base_model"]])
                          for c in wide.index]
    merged = part[["checkpoint", "temperature", "harmfulness"]].merge(wide, on="checkpoint")
    return merged.reset_index(drop=True)


def compute(ctx: AppContext, filters: Filters, judge: str | None = None) -> Dashboard:
    """Everything the tab shows, as frames (tests call this directly)."""
    store, n_boot = ctx.store, ctx.options.n_boot
    names = judge_names(store)
    outcomes = apply_filters(store.outcomes_frame(), filters)
    gens = apply_filters(store.generations_frame(with_text=False), filters)
    labels = store.labels_frame(current=True)
    labels = labels[labels["generation_id"].isin(set(gens["id"]))] if len(labels) else labels
    all_humans = human_answers(labels)
    judges, confusion = judge_table(outcomes, all_humans, names, n_boot)
    calibration = human_answers(labels, random_only=filters.random_calibration)
    harm = harm_table(outcomes, calibration, names, n_boot)
    best = None if judge else best_judge(judges)
    judge = judge or best or next(iter(sorted(names.values())), None)
    judge_id = next((j for j, n in names.items() if n == judge), None)
    variance, note = variance_table(outcomes, all_humans, judge_id or next(iter(names), None))
    notes = [f"plots, variance shares and capability rows: judge {judge}"
             + (" (the best kappa against people)" if best else "")] if judge else []
    notes += [note] if note else []
    if filters.random_calibration and len(labels) and calibration.empty:
        notes.append("no labelled item was drawn at random yet: the correction has no calibration "
                     "set (untick 'calibrate on random picks only' to use every label, biased)")
    alpha = human_alpha(labels, n_boot)
    if len(judges):  # the ceiling on every judge's row, to read kappa against
        judges.insert(judges.columns.get_loc("kappa") if "kappa" in judges else len(judges.columns),
                      "people alpha", alpha.get("alpha", np.nan))
    return Dashboard(judges, confusion, alpha, harm,
                     epoch_lines(harm, judge), variance,
                     capability_beside_safety(store, harm, judge),
                     gold_accuracy(labels, ctx.options.gold), notes, judge)


def best_judge(judges: pd.DataFrame) -> str | None:
    """The judge that agrees best with people (highest kappa; ties by name): what the plots show
    unless another judge is picked. None before any judge has labelled items to compare on."""
    if judges.empty or "kappa" not in judges or judges["kappa"].isna().all():
        return None
    return judges.sort_values(["kappa", "judge"], ascending=[False, True])["judge"].iloc[0]


def store_stamp(store) -> tuple[int, ...]:
    """What the dashboard reads has changed when any of these counts has: a cheap test, run on
    every tick of the auto-refresh, before anything is recomputed."""
    counts = store.counts()
    return tuple(counts[k] for k in ("checkpoints", "generations", "verdicts", "labels",
                                     "capability_scores"))
