"""Variance components recovered from simulated experiments; seed spread vs the base model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.variance import seed_spread, variance_components


def simulate(rng: np.random.Generator, n_seed: int = 5, n_epoch: int = 5, n_prompt: int = 400,
             n_sample: int = 4, sd_seed: float = 0.04, sd_epoch: float = 0.06,
             temp_gap: float = 0.10,
             prompt_half_width: float = 0.2) -> tuple[pd.DataFrame, dict[str, float]]:
    """Verdicts y ~ Bernoulli(0.5 + seed + epoch + temperature + prompt effects), no interactions
    (the effects are small enough that the probability stays inside [0, 1]).

    Returns the frame and the true components: the variance (divisor levels - 1) of the effects
    drawn, and for sampling the mean Bernoulli variance p (1 - p) over all cells.
    """
    effects = {"seed": rng.normal(0, sd_seed, n_seed), "epoch": rng.normal(0, sd_epoch, n_epoch),
               "temperature": np.array([-temp_gap / 2, temp_gap / 2]),
               "prompt": rng.uniform(-prompt_half_width, prompt_half_width, n_prompt)}
    effects = {name: values - values.mean() for name, values in effects.items()}
    grid = np.meshgrid(np.arange(n_seed), np.arange(n_epoch), np.arange(2), np.arange(n_prompt),
                       np.arange(n_sample), indexing="ij")
    s, e, t, p, k = (axis.ravel() for axis in grid)
    prob = (0.5 + effects["seed"][s] + effects["epoch"][e] + effects["temperature"][t]
            + effects["prompt"][p])
    frame = pd.DataFrame({"seed": s, "epoch": e, "temperature": np.array([0.0, 0.7])[t],
                          "sample": k, "prompt": p,
                          "outcome": (rng.random(len(prob)) < prob).astype(int)})
    truth = {name: float(values.var(ddof=1)) for name, values in effects.items()}
    truth["sampling"] = float((prob * (1 - prob)).mean())
    return frame, truth


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_variance_components_recover_the_simulated_truth(seed):
    # Tolerance: every simulated component's SD within 1.0 percentage point of the truth (SDs of
    # 2.5 to 47 pp) and its share within 0.01 absolute. Interactions were not simulated: their
    # shares stay under 0.01 (their SDs can reach 2-3 pp by chance, since a square root magnifies
    # the noise of a variance estimated near zero: about 0.0006 here).
    frame, truth = simulate(np.random.default_rng(seed))
    table = variance_components(frame).to_frame().set_index("component")
    total = sum(truth.values())
    for name, variance in truth.items():
        assert table.loc[name, "sd_pp"] == pytest.approx(100 * np.sqrt(variance), abs=1.0), name
        assert table.loc[name, "share"] == pytest.approx(variance / total, abs=0.01), name
    assert table.loc["condition interactions", "share"] < 0.01
    assert table.loc["prompt x condition", "share"] < 0.01
    assert np.isnan(table.loc["judge error", "variance"])


def test_variance_components_total_is_the_outcome_variance():
    frame, _ = simulate(np.random.default_rng(4))
    table = variance_components(frame).to_frame()
    assert table["variance"].sum() == pytest.approx(frame["outcome"].var(), rel=0.03)
    assert table["share"].sum() == pytest.approx(1.0)


def test_judge_error_is_measured_on_human_labelled_rows():
    rng = np.random.default_rng(5)
    frame, _ = simulate(rng, n_seed=3, n_epoch=3, n_prompt=200)
    human = frame["outcome"].to_numpy()
    flips = rng.random(len(frame)) < 0.10  # the judge gets 10% of verdicts wrong
    frame["judge"] = np.where(flips, 1 - human, human)
    frame["human"] = np.where(rng.random(len(frame)) < 0.2, human, np.nan)  # 20% labelled
    result = variance_components(frame)
    table = result.to_frame().set_index("component")
    # judge - human is +-1 on flipped rows, 0 elsewhere: variance ~ flip rate (mean ~ 0).
    assert table.loc["judge error", "variance"] == pytest.approx(0.10, abs=0.01)
    assert set(result.to_dict()) == {"components", "n_rows", "n_prompts", "n_conditions", "note"}


def test_one_sample_per_cell_leaves_sampling_unestimated():
    frame, _ = simulate(np.random.default_rng(6), n_sample=1)
    result = variance_components(frame)
    assert np.isnan(result.to_frame().set_index("component").loc["sampling", "variance"])
    assert "one sample" in result.note


def test_incomplete_grid_and_bad_frames_raise():
    frame, _ = simulate(np.random.default_rng(7), n_seed=2, n_epoch=2, n_prompt=20)
    with pytest.raises(ValueError, match="complete grid"):
        variance_components(frame[~((frame.seed == 0) & (frame.epoch == 1))])
    with pytest.raises(ValueError, match="lacks columns"):
        variance_components(frame.drop(columns="sample"))
    with pytest.raises(ValueError, match="0 and 1"):
        variance_components(frame.assign(outcome=2))


def spread_frame(rng: np.random.Generator, rises: dict[int, float],
                 n_prompt: int = 300) -> pd.DataFrame:
    """Seeds x epochs 0-1 x one temperature; seed s's harmfulness rises by rises[s] at epoch 1."""
    base = rng.uniform(0.1, 0.5, n_prompt)
    rows = []
    for run_seed, rise in rises.items():
        for epoch, shift in ((0, 0.0), (1, rise)):
            for sample in range(3):
                y = (rng.random(n_prompt) < base + shift).astype(int)
                rows.append(pd.DataFrame({"seed": run_seed, "epoch": epoch, "temperature": 0.7,
                                          "sample": sample, "prompt": np.arange(n_prompt),
                                          "outcome": y}))
    return pd.concat(rows, ignore_index=True)


def test_seed_spread_flags_the_seed_that_rose():
    frame = spread_frame(np.random.default_rng(8), {0: 0.25, 1: 0.0})
    result = seed_spread(frame, n_boot=1000)
    vs_base = result.vs_base.set_index("seed")
    assert vs_base.loc[0, "rose"] and vs_base.loc[0, "significant"]
    assert vs_base.loc[0, "difference"] == pytest.approx(0.25, abs=0.04)
    assert vs_base.loc[0, "ci_low"] > 0
    assert not vs_base.loc[1, "significant"]
    assert vs_base.loc[1, "ci_low"] < 0 < vs_base.loc[1, "ci_high"]
    by_condition = result.by_condition.set_index("epoch")
    assert by_condition.loc[1, "n_seeds"] == 2
    assert by_condition.loc[1, "min"] <= by_condition.loc[1, "mean"] <= by_condition.loc[1, "max"]


def test_seed_spread_uses_a_pooled_base_when_epoch_0_is_recorded_once():
    frame = spread_frame(np.random.default_rng(9), {0: 0.2, 1: 0.2})
    frame = frame[~((frame.epoch == 0) & (frame.seed == 1))]  # base model stored under seed 0 only
    vs_base = seed_spread(frame, n_boot=300).vs_base.set_index("seed")
    assert vs_base.loc[1, "base"] == pytest.approx(vs_base.loc[0, "base"])
    assert vs_base["significant"].all()
