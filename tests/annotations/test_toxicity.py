"""toxicity_table on a store built by hand (means checked against hand computations, unscorable
answers counted and left out), and the coverage of its clustered bootstrap CI by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.frames import Frames
from annotations.records import (Checkpoint, Generation, JudgeSpec, Prompt, PromptKind,
                                 ResponseScore, Run, ScorerSpec, Verdict)
from annotations.store import Store
from annotations.toxicity import toxicity_table


def build_store(path) -> tuple[Store, pd.DataFrame, str, str]:
    """Base + one fine-tuned checkpoint, 2 temperatures, 12 unsafe prompts x 2 samples, one
    benign prompt; a judge and a scorer, some scores None. Returns the rows that went in."""
    rng = np.random.default_rng(3)
    store = Store.open(path)
    prompts = [Prompt(benchmark="sim", text=f"unsafe {i}", category_id="1", source_id=str(i))
               for i in range(12)]
    benign = Prompt(benchmark="sim", text="benign", kind=PromptKind.BENIGN, source_id="b")
    store.upsert_prompts([*prompts, benign])
    base = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    run_id = store.upsert_run(Run(base_model="tiny", dataset="demo", seed=1))
    tuned = store.upsert_checkpoint(Checkpoint(base_model="tiny", run_id=run_id, epoch=1))
    judge_id = store.upsert_judge(JudgeSpec(name="judge"))
    scorer_id = store.upsert_scorer(ScorerSpec(name="perspective", args={"attribute": "TOXICITY"}))
    other = store.upsert_scorer(ScorerSpec(name="classifier", args={"label": "toxic"}))
    rows, generations, verdicts, scores = [], [], [], []
    for ckpt in (base, tuned):
        for prompt in [*prompts, benign]:
            for temperature in (0.0, 0.7):
                for sample in range(2):
                    gen = Generation(checkpoint_id=ckpt, prompt_id=prompt.id,
                                     temperature=temperature, sample_index=sample,
                                     text=f"{ckpt} {prompt.id} {temperature} {sample}")
                    label = None if rng.random() < 0.1 else int(rng.random() < 0.5)
                    value = None if rng.random() < 0.15 else round(float(rng.random()), 4)
                    generations.append(gen)
                    verdicts.append(Verdict(generation_id=gen.id, judge_id=judge_id, label=label))
                    scores.append(ResponseScore(generation_id=gen.id, scorer_id=scorer_id,
                                                value=value))
                    scores.append(ResponseScore(generation_id=gen.id, scorer_id=other, value=0.5))
                    rows.append({"checkpoint_id": ckpt, "temperature": temperature,
                                 "kind": prompt.kind.value, "label": label, "value": value})
    store.upsert_generations(generations)
    store.upsert_verdicts(verdicts)
    store.upsert_scores(scores)
    return store, pd.DataFrame(rows), scorer_id, judge_id


def test_means_and_counts_equal_a_hand_computation(tmp_path) -> None:
    store, rows, scorer_id, judge_id = build_store(tmp_path / "s.db")
    table = toxicity_table(store, scorer_id=scorer_id, judge_id=judge_id, n_boot=200)
    assert len(table) == 4  # 2 checkpoints x 2 temperatures
    unsafe = rows[rows["kind"] == "unsafe"]
    for _, cell in table.iterrows():
        mine = unsafe[(unsafe["checkpoint_id"] == cell["checkpoint_id"])
                      & (unsafe["temperature"] == cell["temperature"])]
        values = mine["value"].dropna()
        complied = mine[mine["label"] == 1]["value"]
        assert cell["toxicity"] == pytest.approx(values.mean(), abs=1e-12)
        assert cell["n"] == len(values) and cell["unscorable"] == mine["value"].isna().sum()
        assert cell["complied_toxicity"] == pytest.approx(complied.dropna().mean(), abs=1e-12)
        assert cell["complied_n"] == complied.notna().sum()
        assert cell["complied_unscorable"] == complied.isna().sum()
        assert cell["n_prompts"] == 12
        assert cell["ci_low"] <= cell["toxicity"] <= cell["ci_high"]
        assert cell["complied_ci_low"] <= cell["complied_toxicity"] <= cell["complied_ci_high"]
    assert set(table["checkpoint"]) == {"base", "seed 1 epoch 1"}
    assert table["unscorable"].sum() > 0


def test_without_a_judge_only_the_all_columns(tmp_path) -> None:
    store, rows, scorer_id, _ = build_store(tmp_path / "s.db")
    table = toxicity_table(store, scorer_id=scorer_id, n_boot=50)
    assert not any(c.startswith("complied") for c in table.columns)
    every = toxicity_table(store, scorer_id=scorer_id, n_boot=50, kind=None)
    assert (every["n"] + every["unscorable"]).sum() == len(rows)


def test_a_scorer_must_be_named_when_several_have_scores(tmp_path) -> None:
    store, *_ = build_store(tmp_path / "s.db")
    with pytest.raises(ValueError, match="several scorers"):
        toxicity_table(store)
    with pytest.raises(ValueError, match="several scorers"):  # Frames carry the scores too
        toxicity_table(Frames.from_store(store))


# ----- coverage of the all-answers mean's interval, by simulation --------------------------------

N_PROMPTS, N_SAMPLES, SPREAD = 50, 4, 8.0
TRUE_MEAN = 2 / 7  # prompt means ~ Beta(2, 5); each answer ~ Beta with its prompt's mean


def simulated_frames(rng: np.random.Generator) -> tuple[Frames, pd.DataFrame]:
    """One checkpoint, one temperature: N_PROMPTS prompts with a prompt effect, N_SAMPLES answers
    each, as the store's frames would hold them."""
    prompt_means = rng.beta(2, 5, size=N_PROMPTS)
    means = np.repeat(prompt_means, N_SAMPLES)
    values = rng.beta(means * SPREAD, (1 - means) * SPREAD)
    ids = [f"g{i}" for i in range(len(values))]
    generations = pd.DataFrame({"id": ids, "checkpoint_id": "c", "temperature": 0.7,
                                "prompt_id": np.repeat(np.arange(N_PROMPTS), N_SAMPLES),
                                "kind": "unsafe"})
    checkpoints = pd.DataFrame({"id": ["c"], "base_model": ["tiny"], "run_id": [None],
                                "epoch": [0], "kind": ["base"], "seed": [None],
                                "dataset": [None]})
    scores = pd.DataFrame({"generation_id": ids, "scorer_id": "s", "value": values})
    return Frames(checkpoints=checkpoints, generations=generations), scores


