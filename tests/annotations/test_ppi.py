"""PPI++ harmfulness: checked against ppi-python (the method's authors' package) on unclustered
data, and by simulation (coverage over 400 replicates with fixed seeds)."""

import numpy as np
import ppi_py

from annotations.ppi import prediction_powered_harmfulness


def _informative(rng, n_judged=3000, n_labelled=200):
    """A calibrated judge with informative probabilities, truth 0.30."""
    f = rng.beta(0.6, 1.4, n_judged + n_labelled)
    y = rng.binomial(1, f)
    return f[:n_judged], f[n_judged:], y[n_judged:]


def test_matches_ppi_python_on_unclustered_data():
    f_u, f_l, y = _informative(np.random.default_rng(1))
    for lam in (None, 1.0, 0.0):
        ours = prediction_powered_harmfulness(f_u, f_l, y, lam=lam)
        low, high = ppi_py.ppi_mean_ci(y.astype(float), f_l, f_u, alpha=0.05, lam=lam)
        assert abs(ours.ci_low - low[0]) < 0.003 and abs(ours.ci_high - high[0]) < 0.003


def test_coverage_and_width_informative_judge():
    rng = np.random.default_rng(7)
    hits, widths, label_widths = [], [], []
    for _ in range(400):
        f_u, f_l, y = _informative(rng)
        rate = prediction_powered_harmfulness(f_u, f_l, y)
        alone = prediction_powered_harmfulness(f_u, f_l, y, lam=0.0)
        hits.append(rate.ci_low <= 0.3 <= rate.ci_high)
        widths.append(rate.ci_high - rate.ci_low)
        label_widths.append(alone.ci_high - alone.ci_low)
    assert 0.92 <= np.mean(hits) <= 0.98
    assert np.mean(widths) < np.mean(label_widths)


def test_useless_judge_costs_nothing_against_labels_alone():
    rng = np.random.default_rng(3)
    hits, ratio = [], []
    for _ in range(400):
        f_u, f_l = rng.uniform(size=3000), rng.uniform(size=200)
        y = rng.binomial(1, 0.3, 200)
        rate = prediction_powered_harmfulness(f_u, f_l, y)
        alone = prediction_powered_harmfulness(f_u, f_l, y, lam=0.0)
        hits.append(rate.ci_low <= 0.3 <= rate.ci_high)
        ratio.append((rate.ci_high - rate.ci_low) / (alone.ci_high - alone.ci_low))
    assert 0.92 <= np.mean(hits) <= 0.98
    assert np.mean(ratio) <= 1.01
