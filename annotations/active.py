"""Active labelling that stays valid (Zrnic and Candes 2024, "Active statistical inference"):
draw the items people label with probabilities that favour where the judge is unsure, record
each draw's inclusion probability, and weight the labels by its inverse.

- `uncertainty`: sqrt(f (1 - f)) for a judge score f, the standard deviation of a label the
  judge calls complying with probability f; the variance-optimal inclusion probability is
  proportional to it when the judge is calibrated.
- `inclusion_probabilities`: pi for drawing n of N items, a mixture of that and uniform (the
  uniform share bounds every weight 1/pi, so a judge that is confidently wrong cannot make the
  estimate's variance explode), capped at 1 with the excess spread over the rest, summing to n.
- `pareto_sample`: a fixed-size draw whose inclusion probabilities are pi to a close
  approximation (Rosen 1997, Pareto order sampling): the smallest n keys U (1 - pi) / ((1 - U) pi).
Written by hand: none of numpy, scipy or ppi-python draws a fixed-size sample with given
inclusion probabilities (numpy's `choice(p=..., replace=False)` is successive sampling, whose
inclusion probabilities are not n * p).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Half of every active draw is uniform: with it, no weight exceeds 2 N / n.
UNIFORM_SHARE = 0.5


def uncertainty(scores: npt.ArrayLike) -> np.ndarray:
    """sqrt(f (1 - f)) per item; an item without a score counts as the most uncertain."""
    f = np.asarray(scores, dtype=float)
    return np.sqrt(np.clip(np.where(np.isnan(f), 0.5, f) * (1 - np.where(np.isnan(f), 0.5, f)),
                           0.0, 0.25))


def inclusion_probabilities(scores: npt.ArrayLike, n: int,
                            uniform_share: float = UNIFORM_SHARE) -> np.ndarray:
    """Each item's probability of being among n drawn from these N, proportional to a mixture
    of `uncertainty` and uniform, capped at 1; the probabilities sum to min(n, N)."""
    u = uncertainty(scores)
    size = len(u)
    if not 0 <= uniform_share <= 1:
        raise ValueError(f"uniform_share must be in [0, 1], got {uniform_share}")
    if size == 0 or n <= 0:
        return np.zeros(size)
    n = min(n, size)
    q = (uniform_share / size + (1 - uniform_share) * u / u.sum() if u.sum() > 0
         else np.full(size, 1 / size))
    pi = np.zeros(size)
    capped = np.zeros(size, dtype=bool)
    for _ in range(size):  # cap at 1 and give the rest's share again, until nothing exceeds 1
        free = ~capped
        pi[free] = (n - capped.sum()) * q[free] / q[free].sum()
        pi[capped] = 1.0
        over = free & (pi > 1)
        if not over.any():
            break
        capped |= over
    return np.clip(pi, 0.0, 1.0)


def pareto_sample(pi: npt.ArrayLike, rng: np.random.Generator) -> np.ndarray:
    """Indices of round(sum(pi)) items drawn by Pareto order sampling with target inclusion
    probabilities `pi` (items with pi = 1 are always drawn, pi = 0 never)."""
    pi = np.asarray(pi, dtype=float)
    n = int(round(pi.sum()))
    u = rng.random(len(pi))
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = np.where(pi >= 1, -1.0, np.where(pi <= 0, np.inf, u * (1 - pi) / ((1 - u) * pi)))
    return np.sort(np.argsort(keys, kind="stable")[:n])
