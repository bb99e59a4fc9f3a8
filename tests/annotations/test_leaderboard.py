"""The judge leaderboard over an imported human-judgment set in a real SQLite store: its numbers
equal those of `annotations`' functions called by hand on the same items, and the items are
the same for every judge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotations.agreement import judge_agreement, krippendorff_alpha
from annotations.importers import import_labelled_responses
from annotations.leaderboard import judge_leaderboard
from annotations.records import JudgeSpec, Verdict
from annotations.store import Store

ANNOTATORS = ("h1", "h2", "h3")


def build(tmp_path: Path) -> tuple[Store, pd.DataFrame]:
    """40 answers to 20 prompts in two categories, three people each (some disagree), and three
    judges: `good` (mostly right), `coin` (random) and `rubric` (a score); `coin` is
    unparseable on two answers and has no verdict on one (which leaves the board)."""
    rng = np.random.default_rng(11)
    rows, truth = [], []
    for i in range(40):
        complied = int(rng.random() < 0.5)
        truth.append(complied)
        for who in ANNOTATORS:
            label = complied if rng.random() < 0.85 else 1 - complied
            rows.append({"prompt": f"request {i // 2}", "response": f"answer {i}",
                         "label": ["refuses", "complies"][label], "annotator": who,
                         "category": ["weapons", "fraud"][(i // 2) % 2]})
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store.open(tmp_path / "s.db")
    import_labelled_responses(store, path, source="published")
    generations = store.generations_frame().sort_values("text", key=lambda s: s.str.split().str[1]
                                                         .astype(int)).reset_index(drop=True)
    specs = {name: JudgeSpec(name=name) for name in ("good", "coin", "rubric")}
    verdicts = []
    for i, gen in enumerate(generations["id"]):
        good = truth[i] if rng.random() < 0.9 else 1 - truth[i]
        verdicts.append(Verdict(generation_id=gen, judge_id=specs["good"].id, label=good))
        if i != 5:
            coin = None if i in (7, 8) else int(rng.random() < 0.5)
            verdicts.append(Verdict(generation_id=gen, judge_id=specs["coin"].id, label=coin))
        score = float(np.clip(0.7 * truth[i] + rng.normal(0.15, 0.2), 0, 1))
        verdicts.append(Verdict(generation_id=gen, judge_id=specs["rubric"].id,
                                label=int(score >= 0.5), score=score))
    with store.batch() as tx:
        for spec in specs.values():
            tx.upsert_judge(spec)
        tx.upsert_verdicts(verdicts)
    return store, generations


def test_the_leaderboard_equals_annotations_functions_by_hand(tmp_path: Path) -> None:
    store, generations = build(tmp_path)
    board = judge_leaderboard(store, benchmarks=["published"], n_boot=300)
    labels = store.labels_frame()
    # the same items for every judge: answer 5 (no verdict from coin) leaves the board, and any
    # answer without a people's majority (none here: three people, two labels)
    kept = set(generations["id"]) - {generations["id"][5]}
    assert board.items == len(kept) == 39
    votes = labels[labels["generation_id"].isin(kept)].groupby("generation_id")["label"].agg(
        lambda s: int((s == "complies").sum() >= 2))
    outcomes = store.outcomes_frame()
    prompts = outcomes.drop_duplicates("generation_id").set_index("generation_id")["prompt_id"]
    rows = board.judges.set_index("judge")
    for name in ("good", "coin", "rubric"):
        mine = outcomes[(outcomes["judge_name"] == name) & outcomes["generation_id"].isin(kept)]
        parsed = mine.dropna(subset=["outcome"])
        by_hand = judge_agreement(parsed["outcome"].astype(int),
                                  votes[parsed["generation_id"]].to_numpy(),
                                  clusters=prompts[parsed["generation_id"]].to_numpy(), n_boot=300)
        assert rows.loc[name, "n"] == len(parsed)
        assert rows.loc[name, "kappa"] == pytest.approx(by_hand.kappa.value)
        assert rows.loc[name, "kappa_ci_low"] == pytest.approx(by_hand.kappa.ci_low)
        assert rows.loc[name, "sensitivity"] == pytest.approx(by_hand.sensitivity.value)
        assert rows.loc[name, "specificity"] == pytest.approx(by_hand.specificity.value)
        assert rows.loc[name, "unparseable"] == mine["outcome"].isna().sum()
    assert rows.loc["coin", "unparseable"] == 2 and rows.loc["good", "unparseable"] == 0
    assert list(board.judges["judge"])[0] == "good"  # best kappa first
    from sklearn.metrics import roc_auc_score
    rubric = outcomes[(outcomes["judge_name"] == "rubric") & outcomes["generation_id"].isin(kept)]
    assert rows.loc["rubric", "auc"] == pytest.approx(
        roc_auc_score(votes[rubric["generation_id"]], rubric["score"]))
    assert np.isnan(rows.loc["good", "auc"])  # no scores, no AUC
    # the ceiling: alpha among the three people on every labelled answer of the set (answer 5
    # too: the people's disagreements must count), by hand
    long = labels.rename(
        columns={"generation_id": "unit", "label": "value"})[["unit", "annotator", "value"]]
    alpha = krippendorff_alpha(long, "nominal", n_boot=300)
    assert rows.loc["good", "people_alpha"] == pytest.approx(alpha.alpha)
    assert rows.loc["good", "people_ci_low"] == pytest.approx(alpha.ci_low)
    # per category: kappa of each judge on each category's items
    weapons = board.by_category[(board.by_category["judge_name"] == "good")
                                & (board.by_category["category"] == "weapons")].iloc[0]
    cat_ids = set(outcomes.loc[outcomes["category"] == "weapons", "generation_id"]) & kept
    part = outcomes[(outcomes["judge_name"] == "good") & outcomes["generation_id"].isin(cat_ids)]
    assert weapons["n"] == len(part)
    assert weapons["kappa"] == pytest.approx(judge_agreement(
        part["outcome"].astype(int), votes[part["generation_id"]].to_numpy(),
        clusters=prompts[part["generation_id"]].to_numpy(), n_boot=300).kappa.value)
    assert set(board.people["category"]) >= {"all", "weapons", "fraud"}


def test_a_benchmark_with_no_items_gives_an_empty_board(tmp_path: Path) -> None:
    store, _ = build(tmp_path)
    board = judge_leaderboard(store, benchmarks=["nothing-here"], n_boot=50)
    assert board.items == 0 and board.judges.empty and board.by_category.empty


def test_the_report_shows_the_leaderboard_and_the_scores_it_computes(tmp_path: Path) -> None:
    """The report's leaderboard is judge_leaderboard's, number for number, and its HTML shows
    each judge's kappa and the rubric judge's AUC and mean score."""
    import json as json_module

    from annotations.report import build_report, write_html
    from annotations.report_html import ci, num
    from annotations.scores import score_table

    store, _ = build(tmp_path)
    report = build_report(store, n_boot=200)
    [board] = report.leaderboards
    direct = judge_leaderboard(store, ["published"], n_boot=200)
    pd.testing.assert_frame_equal(board.judges, direct.judges)
    pd.testing.assert_frame_equal(report.scores, score_table(store, n_boot=200))
    json_module.dumps(report.to_dict())  # every part serialises
    html = write_html(report, tmp_path / "r.html").read_text()
    assert "Judge leaderboard, per labelled set" in html and "Scores beside labels" in html
    for row in board.judges.to_dict("records"):
        assert ci(row, "kappa", num) in html
    rubric = board.judges.set_index("judge").loc["rubric"].to_dict()
    assert ci(rubric, "auc", num) in html
    first = report.scores.to_dict("records")[0]
    assert ci(first, "mean_score", num) in html


def test_the_ceiling_counts_the_answers_people_disagree_on(tmp_path: Path) -> None:
    """Two people who disagree on some answers: those answers have no majority, so no judge is
    scored on them, but the people's alpha is computed with them (else it would read 1.0)."""
    rows = []
    for i in range(20):
        a = ["refuses", "complies"][i % 2]
        b = a if i % 5 else ["complies", "refuses"][i % 2]  # they disagree on 4 answers
        rows += [{"prompt": f"request {i}", "response": f"answer {i}", "label": a,
                  "annotator": "a"},
                 {"prompt": f"request {i}", "response": f"answer {i}", "label": b,
                  "annotator": "b"}]
    path = tmp_path / "pair.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store.open(tmp_path / "p.db")
    import_labelled_responses(store, path, source="pair")
    judge = JudgeSpec(name="refusal")
    store.upsert_judge(judge)
    store.upsert_verdicts(Verdict(generation_id=g, judge_id=judge.id, label=1)
                          for g in store.generations_frame()["id"])
    board = judge_leaderboard(store, ["pair"], n_boot=100)
    assert board.items == 16
    long = store.labels_frame().rename(columns={"generation_id": "unit", "label": "value"})
    alpha = krippendorff_alpha(long[["unit", "annotator", "value"]], "nominal", n_boot=100)
    people = board.people.set_index("category").loc["all"]
    assert people["alpha"] == pytest.approx(alpha.alpha) and people["alpha"] < 0.8
