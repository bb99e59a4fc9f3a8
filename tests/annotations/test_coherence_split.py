"""A score's distribution per checkpoint and judge-human agreement split by the score (the
coherence split, with `base-loss`), on a store built with known labels, verdicts and scores:
every number checked against numpy or `annotations.agreement.judge_agreement` called by hand
on the same answers; bin edges with ties."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from annotations.agreement import judge_agreement
from annotations.frames import Frames
from annotations.records import (Annotator, Checkpoint, Generation, HumanLabel, JudgeSpec,
                                 Label, Prompt, PromptKind, ResponseScore, Run, ScorerSpec,
                                 Verdict)
from annotations.scores import (coherence_scorers, judge_human_by_score, score_bin_edges,
                                score_bins, score_distribution)
from annotations.store import Store

LEVELS = [0.5, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 4.0]  # few levels, 2.0 twice as likely: many ties
PEOPLE = ["ann", "bo", "cy"]


def build_store(path) -> tuple[Store, pd.DataFrame, str, str]:
    """Base + a fine-tuned checkpoint, 12 unsafe prompts x 2 samples each (and a benign prompt),
    two judges (some verdicts unparseable), three people (some labels incoherent, some items
    tied or unlabelled), a `base-loss` scorer (some values None) and a second scorer. Returns
    the store, one row per answer as it went in, and the two scorers' ids."""
    rng = np.random.default_rng(7)
    store = Store.open(path)
    prompts = [Prompt(benchmark="sim", text=f"unsafe {i}", category_id="1", source_id=str(i))
               for i in range(12)]
    benign = Prompt(benchmark="sim", text="benign", kind=PromptKind.BENIGN, source_id="b")
    store.upsert_prompts([*prompts, benign])
    base = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    run_id = store.upsert_run(Run(base_model="tiny", dataset="demo", seed=1))
    tuned = store.upsert_checkpoint(Checkpoint(base_model="tiny", run_id=run_id, epoch=1))
    judges = [store.upsert_judge(JudgeSpec(name=name)) for name in ("judge-a", "judge-b")]
    loss = store.upsert_scorer(ScorerSpec(name="base-loss", args={"model": "tiny"}))
    toxic = store.upsert_scorer(ScorerSpec(name="classifier", args={"label": "toxic"}))
    rows, generations, verdicts, labels, scores = [], [], [], [], []
    for ckpt in (base, tuned):
        for prompt in [*prompts, benign]:
            for sample in range(2):
                gen = Generation(checkpoint_id=ckpt, prompt_id=prompt.id, temperature=0.7,
                                 sample_index=sample, text=f"{ckpt} {prompt.id} {sample}")
                value = None if rng.random() < 0.08 else float(rng.choice(LEVELS))
                truth = int(rng.random() < 0.5)
                row = {"generation_id": gen.id, "prompt_id": prompt.id, "checkpoint_id": ckpt,
                       "kind": prompt.kind.value, "value": value, "labels": []}
                if rng.random() < 0.9:  # most answers labelled, by two or three people
                    for name in PEOPLE[:2 + int(rng.random() < 0.5)]:
                        label = (HumanLabel.INCOHERENT if rng.random() < (value or 0) / 12 else
                                 [HumanLabel.REFUSES, HumanLabel.COMPLIES][
                                     truth if rng.random() < 0.85 else 1 - truth])
                        labels.append(Label(generation_id=gen.id, annotator=name, label=label))
                        row["labels"].append(label.value)
                for judge_id in judges:  # judges err more on high-loss answers
                    wrong = rng.random() < 0.1 + 0.1 * (value or 0)
                    verdict = None if rng.random() < 0.07 else (1 - truth if wrong else truth)
                    verdicts.append(Verdict(generation_id=gen.id, judge_id=judge_id,
                                            label=verdict))
                    row[judge_id] = verdict
                generations.append(gen)
                scores += [ResponseScore(generation_id=gen.id, scorer_id=loss, value=value),
                           ResponseScore(generation_id=gen.id, scorer_id=toxic, value=0.5)]
                rows.append(row)
    store.upsert_generations(generations)
    store.upsert_verdicts(verdicts)
    for name in PEOPLE:
        store.add_annotator(Annotator(name=name))
    store.add_labels(labels)
    store.upsert_scores(scores)
    return store, pd.DataFrame(rows), loss, toxic


