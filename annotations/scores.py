"""Scores beside labels: judges whose verdict carries a score in [0, 1] (StrongREJECT's rubric),
read as numbers rather than only as complies / refuses.

- `mean_with_ci`: a mean with a percentile bootstrap interval that resamples prompts (several
  answers to one prompt are not independent), the one way every per-answer mean gets its CI.
- `score_table`: each scoring judge's mean score per checkpoint and temperature, with its CI and
  the answers it could not score (left out of the mean, counted).
- `score_agreement`: how well each scoring judge's score tells apart the answers people call
  complying from those they call refusing: the AUC (the weighted Mann-Whitney statistic, written
  out so that a thousand bootstrap resamples are computed at once; checked against
  scikit-learn's roc_auc_score and scipy's Mann-Whitney U), with a prompt-clustered bootstrap CI and, at a `threshold`, the verdict score >= threshold against people's majority
  with `annotations.agreement.judge_agreement`'s kappa, sensitivity and specificity.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from annotations.agreement import judge_agreement
from annotations.agreement_tables import human_majority
from annotations.bootstrap import (Estimate, cluster_totals, estimate, make_rng, resample_totals,
                                   resample_weights)
from annotations.frames import Frames, frames_of, select_outcomes
from annotations.records import PromptKind
from annotations.store import Store

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
