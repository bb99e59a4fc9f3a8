"""The vectorised cluster bootstrap: the textbook bootstrap's distribution, seeded, clustered."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.bootstrap import (cluster_totals, make_rng, percentile_ci, resample_totals,
                                   resample_weights, safe_divide)
from annotations.correction import harmfulness


def naive_bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The textbook bootstrap: draw row indices with replacement, average."""
    return values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)


def test_cluster_totals_sums_within_clusters():
    values = np.array([[1, 1], [0, 1], [1, 1], [1, 1]])
    totals = cluster_totals(values, clusters=["a", "b", "a", "c"])
    np.testing.assert_array_equal(totals, [[2, 2], [0, 1], [1, 1]])
    np.testing.assert_array_equal(cluster_totals([1, 0, 1]), [[1], [0], [1]])


def test_cluster_totals_rejects_bad_clusters():
    with pytest.raises(ValueError, match="entries"):
        cluster_totals([1, 0, 1], clusters=[1, 2])
    with pytest.raises(ValueError, match="missing"):
        cluster_totals([1, 0], clusters=[1, None])


def test_collapsed_multinomial_matches_the_textbook_bootstrap():
    # 0/1 data collapses to two distinct rows, drawn as one multinomial: same distribution.
    values = (np.random.default_rng(1).random(300) < 0.3).astype(float)
    fast = resample_totals(np.column_stack([values, np.ones_like(values)]), 20000, make_rng(2))
    fast_means = fast[:, 0] / fast[:, 1]
    slow_means = naive_bootstrap_means(values, 20000, make_rng(3))
    assert fast_means.mean() == pytest.approx(slow_means.mean(), abs=0.002)
    assert fast_means.std() == pytest.approx(slow_means.std(), rel=0.03)
    np.testing.assert_allclose(np.quantile(fast_means, [0.025, 0.975]),
                               np.quantile(slow_means, [0.025, 0.975]), atol=0.01)


def test_index_draw_path_for_many_distinct_rows_matches_too():
    values = np.random.default_rng(4).normal(size=200)  # all rows distinct: the index-draw path
    fast = resample_totals(values, 20000, make_rng(5))[:, 0] / len(values)
    slow = naive_bootstrap_means(values, 20000, make_rng(6))
    assert fast.std() == pytest.approx(slow.std(), rel=0.03)
    assert fast.mean() == pytest.approx(values.mean(), abs=0.005)


def test_weights_always_sum_to_the_sample_size():
    codes = np.array([0, 0, 1, 2, 2, 2])
    for n_groups in (3,):
        weights = resample_weights(codes, n_groups, 50, make_rng(0))
        assert weights.shape == (50, 3) and (weights.sum(axis=1) == len(codes)).all()


def test_seeded_and_generator_reproducible():
    totals = np.random.default_rng(0).integers(0, 3, size=(100, 2))
    first = resample_totals(totals, 100, make_rng(7))
    np.testing.assert_array_equal(first, resample_totals(totals, 100, make_rng(7)))
    rng = np.random.default_rng(7)
    assert make_rng(rng) is rng


def test_percentile_ci_ignores_undefined_resamples():
    samples = np.array([np.nan, 0.1, 0.2, 0.3, 0.4, np.nan])
    low, high = percentile_ci(samples, 0.5)
    assert (low, high) == pytest.approx((0.175, 0.325))
    low, high = percentile_ci(np.full((5, 2), np.nan), 0.95)
    assert np.isnan(low).all() and np.isnan(high).all()
    with pytest.raises(ValueError):
        percentile_ci(samples, 1.5)


def test_safe_divide_gives_nan_for_zero_denominators():
    np.testing.assert_array_equal(safe_divide([1, 2], [2, 0]), [0.5, np.nan])


def test_cluster_bootstrap_widens_the_interval_for_correlated_samples():
    # 200 prompts x 10 identical samples: the information is 200 prompts, not 2,000 rows.
    per_prompt = (np.random.default_rng(8).random(200) < 0.4).astype(int)
    outcomes, prompts = np.repeat(per_prompt, 10), np.repeat(np.arange(200), 10)
    naive = harmfulness(outcomes, n_boot=2000, seed=1)
    clustered = harmfulness(outcomes, clusters=prompts, n_boot=2000, seed=1)
    width = lambda r: r.ci_high - r.ci_low  # noqa: E731
    assert clustered.n_clusters == 200 and naive.n_clusters == 2000
    assert width(clustered) / width(naive) == pytest.approx(np.sqrt(10), rel=0.15)
    assert clustered.estimate == pytest.approx(per_prompt.mean())


def test_harmfulness_rejects_non_binary_outcomes():
    with pytest.raises(ValueError, match="0 and 1"):
        harmfulness([0, 1, 2])
    with pytest.raises(ValueError, match="missing"):
        harmfulness([0, 1, np.nan])