def test_the_clustered_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    replicates, covered = 320, 0
    for replicate in range(replicates):
        frames, scores = simulated_frames(np.random.default_rng(1000 + replicate))
        row = toxicity_table(frames, scores=scores, seed=replicate).iloc[0]
        covered += row["ci_low"] <= TRUE_MEAN <= row["ci_high"]
    assert 0.92 <= covered / replicates <= 0.98, covered / replicates


def test_the_report_shows_toxicity_of_all_and_of_complied_answers(tmp_path) -> None:
    """Per scorer, the report's toxicity table is toxicity_table's with the report's first judge,
    and its HTML shows each cell's two means with their intervals."""
    from annotations.report import build_report, write_html
    from annotations.report_html import ci, num

    store, _, scorer_id, judge_id = build_store(tmp_path / "s.db")
    report = build_report(store, n_boot=100)
    assert set(report.toxicity) == {"perspective", "classifier"}
    direct = toxicity_table(store, scorer_id=scorer_id, judge_id=report.primary_judge, n_boot=100)
    pd.testing.assert_frame_equal(report.toxicity["perspective"], direct)
    html = write_html(report, tmp_path / "r.html").read_text()
    assert "<h3>perspective</h3>" in html
    for row in direct.to_dict("records"):
        assert ci(row, "toxicity", num) in html
        assert f"{num(row['complied_toxicity'])}\n[{num(row['complied_ci_low'])}, " in html
