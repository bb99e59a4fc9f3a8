"""Prediction-powered harmfulness (PPI++, Angelopoulos, Duchi and Zrnic 2023): every judged
answer's score and every random human label, with power tuning, clusters, strata and weights.

theta = sum_k W_k [lam_k * mean_judged,k(f) + mean_labelled,k(y - lam_k * f)], where f is the
judge's probability of "complies" (or its 0/1 verdict), y the people's 0/1 label, W_k the share
of judged answers in stratum k (coherent / incoherent: stratified PPI) and the labelled means
weighted by inverse inclusion probabilities (active labelling, Zrnic and Candes 2024).

Written by hand because ppi-python's `ppi_mean_ci` knows neither clusters (prompts) nor strata;
tests/annotations/test_ppi.py checks this code against it on unclustered data. The variance is
the cluster-robust sandwich of the estimator's influence function, summed per cluster over the
judged and the labelled side together (a prompt's answers are correlated on both sides); lam is
chosen in [0, 1] per stratum to minimise that variance (lam = 0 is labels alone, so a useless
judge costs nothing against them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import lsq_linear
from scipy.stats import norm


@dataclass(frozen=True)
class PPIRate:
    """A prediction-powered estimate with its normal interval and what went in."""

    estimate: float
    ci_low: float
    ci_high: float
    std_error: float
    lam: tuple[float, ...]
    n_judged: int
    n_labelled: int
    n_strata: int
    level: float

    def to_dict(self) -> dict:
        return asdict(self)


def _codes(values: npt.ArrayLike | None, n: int, prefix: str) -> np.ndarray:
    if values is None:
        return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)
    array = np.asarray(values, dtype=object)
    if len(array) != n:
        raise ValueError(f"{prefix} clusters or strata have {len(array)} rows, expected {n}")
    return array


def prediction_powered_harmfulness(
        judged: npt.ArrayLike, calib_judge: npt.ArrayLike, calib_human: npt.ArrayLike,
        level: float = 0.95, judged_clusters: npt.ArrayLike | None = None,
        calib_clusters: npt.ArrayLike | None = None, judged_strata: npt.ArrayLike | None = None,
        calib_strata: npt.ArrayLike | None = None, calib_weights: npt.ArrayLike | None = None,
        lam: float | None = None) -> PPIRate:
    """PPI++ harmfulness: `judged` the judge's scores on the evaluation set, `calib_judge` and
    `calib_human` its scores and the people's 0/1 labels on the random calibration items.
    `calib_weights` are inverse inclusion probabilities (active draws); `lam` None tunes it,
    a number fixes it (1: plain PPI, 0: labels alone). Every judged stratum needs labels."""
    f_u = np.asarray(judged, dtype=float)
    f_l, y = np.asarray(calib_judge, dtype=float), np.asarray(calib_human, dtype=float)
    if len(f_l) != len(y) or len(y) < 2 or len(f_u) == 0:
        raise ValueError("prediction_powered_harmfulness needs judged scores and at least two "
                         "calibration items with both a score and a label")
    w = np.ones(len(y)) if calib_weights is None else np.asarray(calib_weights, dtype=float)
    s_u = _codes(judged_strata if judged_strata is not None else np.zeros(len(f_u)), len(f_u), "s")
    s_l = _codes(calib_strata if calib_strata is not None else np.zeros(len(y)), len(y), "s")
    strata = sorted(set(s_u), key=str)
    missing = [s for s in strata if (s_l == s).sum() < 2]
    if missing:
        raise ValueError(f"strata {missing} have fewer than two labelled items")
    a_rows, b_rows, d, base = _influence(f_u, s_u, f_l, y, w, s_l, strata)
    clusters = np.concatenate([_codes(judged_clusters, len(f_u), "u"),
                               _codes(calib_clusters, len(y), "l")])
    _, index = np.unique(clusters.astype(str), return_inverse=True)
    a = np.stack([np.bincount(index, col) for col in a_rows.T], axis=1)
    b = np.bincount(index, b_rows)
    lams = (np.full(len(strata), float(lam)) if lam is not None else
            lsq_linear(a, -b, bounds=(0.0, 1.0)).x if np.any(a) else np.zeros(len(strata)))
    n_groups = len(np.unique(index[len(f_u):]))
    var = float(np.sum((a @ lams + b) ** 2)) * n_groups / max(n_groups - 1, 1)
    point = float(base + d @ lams)
    half = float(norm.ppf(0.5 + level / 2) * np.sqrt(var))
    return PPIRate(float(np.clip(point, 0, 1)), float(max(point - half, 0.0)),
                   float(min(point + half, 1.0)), float(np.sqrt(var)), tuple(map(float, lams)),
                   len(f_u), len(y), len(strata), level)


def _influence(f_u, s_u, f_l, y, w, s_l, strata):
    """Each item's influence on the estimate, linear in lam: row @ lam + b, per item (judged
    items first); and the estimate as base + d @ lam."""
    n_u, k = len(f_u), len(strata)
    a_rows, b_rows = np.zeros((n_u + len(y), k)), np.zeros(n_u + len(y))
    d, means = np.zeros(k), np.zeros(k)
    for col, stratum in enumerate(strata):
        ju, jl = s_u == stratum, np.flatnonzero(s_l == stratum)
        share, m_f = ju.mean(), f_u[ju].mean()
        a = w[jl] / w[jl].sum()
        f_bar, y_bar = a @ f_l[jl], a @ y[jl]
        d[col], means[col] = share * (m_f - f_bar), share * y_bar
        a_rows[np.flatnonzero(ju), col] = (f_u[ju] - m_f) / n_u
        a_rows[n_u + jl, col] = -share * a * (f_l[jl] - f_bar)
        b_rows[n_u + jl] = share * a * (y[jl] - y_bar)
    return a_rows, b_rows, d, means.sum()
