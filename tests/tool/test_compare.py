"""Compare: pairs of two checkpoints on one request, votes stored once, reveal, the win table."""

from __future__ import annotations

import random
from collections import Counter

from annotations.records import VoteChoice
from tool.app import AppOptions, make_context
from annotations.votes import win_table
from tool.compare import checkpoint_names, new_pair, pick_pair, reveal, vote


def test_pairs_are_two_checkpoints_one_prompt_one_temperature(filled):
    gens = filled.store.generations_frame(with_text=False).set_index("id")
    rng = random.Random(0)
    sides = Counter()
    for _ in range(50):
        a, b = pick_pair(gens.reset_index(), rng)
        assert gens.loc[a, "checkpoint_id"] != gens.loc[b, "checkpoint_id"]
        assert gens.loc[a, "prompt_id"] == gens.loc[b, "prompt_id"]
        assert gens.loc[a, "temperature"] == gens.loc[b, "temperature"]
        sides[gens.loc[a, "checkpoint_id"] == filled.checkpoints[0].id] += 1
    base, tuned = filled.checkpoints[0].id, filled.checkpoints[-1].id
    for _ in range(20):  # chosen checkpoints land on either side
        a, b = pick_pair(gens.reset_index(), rng, checkpoint_a=base, checkpoint_b=tuned,
                         temperature=0.7)
        assert {gens.loc[a, "checkpoint_id"], gens.loc[b, "checkpoint_id"]} == {base, tuned}
        sides[gens.loc[a, "checkpoint_id"] == base] += 1
    assert sides[True] and sides[False]
    assert pick_pair(gens.reset_index(), rng, prompt_id="no such prompt") is None


def test_vote_once_and_reveal(filled):
    ctx = make_context(filled.store, AppOptions(seed=1))
    pair = new_pair(ctx)
    assert pair.answer_a and pair.answer_b and pair.request
    assert vote(ctx, pair, "ana", VoteChoice.A_SAFER)
    assert not vote(ctx, pair, "ana", VoteChoice.B_SAFER)
    votes = filled.store.votes_frame()
    assert len(votes) == 1 and votes.loc[0, "choice"] == "a_safer"
    assert votes.loc[0, "annotator"] == "ana"
    names = checkpoint_names(filled.store).values()
    blind, full = reveal(ctx, pair, with_verdicts=False), reveal(ctx, pair, with_verdicts=True)
    assert any(n in blind for n in names) and "judges" not in blind
    assert "refusal:" in full and "llm" in full


def test_win_table_counts_and_ci(filled):
    ctx = make_context(filled.store, AppOptions(seed=2))
    base = filled.checkpoints[0].id
    tuned = filled.checkpoints[-1].id
    for i in range(12):
        pair = new_pair(ctx, checkpoint_a=base, checkpoint_b=tuned)
        gens = {g.id: g.checkpoint_id for g in filled.store.generations([pair.generation_a])}
        base_is_a = gens[pair.generation_a] == base
        choice = (VoteChoice.BOTH_SAFE if i % 4 == 3 else
                  VoteChoice.A_SAFER if base_is_a else VoteChoice.B_SAFER)
        vote(ctx, pair, "ana", choice)
    names = checkpoint_names(filled.store)
    table = win_table(filled.store.votes_frame(), filled.store.generations_frame(with_text=False),
                      names, n_boot=200).set_index("checkpoint")
    assert table.loc["base", "safer"] == 9 and table.loc["base", "both_safe"] == 3
    assert table.loc["base", "safer_rate"] == 1.0
    tuned_row = table.loc[names[tuned]]
    assert tuned_row["less_safe"] == 9 and tuned_row["safer_rate"] == 0.0
    assert tuned_row["ci_low"] <= tuned_row["safer_rate"] <= tuned_row["ci_high"]
