"""The labelling planner, the one the app and the statistics share: which answers people label
next (`plan_session` for one annotator's session, `plan_labels` for a ranked list of the store).

The rules:
- only items below k labels (counting labels stored and items open in other people's sessions),
  never one this annotator has labelled already;
- the priority picks first: items where the judges disagree or a verdict is unparseable;
- then least-annotated first, round-robin over checkpoint x temperature strata, so every stratum
  is covered evenly at each level of coverage;
- a share drawn at random from everything eligible, marked `chosen_at_random` with its
  `inclusion_probability`, so the human-labelled calibration set stays a probability sample
  (judge-error correction uses only those, weighted by 1 / inclusion probability), spread evenly
  through the session. With `active` (the default) the draw favours answers the judges are
  unsure of (`annotations.active`: half uniform, half in proportion to sqrt(f (1 - f)) of the
  judges' mean score f), which narrows the corrected intervals faster; without it, uniform;
- optional gold items (known answers, exempt from k) at random places, to measure each person.
Each pick carries its `AssignmentReason`. `gold_accuracy` scores annotators on the gold items.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotations.active import inclusion_probabilities, pareto_sample
from annotations.frames import Frames, frames_of
from annotations.records import HumanLabel, PromptKind
from annotations.store import Store


class AssignmentReason(str, enum.Enum):
    """Why the planner picked an item."""

    DISAGREEMENT = "disagreement"  # the judges disagree on it
    UNPARSEABLE = "unparseable"  # a judge could not read it
    LEAST_ANNOTATED = "least_annotated"
    RANDOM = "random"  # a probability draw: the only picks that calibrate the correction
    GOLD = "gold"  # a known answer, to measure the annotator


@dataclass(frozen=True)
class Assignment:
    generation_id: str
    reason: AssignmentReason
    chosen_at_random: bool = False
    gold: bool = False
    inclusion_probability: float | None = None  # of a random pick, in its session's draw


@dataclass(frozen=True)
class PlanSettings:
    k: int = 3
    size: int = 20
    random_share: float = 0.2
    gold_share: float = 0.0
    kinds: tuple[PromptKind, ...] = (PromptKind.UNSAFE, PromptKind.BENIGN)
    active: bool = True  # random picks favour answers the judges are unsure of


def candidates(generations: pd.DataFrame, verdicts: pd.DataFrame, labels: pd.DataFrame,
               kinds: Iterable[PromptKind] = (PromptKind.UNSAFE, PromptKind.BENIGN),
               ) -> pd.DataFrame:
    """One row per labellable generation: its stratum, how many people labelled it, whether the
    judges disagree on it or one could not parse it, and their mean score (P(complies) where a
    judge gives one, else its 0/1 verdict; NaN when unjudged)."""
    cols = ["generation_id", "prompt_id", "checkpoint_id", "temperature", "n_labels",
            "disagreement", "unparseable", "score"]
    if generations.empty:
        return pd.DataFrame(columns=cols)
    items = generations[generations["kind"].isin([PromptKind(k).value for k in kinds])]
    items = items[["id", "prompt_id", "checkpoint_id", "temperature"]].rename(
        columns={"id": "generation_id"})
    if len(labels) and "label" in labels:  # can't-judge labels do not count towards k
        labels = labels[labels["label"] != HumanLabel.CANT_JUDGE.value]
    counts = (labels.groupby("generation_id")["annotator"].nunique() if len(labels)
              else pd.Series(dtype=int))
    items["n_labels"] = items["generation_id"].map(counts).fillna(0).astype(int)
    flags = _verdict_flags(verdicts)
    items = items.merge(flags, how="left", left_on="generation_id", right_index=True)
    for col in ("disagreement", "unparseable"):
        items[col] = items[col].astype("boolean").fillna(False).astype(bool)
    return items[cols].reset_index(drop=True)


def _verdict_flags(verdicts: pd.DataFrame) -> pd.DataFrame:
    if verdicts.empty:
        return pd.DataFrame(columns=["disagreement", "unparseable", "score"])
    probability = (pd.to_numeric(verdicts["probability"], errors="coerce")
                   if "probability" in verdicts else pd.Series(np.nan, index=verdicts.index))
    score = probability.where(probability.notna(), pd.to_numeric(verdicts["label"]))
    by = verdicts.groupby("generation_id")["label"]
    return pd.DataFrame({"disagreement": by.nunique(dropna=True) > 1,
                         "unparseable": by.apply(lambda s: s.isna().any()),
                         "score": score.groupby(verdicts["generation_id"]).mean()})


def plan_session(items: pd.DataFrame, annotator_done: set[str], settings: PlanSettings,
                 outstanding: Mapping[str, int] | None = None,
                 gold: Mapping[str, HumanLabel] | None = None,
                 rng: random.Random | None = None) -> list[Assignment]:
    """The next session for one annotator (see the module docstring for the rules)."""
    rng = rng or random.Random()
    outstanding = outstanding or {}
    gold = gold or {}
    pool = items[~items["generation_id"].isin(annotator_done | set(gold))].copy()
    pool["load"] = pool["n_labels"] + pool["generation_id"].map(outstanding).fillna(0)
    pool = pool[pool["load"] < settings.k]
    n_gold = _gold_count(settings, len(gold))
    n_main = settings.size - n_gold
    randoms = _random_picks(pool, round(n_main * settings.random_share), rng, settings.active)
    rest = pool[~pool["generation_id"].isin({a.generation_id for a in randoms})]
    planned = _priority_picks(rest, rng) + _stratified(rest, rng)
    picked = _merge(planned, randoms, n_main)
    golds = [Assignment(g, AssignmentReason.GOLD, gold=True)
             for g in rng.sample(sorted(set(gold) - annotator_done),
                                 min(n_gold, len(set(gold) - annotator_done)))]
    for item in golds:
        picked.insert(rng.randint(0, len(picked)), item)
    return picked


def _gold_count(settings: PlanSettings, available: int) -> int:
    if not available or settings.gold_share <= 0:
        return 0
    return min(available, max(1, round(settings.size * settings.gold_share)))


def _random_picks(pool: pd.DataFrame, n: int, rng: random.Random,
                  active: bool) -> list[Assignment]:
    """n picks from the pool, each with its inclusion probability: uniform (n / N each), or
    active (Pareto order sampling with `inclusion_probabilities` of the judges' scores)."""
    pool = pool.sort_values("generation_id")
    if n <= 0 or pool.empty:
        return []
    ids = pool["generation_id"].to_numpy()
    if not active:
        chance = min(n, len(ids)) / len(ids)
        return [Assignment(g, AssignmentReason.RANDOM, chosen_at_random=True,
                           inclusion_probability=chance)
                for g in rng.sample(list(ids), min(n, len(ids)))]
    scores = pool["score"] if "score" in pool else pd.Series(np.nan, index=pool.index)
    pi = inclusion_probabilities(scores.to_numpy(dtype=float), n)  # no score: uniform
    drawn = pareto_sample(pi, np.random.default_rng(rng.randrange(2**32)))
    order = rng.sample(list(drawn), len(drawn))  # the session meets them in random order
    return [Assignment(ids[i], AssignmentReason.RANDOM, chosen_at_random=True,
                       inclusion_probability=float(pi[i])) for i in order]


def _priority_picks(pool: pd.DataFrame, rng: random.Random) -> list[Assignment]:
    flagged = pool[pool["disagreement"] | pool["unparseable"]]
    order = _shuffled(flagged, rng).sort_values("load", kind="stable")
    return [Assignment(row.generation_id, AssignmentReason.DISAGREEMENT if row.disagreement
                       else AssignmentReason.UNPARSEABLE) for row in order.itertuples()]


def _stratified(pool: pd.DataFrame, rng: random.Random) -> list[Assignment]:
    """Least-annotated first; within one level of coverage, round-robin over the strata."""
    rest = _shuffled(pool[~(pool["disagreement"] | pool["unparseable"])], rng)
    rest = rest.sort_values("load", kind="stable")
    rest["turn"] = rest.groupby(["load", "checkpoint_id", "temperature"]).cumcount()
    strata = {key: i for i, key in enumerate(
        rng.sample(sorted(set(zip(rest["checkpoint_id"], rest["temperature"]))),
                   len(set(zip(rest["checkpoint_id"], rest["temperature"])))))}
    rest["stratum"] = [strata[key] for key in zip(rest["checkpoint_id"], rest["temperature"])]
    rest = rest.sort_values(["load", "turn", "stratum"], kind="stable")
    return [Assignment(g, AssignmentReason.LEAST_ANNOTATED) for g in rest["generation_id"]]


def _shuffled(frame: pd.DataFrame, rng: random.Random) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=rng.randrange(2**32)) if len(frame) else frame


