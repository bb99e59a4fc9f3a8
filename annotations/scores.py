"""Scores beside labels: judges whose verdict carries a score in [0, 1] (StrongREJECT's rubric),
read as numbers rather than only as complies / refuses.

- `mean_with_ci`: a mean with a percentile bootstrap interval that resamples prompts (several
  answers to one prompt are not independent), the one way every per-answer mean gets its CI.
- `score_table`: each scoring judge's mean score per checkpoint and temperature, with its CI and
  the answers it could not score (left out of the mean, counted).
- `score_agreement`: how well each scoring judge's score tells apart the answers people call
  complying from those they call refusing: the AUC (the weighted Mann-Whitney statistic, written
  out so that a thousand bootstrap resamples are computed at once; checked against
  scikit-learn's roc_auc_score and scipy's Mann-Whitney U), with a prompt-clustered bootstrap
  CI and, at a `threshold`, the verdict score >= threshold against people's majority
  with `annotations.agreement.judge_agreement`'s kappa, sensitivity and specificity.

A scorer's number per answer (`run.py score`: toxicity, or `base-loss`, a base model's loss of
the answer, which reads as incoherence) is summarised and used to split judge agreement:

- `score_distribution`: a scorer's values per checkpoint x temperature: n, mean with a
  prompt-clustered CI, median, quartiles and, at a threshold, the share above it with its CI.
- `score_bin_edges` / `score_bins`: bins of a score by quantile (tertiles by default) or at a
  threshold; tied values always share a bin, and no bin is empty.
- `judge_human_by_score`: each judge against people's majority within each bin of a score over
  the labelled answers (e.g. the most and the least coherent third): kappa, sensitivity and
  specificity with CIs, from `judge_agreement`. Judges fail where answers are incoherent; this
  says by how much, on a measured scale rather than a flag.
- `coherence_scorers`: the ids of the `base-loss` scorers that have scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from annotations.agreement import judge_agreement
from annotations.agreement_tables import human_majority
from annotations.bootstrap import (Estimate, cluster_totals, estimate, make_rng, resample_totals,
                                   resample_weights)
from annotations.frames import (MIN_ITEMS, Frames, frames_of, generation_items,
                                select_outcomes)
from annotations.records import COHERENCE_SCORER, PromptKind
from annotations.store import Store
# toxicity_table's scorer lookup and checkpoint columns: one way to pick a scorer's values
from annotations.toxicity import (CELL_KEYS, CHECKPOINT_COLUMNS, ORDER, answer_scores,
                                  one_scorer)

CELL = ["judge_id", "judge_name", "checkpoint", "temperature"]


def mean_with_ci(values: npt.ArrayLike, clusters: npt.ArrayLike | None = None,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Estimate:
    """The mean of `values` with a percentile bootstrap CI over `clusters` (each value its own
    cluster when None): the ratio of resampled sums to resampled counts."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or np.isnan(values).any():
        raise ValueError("mean_with_ci needs at least one value and no missing ones")
    totals = cluster_totals(np.column_stack([values, np.ones(len(values))]), clusters)
    boot = resample_totals(totals, n_boot, make_rng(seed))
    return estimate(values.mean(), boot[:, 0] / boot[:, 1], level)


