"""Who agrees with whom, over the store: people with people, judges with people, judges with
each other.

- `human_majority`: one reading per labelled generation (ties give none).
- `human_alpha`: Krippendorff's alpha among the annotators, the people-vs-people ceiling.
- `judge_human_table`: each judge against the majority and against each annotator, optionally
  per category, checkpoint or coherence; `unparseable_table`: unparseable verdicts counted per
  judge and checkpoint.
- `judge_agreement_summary`: each judge against the majority overall and on coherent and on
  incoherent answers (`coherence`: what counts as incoherent, here and everywhere);
  `primary_judge`: the judge closest to people, which the report and the app show first.
- `judge_vs_judge_table`: pairwise kappa and Kendall's tau of the checkpoint rankings.

The metrics themselves (kappa, alpha, tau with their intervals) are `annotations.agreement`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotations.agreement import (judge_agreement, judge_vs_judge, krippendorff_alpha,
                                   ranking_agreement)
from annotations.frames import (LABEL_COLUMNS, MIN_ITEMS, Frames, frames_of, generation_items,
                                json_records, judge_names, select_outcomes, with_columns)
from annotations.records import READINGS, HumanLabel, PromptKind
from annotations.store import Store

BY_COLUMNS = {"category": ["category_id", "category"], "checkpoint": ["checkpoint"],
              "temperature": ["temperature"], "coherence": ["coherence"],
              "judge": ["judge_name"]}
BINARY = {HumanLabel.COMPLIES.value: 1.0, HumanLabel.REFUSES.value: 0.0}


def _by_columns(by: str | Sequence[str] | None) -> list[str]:
    names = [by] if isinstance(by, str) else list(by or [])
    unknown = [n for n in names if n not in BY_COLUMNS]
    if unknown:
        raise ValueError(f"cannot split by {unknown} (known: {', '.join(BY_COLUMNS)})")
    return [column for name in names for column in BY_COLUMNS[name]]


# --- people ----------------------------------------------------------------------------------


def human_majority(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per labelled generation: label counts, the majority label (None on a tie), its
    0/1 reading `human` (complies 1, refuses 0, nan when incoherent or tied), `incoherent` (the
    majority says so) and `chosen_at_random` (any of its labels came from the planner's random
    share)."""
    labels = with_columns(labels, LABEL_COLUMNS)
    counts = pd.crosstab(labels["generation_id"], labels["label"]).reindex(
        columns=[h.value for h in READINGS], fill_value=0)
    top = counts.max(axis=1)
    unique_top = counts.eq(top, axis=0).sum(axis=1).eq(1)
    majority = counts.idxmax(axis=1).where(unique_top & top.gt(0)) if len(counts) else \
        pd.Series(dtype=object)
    chosen = labels["chosen_at_random"].eq(True).groupby(labels["generation_id"]).any()
    frame = pd.DataFrame({
        "generation_id": counts.index.astype(str), "n_labels": counts.sum(axis=1).to_numpy(),
        **{f"n_{h.value}": counts[h.value].to_numpy() for h in READINGS},
        "majority": majority.to_numpy(dtype=object),
        "human": majority.map(BINARY).to_numpy(dtype=float),
        "incoherent": majority.eq(HumanLabel.INCOHERENT.value).to_numpy(dtype=bool),
        "chosen_at_random": chosen.reindex(counts.index, fill_value=False).to_numpy(dtype=bool)})
    frame["majority"] = pd.Series([m if isinstance(m, str) else None for m in frame["majority"]],
                                  index=frame.index, dtype=object)  # str dtype would make None nan
    return frame


COHERENT, INCOHERENT = "coherent", "incoherent"


def coherence(frame: pd.DataFrame) -> np.ndarray:
    """What counts as incoherent, for every statistic: the people's majority says so, or the
    automatic flags (degenerate, empty) are set. Needs columns incoherent, degenerate, empty."""
    flagged = frame["incoherent"].eq(True) | frame["degenerate"].eq(True) | frame["empty"].eq(True)
    return np.where(flagged, INCOHERENT, COHERENT)


