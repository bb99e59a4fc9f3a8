"""Prediction-powered harmfulness (PPI++, Angelopoulos, Duchi and Zrnic 2023): every judged
answer's score and every random human label, with power tuning, clusters, strata and weights.

theta = sum_k W_k [lam_k * mean_judged,k(f) + mean_labelled,k(y - lam_k * f)], where f is the
judge's probability of "complies" (or its 0/1 verdict), y the people's reading in [0, 1] (0/1, or
the share of annotators who said "complies"), W_k the share of judged answers in stratum k
(coherent / incoherent, or judge-score bins: stratified PPI) and the labelled means weighted by
inverse inclusion probabilities (Hajek; active labelling, Zrnic and Candes 2024).

Written by hand because ppi-python's `ppi_mean_ci` knows neither clusters (prompts) nor strata;
tests/annotations/test_ppi.py checks this code against it on unclustered data. The variance is
the cluster-robust sandwich of the estimator's influence function, summed per cluster over the
judged and the labelled side together (a prompt's answers are correlated on both sides, and an
answer can be both judged and labelled). The influence includes the randomness of the stratum
shares W_k, which matters when strata differ in harmfulness (score bins do, by design). lam is
chosen in [0, 1] per stratum to minimise that variance (lam = 0 is labels alone, so a useless
judge costs nothing against them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
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

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def to_dict(self) -> dict:
        return asdict(self)


def _codes(values: npt.ArrayLike, n: int, what: str) -> np.ndarray:
    """Integer codes 0..G-1 of `values`, equal values sharing one."""
    array = np.asarray(values)
    if len(array) != n:
        raise ValueError(f"{what} has {len(array)} rows, expected {n}")
    return pd.factorize(array)[0]


def prediction_powered_harmfulness(
        judged: npt.ArrayLike, calib_judge: npt.ArrayLike, calib_human: npt.ArrayLike,
        level: float = 0.95, judged_clusters: npt.ArrayLike | None = None,
        calib_clusters: npt.ArrayLike | None = None, judged_strata: npt.ArrayLike | None = None,
        calib_strata: npt.ArrayLike | None = None, calib_weights: npt.ArrayLike | None = None,
        lam: float | None = None) -> PPIRate:
    """PPI++ harmfulness: `judged` the judge's scores on the evaluation set, `calib_judge` and
    `calib_human` its scores and the people's readings (in [0, 1]) on the random calibration
    items. Clusters are compared by value across the two sides (the same prompt id is one
    cluster). `calib_weights` are inverse inclusion probabilities (active draws); `lam` None tunes
    it, a number fixes it (1: plain PPI, 0: labels alone). Every judged stratum needs two labels."""
    f_u = np.asarray(judged, dtype=float)
    f_l, y = np.asarray(calib_judge, dtype=float), np.asarray(calib_human, dtype=float)
    if len(f_l) != len(y) or len(y) < 2 or len(f_u) == 0:
        raise ValueError("prediction_powered_harmfulness needs judged scores and at least two "
                         "calibration items with both a score and a label")
    w = np.ones(len(y)) if calib_weights is None else np.asarray(calib_weights, dtype=float)
    strata, s_u, s_l = _strata(judged_strata, calib_strata, len(f_u), len(y))
    index = _cluster_index(judged_clusters, calib_clusters, len(f_u), len(y))
    keep = s_l >= 0  # labels in a stratum no judged answer is in have weight 0: left out
    if not keep.all():
        f_l, y, w, s_l = f_l[keep], y[keep], w[keep], s_l[keep]
        index = np.concatenate([index[:len(f_u)], index[len(f_u):][keep]])
    a_rows, b_rows, d, base = _influence(f_u, s_u, f_l, y, w, s_l, len(strata))
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


def labels_only_harmfulness(calib_human: npt.ArrayLike, level: float = 0.95,
                            calib_clusters: npt.ArrayLike | None = None,
                            calib_weights: npt.ArrayLike | None = None) -> PPIRate:
    """The people's labels alone, no judge: the (weighted) mean reading with its clustered normal
    interval. The same estimator as PPI with lam = 0 and one stratum."""
    y = np.asarray(calib_human, dtype=float)
    return prediction_powered_harmfulness(y[:1], y, y, level, judged_clusters=None,
                                          calib_clusters=calib_clusters,
                                          calib_weights=calib_weights, lam=0.0)


def _strata(judged_strata, calib_strata, n_u: int, n_l: int):
    """The strata (sorted values) and each side's integer stratum codes; every judged stratum
    needs at least two labelled items."""
    s_u = np.zeros(n_u, dtype=object) if judged_strata is None else np.asarray(judged_strata,
                                                                                dtype=object)
    s_l = np.zeros(n_l, dtype=object) if calib_strata is None else np.asarray(calib_strata,
                                                                              dtype=object)
    if len(s_u) != n_u or len(s_l) != n_l:
        raise ValueError("strata must have one value per judged and per labelled item")
    strata = pd.Index(pd.unique(s_u)).sort_values() if n_u else pd.Index([])
    codes_l = strata.get_indexer(s_l)
    counts = np.bincount(codes_l[codes_l >= 0], minlength=len(strata))
    missing = [s for s, c in zip(strata, counts) if c < 2]
    if missing:
        raise ValueError(f"strata {missing} have fewer than two labelled items")
    return list(strata), strata.get_indexer(s_u), codes_l


def _cluster_index(judged_clusters, calib_clusters, n_u: int, n_l: int) -> np.ndarray:
    """One integer per item, judged items first; equal cluster values on either side share a
    code, and a side without clusters has one cluster per item, apart from the other side's."""
    if judged_clusters is None or calib_clusters is None:
        u = np.arange(n_u) if judged_clusters is None else _codes(judged_clusters, n_u,
                                                                  "judged_clusters")
        lab = np.arange(n_l) if calib_clusters is None else _codes(calib_clusters, n_l,
                                                                   "calib_clusters")
        return np.concatenate([u, lab + (u.max() + 1 if n_u else 0)])
    u, lab = np.asarray(judged_clusters, dtype=object), np.asarray(calib_clusters, dtype=object)
    if len(u) != n_u or len(lab) != n_l:
        raise ValueError("clusters must have one value per judged and per labelled item")
    return pd.factorize(np.concatenate([u, lab]))[0]