def majority(labels: list[str]) -> str | None:
    """The label most people gave, None on a tie or without labels (written out again here)."""
    counts = Counter(labels).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def tertile_edges(values: list[float]) -> list[float]:
    """The k-th tertile as the ceil(k n / 3)-th smallest value, equal edges and an edge at the
    maximum dropped: the inverted-CDF rule, written out without numpy."""
    ordered = sorted(values)
    edges = sorted({ordered[math.ceil(k * len(ordered) / 3) - 1] for k in (1, 2)})
    return [e for e in edges if e < ordered[-1]]


def in_bin(value: float, index: int, edges: list[float]) -> bool:
    low = edges[index - 1] if index > 0 else -math.inf
    high = edges[index] if index < len(edges) else math.inf
    return low < value <= high


@pytest.fixture
def built(tmp_path):
    return build_store(tmp_path / "s.db")


def test_kappa_per_bin_equals_judge_agreement_on_the_same_answers(built) -> None:
    store, rows, loss, _ = built
    table = judge_human_by_score(store, scorer_id=loss, n_boot=300)
    mine = rows[(rows["kind"] == "unsafe") & rows["value"].notna()
                & rows["labels"].map(len).gt(0)].copy()
    mine["majority"] = mine["labels"].map(majority)
    edges = tertile_edges(list(mine["value"]))
    assert len(edges) == 2 and table["bin"].nunique() == 3
    judges = sorted(table["judge_id"].unique())
    assert len(judges) == 2 and len(table) == 6
    for judge_id in judges:
        for index in range(3):
            row = table[(table["judge_id"] == judge_id) & (table["bin"] == index)].iloc[0]
            part = mine[mine["value"].map(lambda v: in_bin(v, index, edges))]
            read = part[part["majority"].isin(["complies", "refuses"])]
            parsed = read[read[judge_id].notna()].sort_values("generation_id")
            human = (parsed["majority"] == "complies").astype(int)
            expected = judge_agreement(parsed[judge_id].astype(int), human,
                                       clusters=parsed["prompt_id"], n_boot=300, seed=0)
            assert (row["n_labelled"], row["n"]) == (len(part), len(parsed))
            assert row["n_incoherent"] == (part["majority"] == "incoherent").sum()
            assert row["n_unparseable"] == len(read) - len(parsed)
            for name in ("kappa", "sensitivity", "specificity", "accuracy"):
                found = getattr(expected, name)
                assert row[name] == pytest.approx(found.value, nan_ok=True)
                assert row[f"{name}_ci_low"] == pytest.approx(found.ci_low, nan_ok=True)
                assert row[f"{name}_ci_high"] == pytest.approx(found.ci_high, nan_ok=True)
            assert row["confusion"] == [list(r) for r in expected.confusion]
            assert row["edge_low"] == pytest.approx(edges[index - 1] if index else np.nan,
                                                    nan_ok=True)
    assert list(table["bin_label"][:3]) == [f"<= {edges[0]:.4g}",
                                            f"({edges[0]:.4g}, {edges[1]:.4g}]",
                                            f"> {edges[1]:.4g}"]
    # the same from the Frames
    same = judge_human_by_score(Frames.from_store(store), scorer_id=loss, n_boot=300)
    pd.testing.assert_frame_equal(table, same)


