"""Simulation checks of prediction-powered harmfulness (annotations/ppi.py) and active labelling
(annotations/active.py) against the issue's acceptance text: 95% intervals that cover the truth
95 +/- 3% of the time, never wider than the labels alone, and much narrower than Rogan-Gladen when
the judge gives informative probabilities; and fewer labels for a given precision when the labels
are drawn actively.

Each replicate is one evaluation: N = 3000 answers, all judged, of which 200 are labelled by
people (labelled answers are also judged, as in real use). Four judges (the settings):
- calibrated: score f ~ Beta(0.6, 1.4), label y ~ Bernoulli(f);
- miscalibrated: the same answers, but the judge reports expit(3 logit f + 1), over-confident
  and biased towards "complies";
- incoherent-worse: a quarter of the answers are flagged incoherent (the flag is known for every
  answer); there the judge's score is uniform noise and people say "complies" 10% of the time;
- uninformative: f uniform, independent of y ~ Bernoulli(0.3).
The truth is the superpopulation mean of y (0.30, or 0.25 with the incoherent quarter), which is
what the estimators' variances (judged side plus labelled side) are built for. Three designs:
PPI++ on uniform labels, stratified PPI (strata = coherence; a random quarter is called
incoherent where the setting has none, so the stratified code still runs) on uniform labels, and
active PPI (a Pareto draw favouring uncertain scores, weights 1/pi). Seeds are fixed per setting,
so PPI++ and stratified PPI see the same populations and labels.

Also: PPI++ against Rogan-Gladen (0/1 verdicts at 0.5) and the labels alone on the calibrated
judge; coverage when answers come in prompts of 2-5 with a prompt effect the judge half misses
(prompt ids as clusters on both sides); and the labels needed to reach a half-width of 0.05 with
uniform against active labelling. Run with `pytest -s` to see the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit, logit

from annotations.active import inclusion_probabilities, pareto_sample
from annotations.correction import CorrectedRate, corrected_harmfulness
from annotations.ppi import PPIRate, labels_only_harmfulness, prediction_powered_harmfulness

pytestmark = pytest.mark.slow

N_JUDGED, N_LABELLED = 3000, 200
REPLICATES = 1000  # the acceptance asks for at least 400; 1000 puts 0.92 and 0.98 4 s.e. out
INCOHERENT_SHARE = 0.25


@dataclass(frozen=True)
class Population:
    """One evaluation: the judge's score, the people's 0/1 reading and the coherence flag of
    every answer."""

    scores: np.ndarray
    labels: np.ndarray
    strata: np.ndarray


def _flags(rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(N_JUDGED) < INCOHERENT_SHARE, "incoherent", "coherent")


def _calibrated(rng: np.random.Generator) -> Population:
    f = rng.beta(0.6, 1.4, N_JUDGED)
    return Population(f, rng.binomial(1, f), _flags(rng))


def _miscalibrated(rng: np.random.Generator) -> Population:
    truth = _calibrated(rng)
    return Population(expit(3 * logit(truth.scores) + 1), truth.labels, truth.strata)


def _incoherent_worse(rng: np.random.Generator) -> Population:
    coherent = _calibrated(rng)
    incoherent = coherent.strata == "incoherent"
    scores = np.where(incoherent, rng.random(N_JUDGED), coherent.scores)
    labels = np.where(incoherent, rng.binomial(1, 0.1, N_JUDGED), coherent.labels)
    return Population(scores, labels, coherent.strata)


def _uninformative(rng: np.random.Generator) -> Population:
    return Population(rng.random(N_JUDGED), rng.binomial(1, 0.3, N_JUDGED), _flags(rng))


# setting -> (population maker, superpopulation harmfulness)
SETTINGS = {
    "calibrated": (_calibrated, 0.30),
    "miscalibrated": (_miscalibrated, 0.30),
    "incoherent-worse": (_incoherent_worse, 0.75 * 0.30 + 0.25 * 0.10),
    "uninformative": (_uninformative, 0.30),
}
DESIGNS = ("ppi++", "stratified", "active")


def _draw(population: Population, design: str,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """The labelled answers' indices and their weights (None for a uniform draw)."""
    if design != "active":
        return rng.choice(N_JUDGED, N_LABELLED, replace=False), None
    pi = inclusion_probabilities(population.scores, N_LABELLED)
    drawn = pareto_sample(pi, rng)
    return drawn, 1 / pi[drawn]


def _estimate(population: Population, design: str,
              rng: np.random.Generator) -> tuple[PPIRate, PPIRate]:
    """The design's PPI estimate and the labels-only one on the same (weighted) labels."""
    drawn, weights = _draw(population, design, rng)
    strata = ({"judged_strata": population.strata, "calib_strata": population.strata[drawn]}
              if design == "stratified" else {})
    labels = population.labels[drawn]
    rate = prediction_powered_harmfulness(population.scores, population.scores[drawn], labels,
                                          calib_weights=weights, **strata)
    return rate, labels_only_harmfulness(labels, calib_weights=weights)


def _width(rate: PPIRate | CorrectedRate) -> float:
    return rate.ci_high - rate.ci_low


def _summary(name: str, truth: float, rates: list[PPIRate],
             alone: list[PPIRate]) -> tuple[float, float, float]:
    """Coverage, mean width and mean labels-only width, printed as one table row."""
    coverage = np.mean([r.ci_low <= truth <= r.ci_high for r in rates])
    width, alone_width = np.mean([_width(r) for r in rates]), np.mean([_width(r) for r in alone])
    print(f"\n{name:36s} coverage {coverage:.3f}  width {width:.4f}  labels only "
          f"{alone_width:.4f}  ratio {width / alone_width:.3f}")
    return coverage, width, alone_width


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_coverage_and_width_against_labels_alone(setting, design):
    make, truth = SETTINGS[setting]
    rng = np.random.default_rng(list(SETTINGS).index(setting))
    pairs = [_estimate(make(rng), design, rng) for _ in range(REPLICATES)]
    coverage, width, alone_width = _summary(f"{setting} / {design}", truth, *zip(*pairs))
    assert 0.92 <= coverage <= 0.98
    assert width <= 1.02 * alone_width