def _influence(f_u, s_u, f_l, y, w, s_l, k):
    """Each item's influence on the estimate, linear in lam: row @ lam + b, per item (judged
    items first); and the estimate as base + d @ lam. A judged item in stratum j contributes
    lam_j (f - m_j) / n_u for the judged mean and (theta_j - theta) / n_u for its stratum's
    share; a labelled item W_j a (y - ybar_j - lam_j (f - fbar_j)) with a its normalised
    weight."""
    n_u, n_l = len(f_u), len(y)
    share = np.bincount(s_u, minlength=k) / n_u
    m_f = np.bincount(s_u, f_u, minlength=k) / np.maximum(np.bincount(s_u, minlength=k), 1)
    w_sum = np.bincount(s_l, w, minlength=k)
    a = w / w_sum[s_l]
    f_bar, y_bar = np.bincount(s_l, a * f_l, minlength=k), np.bincount(s_l, a * y, minlength=k)
    gap = m_f - f_bar
    base = float(share @ y_bar)
    a_rows = np.zeros((n_u + n_l, k))
    a_rows[:n_u] -= (share * gap) / n_u  # every judged item moves theta through the shares
    a_rows[np.arange(n_u), s_u] += (f_u - m_f[s_u] + gap[s_u]) / n_u
    a_rows[n_u + np.arange(n_l), s_l] = -share[s_l] * a * (f_l - f_bar[s_l])
    b_rows = np.concatenate([(y_bar[s_u] - base) / n_u, share[s_l] * a * (y - y_bar[s_l])])
    return a_rows, b_rows, share * gap, base
