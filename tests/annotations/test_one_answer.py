"""One question, one answer: the app's Validate tab, the report (its JSON, which the HTML page and
`run.py report` show) and the demo summary give the same numbers, to the last digit, on one store
with every complication: a simulated sweep, benign prompts that people labelled too, incoherent
answers (degenerate flags and "incoherent" labels), and labels drawn at random and not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sweep_builder import build_sweep

from annotations.records import (Generation, HumanLabel, Label, Prompt, PromptKind, Verdict)
from annotations.report import build_report
from annotations.summary import sweep_summary
from tool.board import Filters, compute, interval
from tool.context import AppOptions, make_context

N_BOOT = 200


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    sweep = build_sweep(tmp_path_factory.mktemp("one") / "s.db")
    store = sweep.store
    degenerate = store.generations_frame(with_text=False).query("degenerate == True")["id"]
    store.add_labels(  # incoherent-looking answers that people still read as complies / refuses
        Label(generation_id=g, annotator=who, chosen_at_random=True,
              label=HumanLabel.COMPLIES if sweep.truth[g] else HumanLabel.REFUSES)
        for g in degenerate[:12] for who in ("ana", "bob"))
    benign = [Prompt(benchmark="sim-benign", text=f"harmless question {i}", kind=PromptKind.BENIGN,
                     category_id="41", category="Medical Advice", source_id=f"b{i}")
              for i in range(6)]
    store.upsert_prompts(benign)
    gens = [Generation(checkpoint_id=ckpt, prompt_id=p.id, temperature=0.0,
                       text="Here is the answer." if i % 3 else "I can't.")
            for ckpt in sweep.checkpoints.values() for i, p in enumerate(benign)]
    store.upsert_generations(gens)
    store.upsert_verdicts(Verdict(generation_id=g.id, judge_id=j, label=int("answer" in g.text))
                          for g in gens for j in sweep.judges.values())
    store.add_labels(Label(generation_id=g.id, annotator=who, chosen_at_random=i % 2 == 0,
                           label=HumanLabel.COMPLIES if "answer" in g.text else HumanLabel.REFUSES)
                     for i, g in enumerate(gens[:12]) for who in ("ana", "bob"))
    return store


@pytest.fixture(scope="module")
def both(store):
    board = compute(make_context(store, AppOptions(n_boot=N_BOOT)), Filters())
    report = build_report(store, n_boot=N_BOOT)
    return board, report, report.to_dict()


def _same(a: pd.Series, b: pd.Series) -> None:
    assert len(a) == len(b) > 0
    assert np.array_equal(a.to_numpy(dtype=float), b.to_numpy(dtype=float), equal_nan=True)


def test_the_store_has_every_complication(store):
    labels = store.labels_frame()
    gens = store.generations_frame(with_text=False)
    assert {True, False} <= set(labels["chosen_at_random"])
    assert "incoherent" in set(labels["label"]) and gens["degenerate"].any()
    labelled = gens[gens["id"].isin(labels["generation_id"])]
    assert set(labelled["kind"]) == {"unsafe", "benign"}


def test_judges_agreement_is_the_reports(both):
    board, report, data = both
    numbers = board.result.judges.set_index("judge").sort_index()
    mine = pd.DataFrame(data["judges"]).set_index("judge").sort_index()
    assert list(numbers.index) == list(mine.index) == ["accurate", "noisy"]
    for column in ("kappa", "kappa_ci_low", "kappa_ci_high", "accuracy", "sensitivity",
                   "specificity", "kappa_coherent", "kappa_incoherent", "people_alpha"):
        _same(numbers[column], mine[column])
    shown = board.judges.set_index("judge").sort_index()
    for column in ("n_coherent", "n_incoherent", "verdicts", "unparseable"):
        assert shown[column.replace("_", " ")].tolist() == mine[column].tolist()
    assert shown["labelled"].tolist() == mine["n"].tolist()
    assert shown["kappa [95% CI]"].tolist() == [
        interval(k, lo, hi, n) for k, lo, hi, n in
        zip(mine["kappa"], mine["kappa_ci_low"], mine["kappa_ci_high"], mine["n"])]
    assert (shown["n incoherent"] > 0).all()  # the incoherent split is not empty


def test_people_alpha_is_the_reports(both):
    board, _, data = both
    overall = data["alpha"][0]
    assert overall["category"] == "all"
    for key in ("alpha", "ci_low", "ci_high", "units", "annotators"):
        assert board.alpha[key] == overall[key]


def test_harmfulness_raw_and_corrected_is_the_reports_and_the_summarys(store, both):
    board, report, data = both
    keys = ["judge", "checkpoint", "temperature"]
    columns = ["harmfulness", "ci_low", "ci_high", "corrected", "corrected_ci_low",
               "corrected_ci_high", "rogan_gladen", "rogan_gladen_ci_low", "rogan_gladen_ci_high",
               "labels_only", "labels_only_ci_low", "labels_only_ci_high", "ppi_pooled",
               "n_own_labels", "n", "unparseable"]
    tab = board.harm_points.set_index(keys).sort_index()
    mine = pd.concat([pd.DataFrame(h["table"]).assign(judge=h["judge"])
                      for h in data["harmfulness"].values()]).set_index(keys).sort_index()
    assert tab.index.equals(mine.index) and len(tab) == 2 * 5 * 2
    for column in columns:
        _same(tab[column], mine[column])
    assert tab["corrected"].notna().all()  # random labels calibrate every cell
    shown = board.harm.set_index(["judge", "checkpoint", "T"]).sort_index()
    assert shown["corrected [95% CI]"].tolist() == [
        interval(v, lo, hi, n) for v, lo, hi, n in zip(
            mine["corrected"], mine["corrected_ci_low"], mine["corrected_ci_high"], mine["n"])]
    assert shown["method"].tolist() == mine["method"].fillna("").tolist()
    assert shown["labels alone [95% CI]"].tolist() == [
        interval(v, lo, hi, n) for v, lo, hi, n in zip(
            mine["labels_only"], mine["labels_only_ci_low"], mine["labels_only_ci_high"],
            mine["n"])]
    summary = sweep_summary(store, n_boot=N_BOOT).safety.set_index(keys).sort_index()
    for column in columns:
        _same(summary[column], mine[column])
    assert summary["method"].tolist() == mine["method"].tolist()
    assert summary["assumption"].tolist() == mine["assumption"].tolist()


def test_variance_components_are_the_reports(both):
    board, report, _ = both
    primary = board.result.primary
    assert primary == report.primary_judge
    (theirs,) = [v for v in report.variance if v.judge_id == primary]
    mine = board.variance.set_index("component")  # one sweep here
    other = theirs.components.to_frame().set_index("component")
    assert list(mine.index) == list(other.index)
    for column in other.columns:
        if pd.api.types.is_numeric_dtype(other[column]):
            _same(mine[column], other[column])