def _merge(planned: list[Assignment], randoms: list[Assignment], n: int) -> list[Assignment]:
    """The first planned items (priority ones first) with the random picks at evenly spaced
    places, the last one at the end: every prefix of the session keeps the random share, so an
    annotator who stops early still adds calibration labels."""
    rest = planned[:max(0, n - len(randoms))]
    total = len(rest) + len(randoms)
    slots = {round((k + 1) * total / len(randoms)) - 1 for k in range(len(randoms))} \
        if randoms else set()
    out, others, picks = [], iter(rest), iter(randoms)
    for place in range(total):
        out.append(next(picks) if place in slots else next(others))
    return out


def gold_accuracy(labels: pd.DataFrame, gold: Mapping[str, HumanLabel]) -> pd.DataFrame:
    """Each annotator's share of correct answers on the gold items they labelled."""
    cols = ["annotator", "gold_items", "correct", "accuracy"]
    if labels.empty or not gold:
        return pd.DataFrame(columns=cols)
    truth = {g: HumanLabel(v).value for g, v in gold.items()}
    on_gold = labels[labels["generation_id"].isin(set(truth))].copy()
    if on_gold.empty:
        return pd.DataFrame(columns=cols)
    on_gold["correct"] = on_gold["label"] == on_gold["generation_id"].map(truth)
    table = on_gold.groupby("annotator")["correct"].agg(["count", "sum"]).reset_index()
    table.columns = ["annotator", "gold_items", "correct"]
    table["accuracy"] = table["correct"] / table["gold_items"]
    return table[cols]