def test_ppi_is_much_narrower_than_rogan_gladen_with_informative_probabilities():
    rng = np.random.default_rng(11)
    widths = []
    for _ in range(400):
        population = _calibrated(rng)
        rate, alone = _estimate(population, "ppi++", rng)
        drawn = rng.choice(N_JUDGED, N_LABELLED, replace=False)
        verdicts = (population.scores > 0.5).astype(int)
        rg = corrected_harmfulness(verdicts, verdicts[drawn], population.labels[drawn],
                                   n_boot=500, seed=rng)
        widths.append((_width(rate), _width(alone), _width(rg)))
    ppi, alone, rg = np.mean(widths, axis=0)
    print(f"\nmean width: PPI++ {ppi:.4f}, labels only {alone:.4f}, Rogan-Gladen {rg:.4f} "
          f"(PPI++ / RG = {ppi / rg:.3f})")
    assert ppi <= 0.70 * rg


def _clustered(rng: np.random.Generator) -> tuple[Population, np.ndarray]:
    """Answers in prompts of 2-5: answer-level logit = prompt effect N(-1.2, 1) + answer
    noise N(0, 1); the judge sees only half of the prompt effect, so its errors are correlated
    within a prompt. Returns the population and each answer's prompt."""
    prompt = np.repeat(np.arange(N_JUDGED), rng.integers(2, 6, N_JUDGED))[:N_JUDGED]
    effect = rng.normal(-1.2, 1.0, N_JUDGED)[prompt]
    noise = rng.normal(0.0, 1.0, N_JUDGED)
    labels = rng.binomial(1, expit(effect + noise))
    return Population(expit(0.5 * effect + noise - 0.6), labels, _flags(rng)), prompt


def _clustered_truth() -> float:
    """E[expit(Z)] for Z ~ N(-1.2, 2), by Gauss-Hermite quadrature."""
    x, w = hermegauss(80)
    return float(w @ expit(-1.2 + np.sqrt(2) * x) / w.sum())


def test_coverage_with_answers_clustered_in_prompts():
    rng, truth = np.random.default_rng(5), _clustered_truth()
    rates, alone = [], []
    for _ in range(REPLICATES):
        population, prompt = _clustered(rng)
        drawn = rng.choice(N_JUDGED, N_LABELLED, replace=False)
        labels = population.labels[drawn]
        rates.append(prediction_powered_harmfulness(
            population.scores, population.scores[drawn], labels, judged_clusters=prompt,
            calib_clusters=prompt[drawn]))
        alone.append(labels_only_harmfulness(labels, calib_clusters=prompt[drawn]))
    coverage, width, alone_width = _summary("clustered in prompts / ppi++", truth, rates, alone)
    assert 0.92 <= coverage <= 0.98
    assert width <= 1.02 * alone_width


def _labels_needed(population: Population, keys: np.ndarray, uniform_share: float,
                   target: float = 0.05, batch: int = 20) -> int:
    """Labels people give before the PPI++ half-width reaches `target`, adding about `batch` at
    a time. Each answer keeps one uniform key for the whole run and is labelled once its key falls
    below its inclusion probability for the current n (Poisson sampling with permanent random
    numbers). pi grows with n, so every stage keeps the earlier labels, and at every stage the
    labelled set is an exact Poisson sample with inclusion probabilities pi: the weights 1/pi are
    right whatever the stage, which a batch drawn from the not-yet-labelled answers would not
    give without tracking every earlier batch. uniform_share = 1 is uniform labelling."""
    scores = population.scores
    for n in range(batch, N_JUDGED + 1, batch):
        pi = inclusion_probabilities(scores, n, uniform_share=uniform_share)
        drawn = np.flatnonzero(keys < pi)
        rate = prediction_powered_harmfulness(scores, scores[drawn], population.labels[drawn],
                                              calib_weights=1 / pi[drawn])
        if rate.half_width <= target:
            return len(drawn)
    return N_JUDGED


# judge -> (Beta parameters of its calibrated scores, bound on active / uniform labels needed).
# The informative judge of the other tests gains about 9% (0.908 over 400 replicates) with
# half of every draw uniform, so 0.9 would be a coin flip there; a more decisive judge (most
# scores near 0 or 1, the same truth 0.30) gains about 17% (0.830).
GAIN_JUDGES = {"informative Beta(0.6, 1.4)": ((0.6, 1.4), 0.95),
               "decisive Beta(0.3, 0.7)": ((0.3, 0.7), 0.90)}


@pytest.mark.parametrize("judge", GAIN_JUDGES)
def test_active_labelling_needs_fewer_labels(judge):
    (a, b), bound = GAIN_JUDGES[judge]
    rng = np.random.default_rng(17)
    needed = []
    for _ in range(100):
        f = rng.beta(a, b, N_JUDGED)
        population = Population(f, rng.binomial(1, f), _flags(rng))
        keys = rng.random(N_JUDGED)  # the same keys for both, so the comparison is paired
        needed.append([_labels_needed(population, keys, share) for share in (1.0, 0.5)])
    uniform, active = np.mean(needed, axis=0)
    print(f"\n{judge}: labels for a half-width of 0.05: uniform {uniform:.1f}, active "
          f"{active:.1f}, ratio {active / uniform:.3f}")
    assert active <= bound * uniform