def test_a_threshold_splits_in_two_and_values_at_it_fall_below(built) -> None:
    store, rows, loss, _ = built
    table = judge_human_by_score(store, scorer_id=loss, threshold=2.0, n_boot=50)
    assert list(table["bin_label"].unique()) == ["<= 2", "> 2"]
    mine = rows[(rows["kind"] == "unsafe") & rows["value"].notna()
                & rows["labels"].map(len).gt(0)]
    for _, block in table.groupby("judge_id"):  # every answer has both judges' verdicts
        low = block[block["bin"] == 0].iloc[0]
        assert low["n_labelled"] == (mine["value"] <= 2.0).sum()
        assert block["n_labelled"].sum() == len(mine)
        assert low["edge_high"] == 2.0 and np.isnan(low["edge_low"])


def test_the_scorer_must_be_named_when_several_have_scores(built) -> None:
    store, _, loss, _ = built
    with pytest.raises(ValueError, match="several scorers"):
        judge_human_by_score(store, n_boot=10)
    assert coherence_scorers(store) == [loss]


def test_the_distribution_per_checkpoint_equals_numpy(built) -> None:
    store, rows, loss, _ = built
    table = score_distribution(store, scorer_id=loss, threshold=2.0, n_boot=300)
    assert len(table) == 2 and set(table["checkpoint"]) == {"base", "seed 1 epoch 1"}
    for _, cell in table.iterrows():
        mine = rows[(rows["checkpoint_id"] == cell["checkpoint_id"]) & (rows["kind"] == "unsafe")]
        values = mine["value"].dropna().to_numpy(dtype=float)
        assert (cell["n"], cell["unscorable"]) == (len(values), mine["value"].isna().sum())
        assert cell["n_prompts"] == 12
        assert cell["mean"] == pytest.approx(values.mean())
        assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
        q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
        assert (cell["q1"], cell["median"], cell["q3"]) == pytest.approx((q1, median, q3))
        assert cell["share_above"] == pytest.approx((values > 2.0).mean())
        assert cell["share_ci_low"] <= cell["share_above"] <= cell["share_ci_high"]
        assert cell["threshold"] == 2.0 and not cell["too_few"]
    bare = score_distribution(store, scorer_id=loss, n_boot=50)
    assert bare["share_above"].isna().all() and bare["mean"].notna().all()


# ----- bin edges ---------------------------------------------------------------------------------


def test_tied_values_share_a_bin_and_no_bin_is_empty() -> None:
    ties = [1, 2, 2, 2, 2, 3, 4, 5, 6]  # the first tertile lands inside the run of 2s
    edges = score_bin_edges(ties)
    assert list(edges) == [2.0, 3.0]
    assert list(score_bins(ties, edges)) == [0, 0, 0, 0, 0, 1, 2, 2, 2]
    assert list(score_bin_edges(list(range(1, 10)))) == [3.0, 6.0]  # 3, 3 and 3 values
    heavy = [1, 1, 1, 1, 1, 2, 3]  # both tertiles are 1: two bins, not an empty one
    assert list(score_bin_edges(heavy)) == [1.0]
    assert len(score_bin_edges([2, 2, 2])) == 0  # one value: one bin
    assert list(score_bins([2, 2, 2], score_bin_edges([2, 2, 2]))) == [0, 0, 0]
    assert list(score_bin_edges([5, 1, 3], quantiles=1)) == []
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.choice([0.5, 1.0, 1.5, 3.0], size=int(rng.integers(1, 30)))
        for quantiles in (2, 3, 4):
            edges = score_bin_edges(values, quantiles)
            bins = score_bins(values, edges)
            assert set(bins) == set(range(len(edges) + 1))  # every bin holds a value
            for level in np.unique(values):  # and equal values one bin
                assert len(set(bins[values == level])) == 1


def test_a_threshold_is_the_edge_and_bad_input_is_refused() -> None:
    assert list(score_bin_edges([1, 2, 3], threshold=2)) == [2.0]
    assert list(score_bins([1, 2, 2.5], [2.0])) == [0, 0, 1]
    with pytest.raises(ValueError, match="at least 1"):
        score_bin_edges([1, 2], quantiles=0)
    with pytest.raises(ValueError, match="no missing"):
        score_bin_edges([1, np.nan])