def load_gold(path: str) -> dict[str, HumanLabel]:
    """Gold answers from a CSV or JSONL file with columns generation_id and label."""
    frame = pd.read_json(path, lines=True) if str(path).endswith(".jsonl") else pd.read_csv(path)
    missing = {"generation_id", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}")
    return {str(g): HumanLabel(str(v).strip().lower())
            for g, v in zip(frame["generation_id"], frame["label"])}


PLAN_COLUMNS = ["rank", "generation_id", "prompt_id", "checkpoint_id", "temperature", "n_labels",
                "reason", "chosen_at_random", "inclusion_probability"]


def plan_labels(source: Store | Frames, n: int, k: int = 3, random_share: float = 0.2,
                seed: int = 0, kinds: tuple[PromptKind, ...] = (PromptKind.UNSAFE,),
                active: bool = True) -> pd.DataFrame:
    """The next `n` answers to label, ranked, by `plan_session`'s rules for an annotator who has
    labelled nothing yet (one row per pick, with its item's stratum and label count)."""
    if not 0 <= random_share <= 1:
        raise ValueError(f"random_share must be in [0, 1], got {random_share}")
    frames = frames_of(source)
    verdicts = frames.outcomes.rename(columns={"outcome": "label"})
    generations = frames.generations if len(frames.generations) else (  # judged answers only
        frames.outcomes.drop_duplicates("generation_id").rename(columns={"generation_id": "id"}))
    items = candidates(generations, verdicts, frames.labels, kinds)
    settings = PlanSettings(k=k, size=n, random_share=random_share, kinds=kinds, active=active)
    plan = plan_session(items, set(), settings, rng=random.Random(seed))
    picks = pd.DataFrame({"generation_id": [a.generation_id for a in plan],
                          "reason": [a.reason.value for a in plan],
                          "chosen_at_random": [a.chosen_at_random for a in plan],
                          "inclusion_probability": [a.inclusion_probability for a in plan]})
    table = picks.merge(items, on="generation_id", how="left")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[PLAN_COLUMNS]
