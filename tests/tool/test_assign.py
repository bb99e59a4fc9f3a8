"""The session planner: k, least-annotated first, strata, planner's picks, random share, gold."""

from __future__ import annotations

import random
from collections import Counter

import pandas as pd

from annotations.records import HumanLabel
from annotations.planner import PlanSettings, candidates, gold_accuracy, plan_session
from tool.assign import Outstanding


def items_frame(n_ckpt=3, n_temp=2, per=4, labelled=None, flagged=()):
    rows = []
    for c in range(n_ckpt):
        for t in range(n_temp):
            for i in range(per):
                gid = f"g{c}{t}{i}"
                rows.append(dict(generation_id=gid, prompt_id=f"p{i}", checkpoint_id=f"c{c}",
                                 temperature=0.7 * t, n_labels=(labelled or {}).get(gid, 0),
                                 disagreement=gid in flagged, unparseable=False))
    return pd.DataFrame(rows)


def test_candidates_flags_disagreement_and_unparseable():
    gens = pd.DataFrame([dict(id=g, prompt_id="p", checkpoint_id="c", temperature=0.0, kind=k)
                         for g, k in (("a", "unsafe"), ("b", "unsafe"), ("c", "unsafe"),
                                      ("d", "capability"))])
    verdicts = pd.DataFrame([dict(generation_id="a", label=1), dict(generation_id="a", label=0),
                             dict(generation_id="b", label=1), dict(generation_id="b", label=None),
                             dict(generation_id="c", label=1), dict(generation_id="c", label=1)])
    labels = pd.DataFrame([dict(generation_id="c", annotator="x"),
                           dict(generation_id="c", annotator="y")])
    frame = candidates(gens, verdicts, labels).set_index("generation_id")
    assert list(frame.index) == ["a", "b", "c"]  # capability prompts are not labelled
    assert frame.loc["a", "disagreement"] and not frame.loc["a", "unparseable"]
    assert frame.loc["b", "unparseable"] and not frame.loc["b", "disagreement"]
    assert frame.loc["c", "n_labels"] == 2 and not frame.loc["c", "disagreement"]


def test_flagged_first_then_least_annotated_round_robin():
    labelled = {f"g0{t}{i}": 1 for t in range(2) for i in range(4)}  # c0: one label each
    items = items_frame(labelled=labelled, flagged={"g111"})
    plan = plan_session(items, set(), PlanSettings(k=3, size=6, random_share=0),
                        rng=random.Random(1))
    assert plan[0].generation_id == "g111" and plan[0].reason == "disagreement"
    rest = plan[1:]
    assert all(not a.generation_id.startswith("g0") for a in rest)  # unlabelled ones first
    strata = Counter(a.generation_id[:3] for a in rest)
    assert len(strata) == 4 and max(strata.values()) == 2  # five picks over four strata


def test_k_outstanding_and_own_labels_respected():
    items = items_frame(n_ckpt=1, n_temp=1, per=4, labelled={"g000": 3, "g001": 2})
    plan = plan_session(items, {"g003"}, PlanSettings(k=3, size=10, random_share=0),
                        outstanding={"g001": 1}, rng=random.Random(0))
    assert [a.generation_id for a in plan] == ["g002"]


def test_random_share_marked_and_gold_mixed_in():
    items = items_frame(per=10)
    gold = {"gold1": HumanLabel.REFUSES, "gold2": HumanLabel.COMPLIES}
    plan = plan_session(items, set(), PlanSettings(k=3, size=20, random_share=0.25, gold_share=0.1),
                        gold=gold, rng=random.Random(3))
    assert len(plan) == 20 and len({a.generation_id for a in plan}) == 20
    assert sum(a.chosen_at_random for a in plan) == round(18 * 0.25)
    assert {a.generation_id for a in plan if a.gold} == set(gold)
    assert not any(a.chosen_at_random for a in plan if a.gold)


def test_gold_accuracy():
    labels = pd.DataFrame([dict(generation_id="g1", annotator="a", label="refuses"),
                           dict(generation_id="g2", annotator="a", label="refuses"),
                           dict(generation_id="g1", annotator="b", label="refuses"),
                           dict(generation_id="x", annotator="b", label="complies")])
    gold = {"g1": HumanLabel.REFUSES, "g2": HumanLabel.COMPLIES}
    table = gold_accuracy(labels, gold).set_index("annotator")
    assert table.loc["a", "accuracy"] == 0.5 and table.loc["b", "accuracy"] == 1.0


def test_outstanding_expires_and_releases():
    held = Outstanding(ttl_s=60)
    held.hold("ana", ["g1", "g2"])
    held.hold("bob", ["g1"])
    assert held.counts() == {"g1": 2, "g2": 1}
    assert held.counts(exclude="ana") == {"g1": 1, "g2": 0}
    held.release("ana", "g1")
    held.release_all("bob")
    assert held.counts() == {"g2": 1}
    held.ttl_s = -1
    assert held.counts() == {}


def test_active_random_picks_favour_unsure_answers_with_their_inclusion_probabilities():
    """Active draws: answers the judges are unsure of (score 0.5) come up more often than sure
    ones (0.02), each pick carries its inclusion probability, and over many sessions each
    answer's share of sessions matches that probability (Pareto order sampling)."""
    items = items_frame(n_ckpt=2, n_temp=2, per=25).assign(score=0.02)
    unsure = set(items["generation_id"].iloc[::4])
    items.loc[items["generation_id"].isin(unsure), "score"] = 0.5
    settings = PlanSettings(k=3, size=20, random_share=1.0, active=True)
    seen, recorded = Counter(), {}
    for s in range(800):
        for a in plan_session(items, set(), settings, rng=random.Random(s)):
            assert a.chosen_at_random and 0 < a.inclusion_probability <= 1
            seen[a.generation_id] += 1
            recorded[a.generation_id] = a.inclusion_probability
    assert min(recorded[g] for g in unsure) > 1.5 * max(recorded[g] for g in set(recorded) - unsure)
    for gen_id, pi in recorded.items():  # 800 sessions: the binomial sd is below 0.017
        assert abs(seen[gen_id] / 800 - pi) < 0.06, gen_id
    assert sum(seen.values()) == 800 * 20


def test_uniform_random_picks_record_n_over_pool():
    items = items_frame(per=10)
    plan = plan_session(items, set(), PlanSettings(k=3, size=12, random_share=0.5, active=False),
                        rng=random.Random(0))
    randoms = [a for a in plan if a.chosen_at_random]
    assert len(randoms) == 6 and {a.inclusion_probability for a in randoms} == {6 / 60}
    assert all(a.inclusion_probability is None for a in plan if not a.chosen_at_random)
