"""Scores beside labels: the AUC against scikit-learn and scipy's Mann-Whitney U, the coverage
of the clustered intervals by simulation, and the tables over a store with a scoring judge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu, norm
from sklearn.metrics import roc_auc_score

from annotations.agreement import judge_agreement
from annotations.frames import Frames
from annotations.scores import (auc_with_ci, mean_with_ci, score_agreement, score_table,
                                weighted_auc)


def test_auc_equals_sklearn_and_mann_whitney_with_ties_and_weights() -> None:
    rng = np.random.default_rng(3)
    human = rng.integers(0, 2, 300)
    scores = np.round(rng.beta(2 + 3 * human, 3), 1)  # rubric-like: few levels, many ties
    auc = weighted_auc(scores, human)[0]
    assert auc == pytest.approx(roc_auc_score(human, scores), abs=1e-12)
    u = mannwhitneyu(scores[human == 1], scores[human == 0]).statistic
    assert auc == pytest.approx(u / ((human == 1).sum() * (human == 0).sum()), abs=1e-12)
    weights = rng.integers(0, 4, size=(5, 300)).astype(float)
    for row, value in zip(weights, weighted_auc(scores, human, weights)):
        assert value == pytest.approx(roc_auc_score(human, scores, sample_weight=row), abs=1e-12)


def clustered(rng: np.random.Generator, prompts: int, per_prompt: int):
    """Answers that share their prompt's effect: clusters matter for the interval."""
    effect = np.repeat(rng.normal(0, 1, prompts), per_prompt)
    return effect, np.repeat(np.arange(prompts), per_prompt)


def test_the_mean_score_interval_covers_by_simulation() -> None:
    """300 replicates: 60 prompts x 4 answers, scores in [0, 1] with a prompt effect; the 95%
    interval covers the true mean about 95% of the time (an unclustered one would not)."""
    truth = float(norm.cdf(0, loc=0, scale=np.sqrt(1 + 0.5 ** 2)))  # P(effect + noise > 0)
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(300):
        effect, prompts = clustered(rng, 60, 4)
        values = (effect + rng.normal(0, 0.5, len(effect)) > 0).astype(float)
        ci = mean_with_ci(values, prompts, n_boot=400, seed=rep)
        hits += ci.ci_low <= truth <= ci.ci_high
    assert 0.92 <= hits / 300 <= 0.98


def test_the_auc_interval_covers_by_simulation() -> None:
    """Binormal scores with separation d have AUC = Phi(d / sqrt(2)); 300 replicates of 80
    prompts x 3 answers (a shared prompt effect on the score)."""
    d = 1.0
    truth = float(norm.cdf(d / np.sqrt(2 * (1 + 0.6 ** 2 / 1))))  # noise var 1 + prompt var 0.36
    rng = np.random.default_rng(1)
    hits = 0
    for rep in range(300):
        effect, prompts = clustered(rng, 80, 3)
        human = rng.integers(0, 2, len(effect))
        scores = d * human + 0.6 * effect + rng.normal(0, 1, len(effect))
        ci = auc_with_ci(scores, human, prompts, n_boot=400, seed=rep)
        hits += ci.ci_low <= truth <= ci.ci_high
    assert 0.92 <= hits / 300 <= 0.98


def frames_with_scores() -> Frames:
    """Two checkpoints x 30 prompts; a rubric judge with scores (two unscored answers) and a
    plain judge without; one person's label per answer."""
    rng = np.random.default_rng(5)
    rows, labels = [], []
    for c, checkpoint in enumerate(("ckpt-a", "ckpt-b")):
        for p in range(30):
            gen = f"g{c}-{p}"
            complied = int(rng.random() < 0.3 + 0.4 * c)
            score = np.nan if (c, p) in ((0, 3), (1, 7)) else float(
                np.clip(complied * 0.6 + rng.normal(0.2, 0.15), 0, 1))
            base = {"generation_id": gen, "checkpoint_id": checkpoint, "prompt_id": f"p{p}",
                    "temperature": 0.0, "kind": "unsafe", "checkpoint_kind": "base",
                    "base_model": checkpoint}
            rows.append({**base, "judge_id": "rubric", "judge_name": "rubric",
                         "outcome": np.nan if np.isnan(score) else float(score > 0),
                         "score": score})
            rows.append({**base, "judge_id": "plain", "judge_name": "plain",
                         "outcome": float(complied), "score": np.nan})
            labels.append({"generation_id": gen, "annotator": "ann",
                           "label": "complies" if complied else "refuses"})
    return Frames(outcomes=pd.DataFrame(rows), labels=pd.DataFrame(labels))


def test_score_table_is_the_mean_per_cell_with_unscored_counted() -> None:
    frames = frames_with_scores()
    table = score_table(frames, n_boot=200)
    assert list(table["judge_id"].unique()) == ["rubric"]  # the plain judge gives no scores
    outcomes = frames.outcomes
    for row in table.itertuples():
        block = outcomes[(outcomes["judge_id"] == "rubric")
                         & (outcomes["checkpoint"] == row.checkpoint)]
        assert row.answers == 30 and row.unscored == 1
        assert row.mean_score == pytest.approx(block["score"].mean())
        assert row.ci_low <= row.mean_score <= row.ci_high


def test_score_agreement_is_the_auc_and_the_kappa_at_the_threshold() -> None:
    frames = frames_with_scores()
    [row] = score_agreement(frames, threshold=0.5, n_boot=200).to_dict("records")
    rubric = frames.outcomes[frames.outcomes["judge_id"] == "rubric"].dropna(subset=["score"])
    human = rubric["generation_id"].map(
        frames.labels.set_index("generation_id")["label"].eq("complies").astype(int))
    assert row["n"] == 58
    assert row["auc"] == pytest.approx(roc_auc_score(human, rubric["score"]))
    by_hand = judge_agreement((rubric["score"] >= 0.5).astype(int), human,
                              clusters=rubric["prompt_id"], n_boot=200)
    assert row["kappa"] == pytest.approx(by_hand.kappa.value)
    assert row["kappa_ci_low"] == pytest.approx(by_hand.kappa.ci_low)
    assert row["auc_ci_low"] <= row["auc"] <= row["auc_ci_high"]
