"""Which answers an annotator labels next: pure functions over the store's frames.

A session is a short list of generations planned at once for one annotator:
- only items below k labels (counting labels stored and items open in other people's sessions),
  never one this annotator has labelled already;
- the planner's picks first: items where the judges disagree or a verdict is unparseable;
- then least-annotated first, round-robin over checkpoint x temperature strata, so every stratum
  is covered evenly at each level of coverage;
- a share drawn uniformly at random from everything eligible, marked `chosen_at_random`, so the
  human-labelled calibration set stays an unbiased sample (judge-error correction needs that);
- optional gold items (known answers, exempt from k) at random places, to measure each person.

`Outstanding` remembers which items sit in open sessions so that 20 people starting at once do
not all get the same least-annotated items; entries expire, so an abandoned browser frees them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from annotations.records import HumanLabel


@dataclass(frozen=True)
class Assignment:
    generation_id: str
    reason: str  # "disagreement", "unparseable", "least_annotated", "random" or "gold"
    chosen_at_random: bool = False
    gold: bool = False


@dataclass(frozen=True)
class PlanSettings:
    k: int = 3
    size: int = 20
    random_share: float = 0.2
    gold_share: float = 0.0
    kinds: tuple[str, ...] = ("unsafe", "benign")


def candidates(generations: pd.DataFrame, verdicts: pd.DataFrame, labels: pd.DataFrame,
               kinds: Iterable[str] = ("unsafe", "benign")) -> pd.DataFrame:
    """One row per labellable generation: its stratum, how many people labelled it, and whether
    the judges disagree on it or one could not parse it."""
    cols = ["generation_id", "prompt_id", "checkpoint_id", "temperature", "n_labels",
            "disagreement", "unparseable"]
    if generations.empty:
        return pd.DataFrame(columns=cols)
    items = generations[generations["kind"].isin(list(kinds))]
    items = items[["id", "prompt_id", "checkpoint_id", "temperature"]].rename(
        columns={"id": "generation_id"})
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
        return pd.DataFrame(columns=["disagreement", "unparseable"])
    by = verdicts.groupby("generation_id")["label"]
    return pd.DataFrame({"disagreement": by.nunique(dropna=True) > 1,
                         "unparseable": by.apply(lambda s: s.isna().any())})


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
    randoms = _random_picks(pool, round(n_main * settings.random_share), rng)
    rest = pool[~pool["generation_id"].isin({a.generation_id for a in randoms})]
    planned = _priority_picks(rest, rng) + _stratified(rest, rng)
    picked = _merge(planned, randoms, n_main, rng)
    golds = [Assignment(g, "gold", gold=True)
             for g in rng.sample(sorted(set(gold) - annotator_done),
                                 min(n_gold, len(set(gold) - annotator_done)))]
    for item in golds:
        picked.insert(rng.randint(0, len(picked)), item)
    return picked


def _gold_count(settings: PlanSettings, available: int) -> int:
    if not available or settings.gold_share <= 0:
        return 0
    return min(available, max(1, round(settings.size * settings.gold_share)))


def _random_picks(pool: pd.DataFrame, n: int, rng: random.Random) -> list[Assignment]:
    ids = sorted(pool["generation_id"])
    return [Assignment(g, "random", chosen_at_random=True)
            for g in rng.sample(ids, min(n, len(ids)))]


def _priority_picks(pool: pd.DataFrame, rng: random.Random) -> list[Assignment]:
    flagged = pool[pool["disagreement"] | pool["unparseable"]]
    order = _shuffled(flagged, rng).sort_values("load", kind="stable")
    return [Assignment(row.generation_id, "disagreement" if row.disagreement else "unparseable")
            for row in order.itertuples()]


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
    return [Assignment(g, "least_annotated") for g in rest["generation_id"]]


def _shuffled(frame: pd.DataFrame, rng: random.Random) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=rng.randrange(2**32)) if len(frame) else frame


def _merge(planned: list[Assignment], randoms: list[Assignment], n: int,
           rng: random.Random) -> list[Assignment]:
    """The first n planned items with the random picks at random places after the priority ones."""
    head = [a for a in planned if a.reason in ("disagreement", "unparseable")]
    tail = [a for a in planned if a.reason not in ("disagreement", "unparseable")]
    body = tail[:max(0, n - len(randoms) - len(head))]
    for item in randoms:
        body.insert(rng.randint(0, len(body)), item)
    return (head + body)[:n]


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


@dataclass
class Outstanding:
    """Items in open sessions, per annotator, with an expiry (thread-safe; one per app)."""

    ttl_s: float = 1800.0
    _held: dict[str, dict[str, float]] = field(default_factory=dict)  # generation -> who -> since
    lock: threading.RLock = field(default_factory=threading.RLock)

    def counts(self, exclude: str | None = None) -> dict[str, int]:
        with self.lock:
            self._expire()
            return {g: sum(1 for who in holders if who != exclude)
                    for g, holders in self._held.items()}

    def hold(self, annotator: str, generation_ids: Iterable[str]) -> None:
        now = time.monotonic()
        with self.lock:
            for g in generation_ids:
                self._held.setdefault(g, {})[annotator] = now

    def release(self, annotator: str, generation_id: str) -> None:
        with self.lock:
            holders = self._held.get(generation_id, {})
            holders.pop(annotator, None)
            if not holders:
                self._held.pop(generation_id, None)

    def release_all(self, annotator: str) -> None:
        """Free everything `annotator` holds (they start a new session)."""
        with self.lock:
            for g in list(self._held):
                self.release(annotator, g)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        for g in list(self._held):
            self._held[g] = {who: t for who, t in self._held[g].items() if t > cutoff}
            if not self._held[g]:
                del self._held[g]