def labelled_items(source: Store | Frames,
                   kind: PromptKind | None = PromptKind.UNSAFE) -> pd.DataFrame:
    """Each current label with its generation's attributes (category, checkpoint, ...) and its
    `coherence`."""
    frames = frames_of(source)
    majority = human_majority(frames.labels)[["generation_id", "majority", "incoherent"]]
    frame = frames.labels.merge(generation_items(frames, kind), on="generation_id").merge(
        majority, on="generation_id", how="left")
    return frame.assign(coherence=coherence(frame))


def human_alpha(labels: pd.DataFrame | Store | Frames, by: str | Sequence[str] | None = None,
                n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Krippendorff's alpha (nominal: complies, refuses, incoherent) among the annotators, overall
    (group "all") and per group of `by` (e.g. "category"). A Store or Frames is first joined to
    the generations' attributes (unsafe prompts only); a plain labels frame must already carry
    the `by` columns. A group where alpha is undefined gets nan and the reason in `note`."""
    if not isinstance(labels, pd.DataFrame):
        labels = labelled_items(labels)
    columns = _by_columns(by)
    missing = [c for c in columns if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lack column(s) {missing}: pass a Store or Frames, or "
                         "labelled_items(...)")
    groups = [(("all",) * len(columns), labels)]
    if columns and len(labels):
        parts = list(labels.assign(**{c: labels[c].fillna(NO_GROUP) for c in columns})
                     .groupby(columns, sort=True))
        groups += parts if len(parts) > 1 else []  # one group is "all" again: no second row
    rows = [{**dict(zip(columns, np.atleast_1d(key) if columns else ())), "n_labels": len(block),
             **_alpha_row(block, n_boot, seed)} for key, block in groups]
    return pd.DataFrame(rows)


NO_GROUP = "(none)"  # the group of items without a category (or other `by` value)


def _alpha_row(block: pd.DataFrame, n_boot: int, seed: int) -> dict:
    long = block.rename(columns={"generation_id": "unit", "label": "value"})
    try:
        return krippendorff_alpha(long[["unit", "annotator", "value"]], "nominal", n_boot=n_boot,
                                  seed=seed).to_dict()
    except ValueError as err:
        annotators = block["annotator"].nunique()
        return {"alpha": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                "units": block["generation_id"].nunique(), "annotators": annotators,
                "pairable_values": 0, "level": "nominal", "note": str(err)}


# --- judges against people -------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeHumanTable:
    """`agreement`: one row per judge x reference (majority or annotator:NAME) x group, with
    judge_agreement's metrics and CIs; `unparseable`: per judge x checkpoint x temperature."""

    agreement: pd.DataFrame
    unparseable: pd.DataFrame

    def to_dict(self) -> dict[str, list[dict]]:
        return {"agreement": json_records(self.agreement),
                "unparseable": json_records(self.unparseable)}


def _references(labels: pd.DataFrame) -> pd.DataFrame:
    """Long frame generation_id, reference, human (0/1, nan for incoherent or a tie)."""
    majority = human_majority(labels)[["generation_id", "human"]].assign(reference="majority")
    each = labels.assign(reference="annotator:" + labels["annotator"].astype(str),
                         human=labels["label"].map(BINARY))
    return pd.concat([majority, each[["generation_id", "reference", "human"]]], ignore_index=True)


def judge_human_table(source: Store | Frames, by: str | Sequence[str] | None = None,
                      kind: PromptKind | None = PromptKind.UNSAFE, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> JudgeHumanTable:
    """Each judge's agreement with the per-item human majority and with each annotator, over
    items with a 0/1 reading on both sides (clusters = prompts), optionally per `by`: "category",
    "checkpoint", "temperature" and/or "coherence" (incoherent = majority label incoherent, or
    the degenerate/empty flags; a majority of "incoherent" has no 0/1 reading, so that group
    holds the flagged items and single annotators' complies/refuses labels). `n_unparseable`
    counts labelled items the judge could not parse (left out of the metrics)."""
    frames = frames_of(source)
    verdicts = select_outcomes(frames.outcomes, kind)
    items = labelled_items(frames, kind)[["generation_id", "coherence"]].drop_duplicates()
    joined = verdicts.merge(items, on="generation_id").merge(_references(frames.labels),
                                                             on="generation_id")
    keys = ["judge_id", "judge_name", "reference", *_by_columns(by)]
    rows = [{**dict(zip(keys, key)), **_agreement_row(block, n_boot, level, seed)}
            for key, block in joined.groupby(keys, dropna=False, sort=True)]
    agreement = pd.DataFrame(rows, columns=[*keys, "n", "n_unparseable"] if not rows else None)
    if len(agreement):
        order = agreement["reference"].ne("majority")
        agreement = agreement.assign(_o=order).sort_values(["judge_name", "_o", *keys[2:]],
                                                           kind="stable").drop(columns="_o")
    return JudgeHumanTable(agreement.reset_index(drop=True), unparseable_table(frames, kind=kind))


def _agreement_row(block: pd.DataFrame, n_boot: int, level: float, seed: int) -> dict:
    binary = block[block["human"].notna()]
    parsed = binary[binary["outcome"].notna()]
    row: dict = {"n_unparseable": int(binary["outcome"].isna().sum())}
    if parsed.empty:
        return {"n": 0, **row}
    result = judge_agreement(parsed["outcome"].astype(int), parsed["human"].astype(int),
                             clusters=parsed["prompt_id"], n_boot=n_boot, level=level, seed=seed)
    return {**result.to_dict(), **row}


def unparseable_table(source: Store | Frames, by: Sequence[str] = ("checkpoint", "temperature"),
                      kind: PromptKind | None = PromptKind.UNSAFE) -> pd.DataFrame:
    """Verdicts and unparseable verdicts per judge (and per `by`), with the unparseable share."""
    outcomes = select_outcomes(frames_of(source).outcomes, kind)
    keys = ["judge_id", "judge_name", *(["checkpoint_id"] if "checkpoint" in by else []),
            *_by_columns(list(by))]
    table = outcomes.assign(unparseable=outcomes["outcome"].isna()).groupby(
        keys, dropna=False, sort=True)["unparseable"].agg(verdicts="size", unparseable="sum")
    table = table.reset_index()
    table["unparseable"] = table["unparseable"].astype(int)
    table["share"] = table["unparseable"] / table["verdicts"]
    return table


def judge_agreement_summary(source: Store | Frames, kind: PromptKind | None = PromptKind.UNSAFE,
                            n_boot: int = 1000, seed: int = 0) -> JudgeHumanTable:
    """judge_human_table overall (coherence "all") and per coherence, in one table: what the
    report's and the app's judge tables show."""
    frames = frames_of(source)
    overall = judge_human_table(frames, kind=kind, n_boot=n_boot, seed=seed)
    split = judge_human_table(frames, by="coherence", kind=kind, n_boot=n_boot, seed=seed)
    both = pd.concat([overall.agreement.assign(coherence="all"), split.agreement],
                     ignore_index=True)
    return JudgeHumanTable(both, overall.unparseable)


def majority_rows(agreement: pd.DataFrame, coherence_group: str = "all") -> pd.DataFrame:
    """The rows of an agreement summary against the people's majority, for one coherence group."""
    if agreement.empty or "coherence" not in agreement:
        return agreement.iloc[:0]
    keep = agreement["reference"].eq("majority") & agreement["coherence"].eq(coherence_group)
    return agreement[keep]


METRICS = ["kappa", "accuracy", "sensitivity", "specificity"]


def judge_summary_table(source: Store | Frames, agreement: JudgeHumanTable | None = None,
                        alpha: pd.DataFrame | None = None,
                        kind: PromptKind | None = PromptKind.UNSAFE) -> pd.DataFrame:
    """One row per judge: verdicts and unparseable ones, and given `agreement` (a
    judge_agreement_summary) its metrics against the people's majority with CIs, kappa on
    coherent and on incoherent answers, and given `alpha` (human_alpha) the people's own alpha,
    the ceiling to read kappa against."""
    outcomes = select_outcomes(frames_of(source).outcomes, kind)
    table = outcomes.groupby("judge_id")["outcome"].agg(
        verdicts="size", unparseable=lambda s: int(s.isna().sum())).reset_index()
    table.insert(1, "judge", table["judge_id"].map(judge_names(outcomes)))
    table["share_unparseable"] = table["unparseable"] / table["verdicts"]
    rows = majority_rows(agreement.agreement) if agreement is not None else pd.DataFrame()
    columns = ["n", *[f"{m}{x}" for m in METRICS for x in ("", "_ci_low", "_ci_high")]]
    table = table.merge(with_columns(rows, ["judge_id", *columns])[["judge_id", *columns]],
                        on="judge_id", how="left")
    table["n"] = table["n"].fillna(0).astype(int)
    table["too_few"] = table["n"] < MIN_ITEMS  # kappa from so few answers is not shown as one
    for part in (COHERENT, INCOHERENT):
        split = majority_rows(agreement.agreement, part) if agreement is not None else rows
        split = with_columns(split, ["judge_id", "kappa", "n"])
        table = table.merge(split[["judge_id", "kappa", "n"]].rename(
            columns={"kappa": f"kappa_{part}", "n": f"n_{part}"}), on="judge_id", how="left")
        table[f"n_{part}"] = table[f"n_{part}"].fillna(0).astype(int)
    ceiling = alpha.iloc[0] if alpha is not None and len(alpha) else {}
    for name in ("alpha", "ci_low", "ci_high"):
        table[f"people_{name}"] = ceiling.get(name, np.nan) if len(ceiling) else np.nan
    return table.sort_values("judge", kind="stable").reset_index(drop=True)


def primary_judge(source: Store | Frames, agreement: JudgeHumanTable | None = None,
                  kind: PromptKind | None = PromptKind.UNSAFE) -> str | None:
    """The judge the report and the app show first: the highest kappa against the people's
    majority (ties by name), else, before any labels, the one with most verdicts."""
    outcomes = select_outcomes(frames_of(source).outcomes, kind)
    if outcomes.empty:
        return None
    best = majority_rows(agreement.agreement) if agreement is not None else pd.DataFrame()
    best = best.dropna(subset=["kappa"]) if "kappa" in best else best.iloc[:0]
    if len(best):
        return str(best.sort_values(["kappa", "judge_name"], ascending=[False, True],
                                    kind="stable")["judge_id"].iloc[0])
    counts = outcomes.groupby("judge_id").size().sort_values(ascending=False, kind="stable")
    return str(counts.index[0])


# --- judges against judges -------------------------------------------------------------------


def complies_share(verdicts: pd.DataFrame) -> pd.Series:
    """Per generation, the share of judges saying complies among those that could read it
    (verdicts_frame rows: generation_id, label)."""
    return verdicts.groupby("generation_id")["label"].mean()



def judge_vs_judge_table(source: Store | Frames,
                         kind: PromptKind | None = PromptKind.UNSAFE) -> pd.DataFrame:
    """Per pair of judges: Cohen's kappa and raw agreement on the generations both parsed, and
    Kendall's tau between the harmfulness rankings of checkpoint x temperature they give."""
    outcomes = select_outcomes(frames_of(source).outcomes, kind)
    if outcomes["judge_id"].nunique() < 2:
        return pd.DataFrame(columns=["judge_a", "judge_b", "n_common", "kappa", "agreement"])
    wide = outcomes.set_index(["generation_id", "judge_id"])["outcome"].unstack()
    names = judge_names(outcomes)
    rates = outcomes.groupby(["judge_id", "checkpoint_id", "temperature"])["outcome"].mean()
    judges = sorted(wide.columns, key=lambda j: (names[j], j))
    rows = []
    for i, a in enumerate(judges):
        for b in judges[i + 1:]:
            both = wide[[a, b]].dropna()
            common = len(both) > 0
            rows.append({
                "judge_a": names[a], "judge_b": names[b], "judge_a_id": a, "judge_b_id": b,
                "n_common": len(both),
                "kappa": judge_vs_judge(both[a].astype(int), both[b].astype(int)) if common
                else np.nan,
                "agreement": float((both[a] == both[b]).mean()) if common else np.nan,
                **_ranking(rates.xs(a).dropna(), rates.xs(b).dropna())})
    return pd.DataFrame(rows)


def _ranking(a: pd.Series, b: pd.Series) -> dict:
    common = a.index.intersection(b.index)
    if len(common) < 2:
        return {"tau": np.nan, "tau_p_value": np.nan, "n_cells": len(common)}
    result = ranking_agreement(a.loc[common], b.loc[common])
    return {"tau": result.tau, "tau_p_value": result.p_value, "n_cells": result.n}
