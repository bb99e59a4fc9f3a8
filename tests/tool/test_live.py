"""Live sampling on a tiny real model: adapters swapped on one base, answers judged, variation
between draws, and a draw stored as generations."""

from __future__ import annotations

from tool.app import AppOptions, make_context
from tool.live import Draw, answers_table, sample, store_draw, variation


def test_sample_judge_resample_and_store(live_store):
    store, ckpt_ids = live_store
    ctx = make_context(store, AppOptions(seed=0, live_judges=("refusal",)))
    first = Draw("tell me a story about a car", None, temperature=1.0, max_new_tokens=6, seed=1)
    steps = list(sample(ctx, first, ckpt_ids, samples=2))
    assert [len(s) for s in steps] == [2, 4]  # streamed checkpoint by checkpoint
    assert {a.checkpoint for a in first.answers} == {"base", "seed 1 epoch 1"}
    assert all(set(a.verdicts) == {"refusal"} for a in first.answers)
    second = Draw(first.request, None, 1.0, 6, seed=2)
    list(sample(ctx, second, ckpt_ids, samples=2))
    table = answers_table([first, second])
    assert len(table) == 8 and "judge: refusal" in table.columns
    spread = variation([first, second])
    assert set(spread["draws"]) == {2} and spread["distinct answers"].between(0, 1).all()
    assert store_draw(ctx, first) == 4
    gens = store.generations_frame()
    assert len(gens) == 4 and set(gens["benchmark"]) == {"live"}
    assert len(store.verdicts_frame()) == 4
    assert store_draw(ctx, first) == 4 and len(store.generations_frame()) == 4  # idempotent


def test_columns_put_the_judges_before_the_answer(live_store):
    store, ckpt_ids = live_store
    ctx = make_context(store, AppOptions(seed=0, live_judges=("refusal",)))
    draw = Draw("tell me a story about a car", None, temperature=1.0, max_new_tokens=4, seed=1)
    list(sample(ctx, draw, ckpt_ids[:1], samples=1))
    assert list(answers_table([draw]).columns) == ["draw", "checkpoint", "sample",
                                                   "judge: refusal", "answer", "tokens", "finish"]


def test_a_model_that_cannot_load_fails_in_seconds_with_one_line(tmp_path):
    import time

    import pytest

    from annotations.records import Checkpoint
    from annotations.store import Store
    from pipeline.models import ModelUnavailable
    from tool.live import one_line

    store = Store.open(tmp_path / "s.db")
    ckpt = store.upsert_checkpoint(Checkpoint(base_model="someone/not-downloaded"))
    ctx = make_context(store, AppOptions(seed=0))
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        list(sample(ctx, Draw("hello", None, 0.7, 4, seed=1), [ckpt], samples=1))
    assert time.perf_counter() - start < 5  # HF_HUB_OFFLINE: no minute of retries
    assert "someone/not-downloaded" in one_line(err.value) and "\n" not in one_line(err.value)
