"""Generation on the tiny Llama: row counts, seeded reproducibility, resume after a crash, and
adapters swapped on one base model."""

from __future__ import annotations

import pytest

from annotations.records import Checkpoint, Prompt
from annotations.store import Store
from pipeline.generate import AdapterSwitcher, GenerationSettings, generate_checkpoint
from pipeline.models import load_model

PROMPTS = [Prompt(benchmark="t", text=t, category_id=str(i % 3))
           for i, t in enumerate(["tell me a story", "how do i make money", "write a poem",
                                  "what is water", "give me steps to help people",
                                  "explain the computer", "list ten books"])]
SETTINGS = GenerationSettings(temperatures=(0.0, 0.7), samples=2, max_new_tokens=6,
                              batch_size=3, seed=11)


def _texts(store: Store) -> dict[str, str]:
    frame = store.generations_frame()
    return dict(zip(frame["id"], frame["text"]))


def _generate(store: Store, model_dir, settings=SETTINGS) -> int:
    switcher = AdapterSwitcher(*load_model(str(model_dir)))
    base = Checkpoint(base_model="tiny")
    store.upsert_prompts(PROMPTS)
    store.upsert_checkpoint(base)
    return generate_checkpoint(store, switcher, base, PROMPTS, settings, progress=False)


def test_counts_flags_and_finish_reasons(tmp_path, tiny_model_dir):
    store = Store.open(tmp_path / "a.db")
    assert _generate(store, tiny_model_dir) == 7 * 1 + 7 * 2  # greedy once, T=0.7 twice
    frame = store.generations_frame()
    assert sorted(frame["temperature"].unique()) == [0.0, 0.7]
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert (frame["token_count"] <= 6).all()
    assert frame["repetition"].notna().all() and frame["degenerate"].notna().all()
    assert _generate(store, tiny_model_dir) == 0  # all stored: nothing redone


def test_same_config_gives_same_texts_and_resume_matches(tmp_path, tiny_model_dir, monkeypatch):
    whole = Store.open(tmp_path / "whole.db")
    _generate(whole, tiny_model_dir)

    crashed = Store.open(tmp_path / "crashed.db")
    real, calls = crashed.upsert_generations, []

    def crash_on_third_batch(rows):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed mid-sweep")
        return real(rows)

    monkeypatch.setattr(crashed, "upsert_generations", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        _generate(crashed, tiny_model_dir)
    monkeypatch.undo()
    assert 0 < crashed.counts()["generations"] < 21
    _generate(crashed, tiny_model_dir)
    assert _texts(crashed) == _texts(whole)


def test_other_sampling_seed_draws_other_texts(tmp_path, tiny_model_dir):
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    _generate(a, tiny_model_dir)
    _generate(b, tiny_model_dir, GenerationSettings(temperatures=(0.7,), samples=2,
                                                    max_new_tokens=6, batch_size=3, seed=12))
    sampled_a = sorted(t for t, temp in zip(a.generations_frame()["text"],
                                            a.generations_frame()["temperature"]) if temp > 0)
    assert sampled_a != sorted(b.generations_frame()["text"])
