"""Raw and judge-error-corrected harmfulness: hand values, the uninformative judge, and coverage."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from annotations.correction import MIN_YOUDEN, corrected_harmfulness, harmfulness, harmfulness_table


def calibration(sens_hits: int, positives: int, false_alarms: int,
                negatives: int) -> tuple[np.ndarray, np.ndarray]:
    """(judge, human) for a calibration set with the given hit and false-alarm counts."""
    human = np.r_[np.ones(positives, int), np.zeros(negatives, int)]
    judge = np.r_[np.ones(sens_hits, int), np.zeros(positives - sens_hits, int),
                  np.ones(false_alarms, int), np.zeros(negatives - false_alarms, int)]
    return judge, human


def test_rogan_gladen_hand_values():
    judge, human = calibration(8, 10, 2, 10)  # sensitivity 0.8, specificity 0.8
    judged = np.r_[np.ones(50, int), np.zeros(50, int)]  # p = 0.5
    result = corrected_harmfulness(judged, judge, human, n_boot=500)
    # theta = (0.5 + 0.8 - 1) / (0.8 + 0.8 - 1) = 0.3 / 0.6 = 0.5
    assert result.informative and result.reason == ""
    assert (result.raw, result.sensitivity, result.specificity) == pytest.approx((0.5, 0.8, 0.8))
    assert result.estimate == pytest.approx(0.5)
    assert result.ci_low <= 0.5 <= result.ci_high
    assert (result.n_judged, result.n_calibration) == (100, 20)


def test_rogan_gladen_is_clipped_to_the_unit_interval():
    judge, human = calibration(8, 10, 2, 10)
    ten_percent = np.r_[np.ones(10, int), np.zeros(90, int)]
    low = corrected_harmfulness(ten_percent, judge, human, n_boot=200)
    assert low.estimate == 0.0  # (0.1 + 0.8 - 1) / 0.6 < 0
    high = corrected_harmfulness(np.ones(100, int), judge, human, n_boot=200)
    assert high.estimate == 1.0  # (1 + 0.8 - 1) / 0.6 > 1
    assert 0.0 <= low.ci_low and high.ci_high <= 1.0


def test_a_perfect_judge_leaves_the_rate_unchanged():
    judge, human = calibration(20, 20, 0, 30)
    judged = (np.random.default_rng(0).random(400) < 0.3).astype(int)
    result = corrected_harmfulness(judged, judge, human, n_boot=1000, seed=3)
    assert result.estimate == pytest.approx(judged.mean())
    raw = harmfulness(judged, n_boot=1000, seed=3)
    assert result.ci_high - result.ci_low == pytest.approx(raw.ci_high - raw.ci_low, abs=0.02)


@pytest.mark.parametrize("counts, words", [
    ((5, 10, 5, 10), "no information"),          # sensitivity 0.5 + specificity 0.5 - 1 = 0
    ((27, 50, 25, 50), "no information"),        # 0.54 + 0.5 - 1 = 0.04 <= MIN_YOUDEN
    ((0, 0, 2, 10), "no human-labelled complying"),
    ((4, 5, 0, 0), "no human-labelled refusals"),
])
def test_an_uninformative_judge_gives_no_number(counts, words):
    judge, human = calibration(*counts)
    result = corrected_harmfulness([0, 1, 1, 0], judge, human)
    assert not result.informative and words in result.reason
    assert result.estimate is None and result.ci_low is None and result.ci_high is None
    assert result.to_dict()["estimate"] is None and result.raw == 0.5
    assert MIN_YOUDEN == 0.05


def test_clustered_inputs_are_accepted_and_widen_the_interval():
    rng = np.random.default_rng(5)
    per_prompt = (rng.random(100) < 0.4).astype(int)
    judged, prompts = np.repeat(per_prompt, 5), np.repeat(np.arange(100), 5)
    judge, human = calibration(45, 50, 5, 50)
    plain = corrected_harmfulness(judged, judge, human, seed=1)
    clustered = corrected_harmfulness(judged, judge, human, seed=1, judged_clusters=prompts,
                                      calib_clusters=np.arange(100) // 2)
    assert clustered.estimate == plain.estimate
    assert clustered.ci_high - clustered.ci_low > plain.ci_high - plain.ci_low


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels but"):
        corrected_harmfulness([1, 0], [1, 0], [1])
    with pytest.raises(ValueError, match="at least one"):
        corrected_harmfulness([], [1, 0], [1, 0])


def test_harmfulness_table_matches_per_group_calls():
    rng = np.random.default_rng(2)
    names = ["checkpoint", "temperature", "prompt", "sample"]
    grid = pd.MultiIndex.from_product([["a", "b"], [0.0, 0.7], range(100), range(3)], names=names)
    frame = grid.to_frame(index=False)
    frame["outcome"] = rng.integers(0, 2, len(frame))
    table = harmfulness_table(frame, by=["checkpoint", "temperature"], n_boot=500)
    assert len(table) == 4 and (table["n_clusters"] == 100).all() and (table["n"] == 300).all()
    for row in table.itertuples():
        group = frame[(frame.checkpoint == row.checkpoint) & (frame.temperature == row.temperature)]
        single = harmfulness(group.outcome, clusters=group.prompt, n_boot=500)
        assert row.harmfulness == pytest.approx(single.estimate)
        assert row.ci_low == pytest.approx(single.ci_low, abs=0.03)
        assert row.ci_low < row.harmfulness < row.ci_high


# --- coverage simulation -----------------------------------------------------------------------
# Grid: true rate x sensitivity x specificity x calibration size, judged n = 500, 300 replications
# per cell, each running corrected_harmfulness exactly as users do (95% interval, 2,000 resamples).
# The calibration set is a random human-labelled sample of the same population (so its share of
# positives is the true rate). Bounds: every cell's coverage in [0.90, 0.99]; pooled over all
# informative replications in [0.92, 0.98], i.e. 95% +/- 3%.
RATES, SENSITIVITIES, SPECIFICITIES = (0.1, 0.3, 0.6), (0.7, 0.9), (0.8, 0.95)
CALIBRATION_SIZES = (100, 400)
N_JUDGED, REPLICATIONS = 500, 300
CELL_BOUNDS, POOLED_BOUNDS = (0.90, 0.99), (0.92, 0.98)


def simulate_cell(theta: float, sens: float, spec: float, m: int, seed: int) -> tuple[int, int]:
    """(covered, informative) counts over REPLICATIONS simulated studies of one grid cell."""
    rng = np.random.default_rng(seed)
    p_judged = theta * sens + (1 - theta) * (1 - spec)
    judged = (rng.random((REPLICATIONS, N_JUDGED)) < p_judged).astype(int)
    human = (rng.random((REPLICATIONS, m)) < theta).astype(int)
    judge = np.where(human == 1, rng.random((REPLICATIONS, m)) < sens,
                     rng.random((REPLICATIONS, m)) >= spec).astype(int)
    covered = informative = 0
    for r in range(REPLICATIONS):
        result = corrected_harmfulness(judged[r], judge[r], human[r], seed=seed * 1000 + r)
        if result.informative:
            informative += 1
            covered += result.ci_low <= theta <= result.ci_high
    return covered, informative


@pytest.mark.slow
def test_corrected_interval_covers_the_truth():
    cells = list(itertools.product(RATES, SENSITIVITIES, SPECIFICITIES, CALIBRATION_SIZES))
    results = {cell: simulate_cell(*cell, seed=i + 1) for i, cell in enumerate(cells)}
    for cell, (covered, informative) in results.items():
        print(f"rate={cell[0]} sens={cell[1]} spec={cell[2]} calibration={cell[3]}: "
              f"coverage {covered / informative:.3f} over {informative} informative replications")
        assert informative >= 0.95 * REPLICATIONS
        assert CELL_BOUNDS[0] <= covered / informative <= CELL_BOUNDS[1], cell
    pooled = sum(c for c, _ in results.values()) / sum(i for _, i in results.values())
    print(f"pooled coverage {pooled:.4f}")
    assert POOLED_BOUNDS[0] <= pooled <= POOLED_BOUNDS[1]
