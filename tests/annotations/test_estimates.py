"""Why the headline of a cell without its own labels is Rogan-Gladen and not pooled PPI++: a
simulated sweep in which fine-tuning moves harmfulness from 0.2 to 0.8 while the judge's error
rates stay put (sensitivity 0.85, specificity 0.80), calibrated on a pool of labels drawn
from every checkpoint. Coverage over 300 replicates with fixed seeds."""

from __future__ import annotations

import numpy as np

from annotations.correction import corrected_harmfulness
from annotations.ppi import prediction_powered_harmfulness

RATES = (0.2, 0.5, 0.8)  # three checkpoints' true harmfulness
SENS, SPEC = 0.85, 0.80


def _checkpoint(rng, rate, n):
    y = (rng.random(n) < rate).astype(int)
    return y, np.where(y == 1, rng.random(n) < SENS, rng.random(n) < 1 - SPEC).astype(int)


def test_pooled_ppi_is_pulled_to_the_pool_where_rogan_gladen_is_not():
    rng = np.random.default_rng(21)
    ppi_hits, rogan_hits = np.zeros(len(RATES)), np.zeros(len(RATES))
    for _ in range(300):
        pool = [_checkpoint(rng, rate, 100) for rate in RATES]  # 300 labels from all three
        pool_y = np.concatenate([y for y, _ in pool])
        pool_v = np.concatenate([v for _, v in pool])
        for i, rate in enumerate(RATES):
            _, verdicts = _checkpoint(rng, rate, 2000)
            ppi = prediction_powered_harmfulness(verdicts, pool_v, pool_y, judged_strata=verdicts,
                                                 calib_strata=pool_v)
            rogan = corrected_harmfulness(verdicts, pool_v, pool_y, n_boot=300, seed=i)
            ppi_hits[i] += ppi.ci_low <= rate <= ppi.ci_high
            rogan_hits[i] += rogan.ci_low <= rate <= rogan.ci_high
    ppi_cover, rogan_cover = ppi_hits / 300, rogan_hits / 300
    print(f"coverage at {RATES}: pooled PPI++ {ppi_cover}, Rogan-Gladen {rogan_cover}")
    assert np.all(rogan_cover >= 0.92)
    assert ppi_cover[1] >= 0.92  # where the checkpoint looks like the pool, both are right
    assert ppi_cover[0] < 0.5 and ppi_cover[2] < 0.5  # where it does not, pooling misleads
