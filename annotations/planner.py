"""The labelling planner: which generations people should label next, in order, so that the
corrected estimates' intervals shrink fastest (`plan_labels`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotations.frames import Frames, frames_of, generation_items, select_outcomes
from annotations.store import Store

PLAN_COLUMNS = ["rank", "generation_id", "prompt_id", "checkpoint_id", "temperature", "n_labels",
                "reason", "chosen_at_random"]


def plan_labels(source: Store | Frames, n: int, k: int = 3, random_share: float = 0.2,
                seed: int = 0, kind: str | None = "unsafe") -> pd.DataFrame:
    """The next `n` generations to send to annotators, in order, so the corrected estimates'
    intervals shrink fastest.

    - Items with k or more labels are skipped.
    - `random_share` of the picks are drawn uniformly from every eligible item first and marked
      `chosen_at_random` (only those calibrate sensitivity and specificity when any exist: an
      unbiased sample of the judge's errors).
    - Then items where the judges disagree, then items with an unparseable verdict (where the
      judges' errors are), then the rest, each tier stratified by checkpoint x temperature:
      round-robin over the strata, the stratum with the fewest labelled items first.
    - The random picks are spread evenly through the list, so any prefix keeps the share.
    """
    if not 0 <= random_share <= 1:
        raise ValueError(f"random_share must be in [0, 1], got {random_share}")
    frames = frames_of(source)
    items = _plan_items(frames, kind)
    eligible = items[items["n_labels"] < k]
    rng = np.random.default_rng(seed)
    n = min(n, len(eligible))
    n_random = min(round(n * random_share), n)
    picked = rng.choice(len(eligible), size=n_random, replace=False) if n_random else []
    randoms = eligible.iloc[sorted(picked)].assign(reason="random", chosen_at_random=True)
    rest = _stratified_order(eligible.drop(index=randoms.index), items, rng).head(n - n_random)
    randoms = randoms.iloc[rng.permutation(len(randoms))]
    plan = _interleave(rest.assign(chosen_at_random=False), randoms, random_share)
    plan["rank"] = range(1, len(plan) + 1)
    return plan[PLAN_COLUMNS].reset_index(drop=True)


def _plan_items(frames: Frames, kind: str | None) -> pd.DataFrame:
    outcomes = select_outcomes(frames.outcomes, kind)
    flags = pd.DataFrame({
        "disagreement": outcomes.groupby("generation_id")["outcome"].nunique(dropna=True) > 1,
        "unparseable": outcomes["outcome"].isna().groupby(outcomes["generation_id"]).any()})
    items = generation_items(frames, kind).merge(flags, how="left", left_on="generation_id",
                                       right_index=True)
    for flag in ("disagreement", "unparseable"):  # answers no judge has seen yet: no flags
        items[flag] = items[flag].eq(True)
    counts = frames.labels.groupby("generation_id")["annotator"].nunique()
    items["n_labels"] = items["generation_id"].map(counts).fillna(0).astype(int)
    items["reason"] = np.select([items["disagreement"], items["unparseable"]],
                                ["disagreement", "unparseable"], "stratified")
    return items.sort_values("generation_id").reset_index(drop=True)


def _stratified_order(pool: pd.DataFrame, items: pd.DataFrame,
                      rng: np.random.Generator) -> pd.DataFrame:
    strata = ["checkpoint_id", "temperature"]
    labelled = items.assign(done=items["n_labels"] > 0).groupby(strata)["done"].sum()
    pool = pool.iloc[rng.permutation(len(pool))]
    tier = pool["reason"].map({"disagreement": 0, "unparseable": 1, "stratified": 2})
    turn = pool.groupby([tier, *[pool[s] for s in strata]]).cumcount()
    need = [labelled.get(key, 0) for key in zip(pool["checkpoint_id"], pool["temperature"])]
    order = pool.assign(_tier=tier, _turn=turn, _need=need)
    order = order.sort_values(["_tier", "_turn", "_need", "checkpoint_id", "temperature"],
                              kind="stable")
    return order.drop(columns=["_tier", "_turn", "_need"])


def _interleave(rest: pd.DataFrame, randoms: pd.DataFrame, share: float) -> pd.DataFrame:
    """The random picks at evenly spaced places (where floor((i + 1) * share) steps up, the
    last places when rounding left too few), the others in their order."""
    total = len(rest) + len(randoms)
    position = np.arange(total)
    steps = np.flatnonzero(np.floor((position + 1) * share) > np.floor(position * share))
    slots = list(steps[:len(randoms)])
    free = [i for i in range(total) if i not in set(slots)]
    slots += free[len(free) - (len(randoms) - len(slots)):] if len(randoms) > len(slots) else []
    others = [i for i in range(total) if i not in set(slots)]
    plan = pd.concat([rest.assign(_at=others), randoms.assign(_at=sorted(slots))])
    return plan.sort_values("_at").drop(columns="_at")
