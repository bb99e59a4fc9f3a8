"""Harmfulness of one set of checkpoints against another's on the same prompts: the one
comparison the capability-matched analysis (`annotations.matched`) and the conclusion-robustness
table (`annotations.robustness`) both read.

A set's harmfulness pools its answers (every seed's checkpoint, every sample) over the prompts
both sets answered; the CI is a paired percentile bootstrap over prompts (a prompt's answers in
both sets move together), computed as `variance.seed_spread` computes a change against the base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from annotations.bootstrap import Estimate, make_rng, percentile_ci, resample_totals
from annotations.sweeps import Conclusion, conclusion
from annotations.variance import paired_difference


@dataclass(frozen=True)
class Contrast:
    """Harmfulness of set A, of set B, A minus B with its CI, the prompts paired, the reading."""

    harmfulness_a: float
    harmfulness_b: float
    difference: float
    ci_low: float
    ci_high: float
    n_prompts: int
    conclusion: Conclusion

    def to_dict(self) -> dict:
        return {**asdict(self), "conclusion": self.conclusion.value}


def _totals(rows: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    mine = rows[rows["checkpoint_id"].isin(list(ids))]
    return mine.groupby("prompt_id")["outcome"].agg(["sum", "count"])


def paired_totals(rows: pd.DataFrame, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Per prompt answered by both sets: A complied, A answers, B complied, B answers. `rows`:
    outcome (1, 0; nan rows are left out), checkpoint_id, prompt_id."""
    parsed = rows[rows["outcome"].notna()]
    paired = _totals(parsed, a).merge(_totals(parsed, b), left_index=True, right_index=True,
                                      suffixes=("_a", "_b"))
    return paired.to_numpy(dtype=float)


def paired_contrast(rows: pd.DataFrame, a: Sequence[str], b: Sequence[str],
                    n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Contrast | None:
    """Harmfulness of checkpoints `a` (pooled) minus `b` (pooled) on the prompts both answered,
    with a paired bootstrap CI over prompts; None when no prompt was answered by both."""
    totals = paired_totals(rows, a, b)
    if len(totals) == 0:
        return None
    boot = resample_totals(totals, n_boot, make_rng(seed))
    rate_a, rate_b, diff, low, high, n, _, _ = paired_difference(totals, boot, level)
    return Contrast(float(rate_a), float(rate_b), float(diff), low, high, int(n),
                    conclusion(diff, low, high))


def interpolated_rate(rows: pd.DataFrame, before: str, after: str, weight: float,
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Estimate:
    """(1 - weight) x harmfulness of checkpoint `before` + weight x that of `after`, on the
    prompts both answered, with a paired bootstrap CI over prompts: the harmfulness where a
    capability target lies between two checkpoints, read linearly."""
    totals = paired_totals(rows, [after], [before])
    if len(totals) == 0:
        return Estimate(np.nan, np.nan, np.nan)

    def rate(t: np.ndarray) -> np.ndarray:
        t = np.atleast_2d(t)
        return weight * t[:, 0] / t[:, 1] + (1 - weight) * t[:, 2] / t[:, 3]

    boot = resample_totals(totals, n_boot, make_rng(seed))
    low, high = percentile_ci(rate(boot), level)
    return Estimate(float(rate(totals.sum(axis=0))[0]), float(low), float(high))