def scored(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The verdicts of judges that give scores (any score stored), with `score` as float."""
    frame = outcomes.assign(score=pd.to_numeric(outcomes.get("score"), errors="coerce"))
    judges = frame.loc[frame["score"].notna(), "judge_id"].unique()
    return frame[frame["judge_id"].isin(judges)]


def score_table(source: Store | Frames, kind: PromptKind | None = PromptKind.UNSAFE,
                n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per scoring judge x checkpoint x temperature: answers, unscored answers, the mean
    score and its CI (prompt-clustered)."""
    frame = scored(select_outcomes(frames_of(source).outcomes, kind))
    rows = []
    for key, block in frame.groupby(CELL, sort=True, dropna=False):
        has = block[block["score"].notna()]
        row = {**dict(zip(CELL, key)), "answers": len(block), "unscored": len(block) - len(has)}
        if len(has):
            mean = mean_with_ci(has["score"], has["prompt_id"], n_boot, level, seed)
            row.update(mean_score=mean.value, ci_low=mean.ci_low, ci_high=mean.ci_high)
        rows.append(row)
    columns = [*CELL, "answers", "unscored", "mean_score", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def weighted_auc(scores: npt.ArrayLike, human: npt.ArrayLike,
                 weights: npt.ArrayLike | None = None) -> np.ndarray:
    """The AUC (a tie counts one half) of `scores` for telling human 1s from 0s, for each row of
    `weights` (resamples x items; None: every item once): the weighted Mann-Whitney statistic,
    sum over positive-negative pairs of w_i w_j [s_i > s_j] / (W_pos W_neg). Vectorised over
    resamples: a thousand bootstrap AUCs are two bincounts and a cumulative sum."""
    s, h = np.asarray(scores, dtype=float), np.asarray(human, dtype=int)
    w = np.ones((1, len(s))) if weights is None else np.atleast_2d(np.asarray(weights, float))
    levels, index = np.unique(s, return_inverse=True)  # ascending distinct scores
    slots = (np.arange(len(w))[:, None] * len(levels) + index[None, :]).ravel()

    def per_level(mask: np.ndarray) -> np.ndarray:  # resamples x levels: weight at each score
        return np.bincount(slots, weights=(w * mask).ravel(),
                           minlength=len(w) * len(levels)).reshape(len(w), len(levels))

    pos, neg = per_level(h == 1), per_level(h == 0)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each level
    pairs = (pos * (below + 0.5 * neg)).sum(axis=1)
    return pairs / (pos.sum(axis=1) * neg.sum(axis=1) + 0.0) if len(s) else np.array([np.nan])


def auc_with_ci(scores: npt.ArrayLike, human: npt.ArrayLike, clusters: npt.ArrayLike,
                n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Estimate:
    """The AUC with a prompt-clustered percentile bootstrap CI (a resample holding one class
    only has no AUC and is left out); nan when people's labels hold one class only."""
    h = np.asarray(human, dtype=int)
    if len(np.unique(h)) < 2:
        return Estimate(np.nan, np.nan, np.nan)
    codes, uniques = pd.factorize(np.asarray(clusters))
    counts = resample_weights(np.arange(len(uniques)), len(uniques), n_boot, make_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):  # one-class resamples: nan, left out
        samples = weighted_auc(scores, h, counts[:, codes])
    return estimate(float(weighted_auc(scores, h)[0]), samples, level)


def score_agreement(source: Store | Frames, threshold: float = 0.5,
                    kind: PromptKind | None = PromptKind.UNSAFE, n_boot: int = 1000,
                    level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per scoring judge: on the answers with a score and a 0/1 people's majority, the
    AUC with its CI, and the kappa (sensitivity, specificity) of score >= `threshold`."""
    frames = frames_of(source)
    frame = scored(select_outcomes(frames.outcomes, kind))
    people = human_majority(frames.labels)[["generation_id", "human"]]
    joined = frame.merge(people, on="generation_id").dropna(subset=["score", "human"])
    rows = []
    for (judge_id, judge_name), block in joined.groupby(["judge_id", "judge_name"], sort=True):
        auc = auc_with_ci(block["score"], block["human"], block["prompt_id"], n_boot, level, seed)
        agreement = judge_agreement((block["score"] >= threshold).astype(int),
                                    block["human"].astype(int), clusters=block["prompt_id"],
                                    n_boot=n_boot, level=level, seed=seed).to_dict()
        rows.append({"judge_id": judge_id, "judge_name": judge_name, "n": len(block),
                     "auc": auc.value, "auc_ci_low": auc.ci_low, "auc_ci_high": auc.ci_high,
                     "threshold": threshold,
                     **{k: v for k, v in agreement.items() if k not in ("n", "confusion")}})
    return pd.DataFrame(rows, columns=["judge_id", "judge_name", "n", "auc", "auc_ci_low",
                                       "auc_ci_high", "threshold"] + (list(rows[0])[7:]
                                                                      if rows else []))


# --- a scorer's numbers: their distribution, and judge agreement split by them -----------------

DISTRIBUTION_COLUMNS = [*CELL_KEYS, "n", "n_prompts", "unscorable", "mean", "ci_low", "ci_high",
                        "median", "q1", "q3", "threshold", "share_above", "share_ci_low",
                        "share_ci_high"]


def coherence_scorers(source: Store | Frames) -> list[str]:
    """Ids of the `base-loss` scorers with scores, the most answers scored first."""
    scores = answer_scores(frames_of(source), None)
    if scores.empty or "scorer_name" not in scores:
        return []
    mine = scores[scores["scorer_name"].eq(COHERENCE_SCORER)]
    return [str(i) for i in mine["scorer_id"].value_counts(sort=True).index]


def scorer_values(source: Store | Frames, scorer_id: str | None = None) -> pd.DataFrame:
    """generation_id, value (float; nan where the scorer could not score) of one scorer;
    `scorer_id` may be left out when one scorer has scores."""
    scores = answer_scores(frames_of(source), None)
    chosen = one_scorer(scores, scorer_id)
    values = scores.loc[scores["scorer_id"] == chosen, ["generation_id", "value"]]
    return values.assign(value=pd.to_numeric(values["value"], errors="coerce").astype(float))


def _distribution_row(block: pd.DataFrame, threshold: float | None, n_boot: int, level: float,
                      seed: int) -> dict:
    """One cell's counts, mean with CI, quartiles and share above `threshold` with CI."""
    has = block[block["value"].notna()]
    row = {"n": len(has), "n_prompts": int(block["prompt_id"].nunique()),
           "unscorable": len(block) - len(has), "threshold": threshold}
    if has.empty:
        return row
    mean = mean_with_ci(has["value"], has["prompt_id"], n_boot, level, seed)
    q1, median, q3 = np.quantile(has["value"].to_numpy(), [0.25, 0.5, 0.75])
    row |= {"mean": mean.value, "ci_low": mean.ci_low, "ci_high": mean.ci_high,
            "median": median, "q1": q1, "q3": q3}
    if threshold is not None:
        above = mean_with_ci((has["value"] > threshold).astype(float), has["prompt_id"], n_boot,
                             level, seed)
        row |= {"share_above": above.value, "share_ci_low": above.ci_low,
                "share_ci_high": above.ci_high}
    return row


def score_distribution(source: Store | Frames, scorer_id: str | None = None,
                       threshold: float | None = None, kind: PromptKind | None = PromptKind.UNSAFE,
                       n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per checkpoint x temperature: a scorer's values on the answers (to prompts of
    `kind`; None: every kind): n scored, unscorable (value None: left out, never a 0), the mean
    with a prompt-clustered bootstrap CI, median and quartiles (q1, q3), and given `threshold`
    the share of scored answers strictly above it with its CI (nan columns without one); with
    the checkpoint's columns (checkpoint, seed, epoch, ...) and `too_few` (n < MIN_ITEMS).
    `scorer_id` may be left out when one scorer has scores (see `coherence_scorers`)."""
    frames = frames_of(source)
    values = scorer_values(frames, scorer_id)
    items = generation_items(frames, kind).merge(values, on="generation_id")
    rows = [{**dict(zip(CELL_KEYS, key)), **_distribution_row(block, threshold, n_boot, level,
                                                                seed)}
            for key, block in items.groupby(CELL_KEYS, sort=True)]
    table = pd.DataFrame(rows).reindex(columns=DISTRIBUTION_COLUMNS)
    points = items.drop_duplicates("checkpoint_id").set_index("checkpoint_id")[CHECKPOINT_COLUMNS]
    table = table.join(points, on="checkpoint_id")
    table["too_few"] = table["n"] < MIN_ITEMS
    return table.sort_values(ORDER, kind="stable", na_position="first").reset_index(drop=True)


def score_bin_edges(values: npt.ArrayLike, quantiles: int = 3,
                    threshold: float | None = None) -> np.ndarray:
    """The inner edges of a score's bins (ascending; bin i holds edge[i-1] < value <= edge[i]):
    `threshold` alone when given, else the 1/q, ..., (q-1)/q quantiles of `values`. Quantile
    edges are values that occur (inverted CDF), equal edges merge and an edge at the maximum is
    dropped, so tied values share a bin and no bin is empty (heavy ties give fewer bins)."""
    if threshold is not None:
        return np.array([float(threshold)])
    if quantiles < 1:
        raise ValueError(f"quantiles must be at least 1, got {quantiles}")
    array = np.asarray(values, dtype=float)
    if len(array) == 0 or np.isnan(array).any():
        raise ValueError("score_bin_edges needs at least one value and no missing ones")
    inner = np.quantile(array, np.arange(1, quantiles) / quantiles, method="inverted_cdf")
    edges = np.unique(inner)
    return edges[edges < array.max()]


def score_bins(values: npt.ArrayLike, edges: npt.ArrayLike) -> np.ndarray:
    """Each value's bin index under `edges` (score_bin_edges): 0 for value <= edges[0], ...,
    len(edges) for value > edges[-1]."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float),
                           side="left")


def bin_label(index: int, edges: Sequence[float]) -> str:
    """A bin as people read it: "<= 2.1", "(2.1, 3.4]", "> 3.4" (or "all" with no edges)."""
    if not len(edges):
        return "all"
    if index == 0:
        return f"<= {edges[0]:.4g}"
    if index == len(edges):
        return f"> {edges[-1]:.4g}"
    return f"({edges[index - 1]:.4g}, {edges[index]:.4g}]"


BY_SCORE_COLUMNS = ["judge_id", "judge_name", "bin", "bin_label", "edge_low", "edge_high",
                    "n_labelled", "n_incoherent", "n", "n_unparseable", "n_clusters", "level",
                    *[f"{m}{x}" for m in ("kappa", "accuracy", "sensitivity", "specificity")
                      for x in ("", "_ci_low", "_ci_high")], "confusion"]


def _bin_agreement(block: pd.DataFrame, n_boot: int, level: float, seed: int) -> dict:
    """Counts and judge_agreement's metrics on one judge's answers in one bin."""
    binary = block[block["human"].notna()]
    parsed = binary[binary["outcome"].notna()]
    row = {"n_labelled": len(block), "n_incoherent": int(block["incoherent"].sum()),
           "n_unparseable": len(binary) - len(parsed), "n": len(parsed)}
    if parsed.empty:
        return row
    parsed = parsed.sort_values("generation_id")  # the bootstrap's draws: not the store's order
    result = judge_agreement(parsed["outcome"].astype(int), parsed["human"].astype(int),
                             clusters=parsed["prompt_id"], n_boot=n_boot, level=level, seed=seed)
    return {**result.to_dict(), **row}


def labelled_scores(source: Store | Frames, scorer_id: str | None = None,
                    kind: PromptKind | None = PromptKind.UNSAFE) -> pd.DataFrame:
    """The labelled answers (to prompts of `kind`) that a scorer scored: generation_id,
    prompt_id, value, and people's majority as `human` (0/1, nan when incoherent or tied) and
    `incoherent` (the majority says so). The population the score's bins are cut from."""
    frames = frames_of(source)
    people = human_majority(frames.labels)[["generation_id", "human", "incoherent"]]
    items = generation_items(frames, kind)[["generation_id", "prompt_id"]]
    return (items.merge(people, on="generation_id")
            .merge(scorer_values(frames, scorer_id), on="generation_id")
            .dropna(subset=["value"]).reset_index(drop=True))


def judge_human_by_score(source: Store | Frames, scorer_id: str | None = None,
                         quantiles: int = 3, threshold: float | None = None,
                         kind: PromptKind | None = PromptKind.UNSAFE, n_boot: int = 1000,
                         level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per judge x bin of a scorer's value (bin 0 = the lowest scores: with `base-loss`
    the most coherent answers): the judge against people's majority on the labelled answers in
    the bin, with judge_agreement's kappa, accuracy, sensitivity and specificity and their
    prompt-clustered CIs (nan where n is 0). Bins are `quantiles` quantile bins of the score
    over the labelled answers (`labelled_scores`), or the two sides of `threshold`; `bin_label`,
    `edge_low` and `edge_high` (nan at an open end; a bin is edge_low < value <= edge_high) say
    where they lie. `n_labelled` counts the judge's answers in the bin, `n_incoherent` those
    people call incoherent (no 0/1 reading: not in n), `n_unparseable` those with a reading but
    an unparseable verdict. Labelled answers the scorer could not score are left out."""
    frames = frames_of(source)
    labelled = labelled_scores(frames, scorer_id, kind)
    if labelled.empty:
        return pd.DataFrame(columns=BY_SCORE_COLUMNS)
    edges = score_bin_edges(labelled["value"], quantiles, threshold)
    labelled["bin"] = score_bins(labelled["value"], edges)
    verdicts = select_outcomes(frames.outcomes, kind)[["generation_id", "judge_id", "judge_name",
                                                       "outcome"]]
    joined = verdicts.merge(labelled, on="generation_id")
    rows = []
    for (judge_id, judge_name), block in joined.groupby(["judge_id", "judge_name"], sort=True):
        for index in range(len(edges) + 1):
            rows.append({"judge_id": judge_id, "judge_name": judge_name, "bin": index,
                         "bin_label": bin_label(index, list(edges)),
                         "edge_low": edges[index - 1] if index > 0 else np.nan,
                         "edge_high": edges[index] if index < len(edges) else np.nan,
                         **_bin_agreement(block[block["bin"] == index], n_boot, level, seed)})
    return pd.DataFrame(rows).reindex(columns=BY_SCORE_COLUMNS)
