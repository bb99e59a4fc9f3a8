"""The Validate dashboard's frames: agreement beside alpha, raw and corrected harmfulness, epochs,
variance shares, filters, gold accuracy."""

from __future__ import annotations

import numpy as np

from annotations.records import HumanLabel, Label
from tool.app import AppOptions, make_context
from tool.board import Filters, compute


def label_everything(filled, annotators=("ana", "bob"), flip_every=5):
    """People label every generation: refusals as refuses, the rest complies (bob disagrees
    sometimes); every label counts as drawn at random."""
    labels = []
    for i, gen in enumerate(filled.generations):
        truth = HumanLabel.REFUSES if gen.text.startswith("I'm sorry") else HumanLabel.COMPLIES
        for who in annotators:
            label = truth
            if who == "bob" and i % flip_every == 0:
                label = HumanLabel.INCOHERENT
            labels.append(Label(generation_id=gen.id, annotator=who, label=label,
                                chosen_at_random=True))
    filled.store.add_labels(labels)


def test_dashboard_frames(filled):
    label_everything(filled)
    ctx = make_context(filled.store, AppOptions(n_boot=100, gold={
        filled.generations[1].id: HumanLabel.COMPLIES}))
    board = compute(ctx, Filters())
    judges = board.result.judges.set_index("judge")
    assert set(judges.index) == {"refusal", "llm"}
    assert judges.loc["refusal", "kappa"] == 1.0  # the refusal judge matches people exactly here
    assert board.judge == "refusal"  # no judge picked: the plots follow the best kappa
    assert "for judge refusal (the one closest to people)" in board.notes[0]
    assert judges.loc["llm", "unparseable"] > 0
    assert judges.loc["refusal", "n_coherent"] + judges.loc["refusal", "n_incoherent"] == \
        judges.loc["refusal", "n"]
    assert set(board.confusion.columns) >= {"judge", "people say", "judge refuses",
                                            "judge complies"}
    assert -1 <= board.alpha["alpha"] <= 1
    assert (judges["people_alpha"] == board.alpha["alpha"]).all()
    assert board.alpha_text.startswith("People vs people, Krippendorff's alpha: ")
    assert list(board.judges.columns)[:5] == ["judge", "verdicts", "unparseable", "labelled",
                                              "kappa [95% CI]"]
    harm = board.harm_points
    assert set(harm["checkpoint"]) == {"base", "seed 1 epoch 1", "seed 1 epoch 2",
                                       "seed 2 epoch 1", "seed 2 epoch 2"}
    refusal = harm[harm["judge"] == "refusal"]
    assert np.allclose(refusal["corrected"], refusal["harmfulness"])  # a perfect judge: no change
    assert (harm["ci_low"] <= harm["harmfulness"]).all()
    assert (harm["harmfulness"] <= harm["ci_high"]).all()
    assert set(board.epochs["series"]) == {f"seed {s} · T={t}{c}" for s in (1, 2)
                                           for t in ("0", "0.7") for c in ("", " · corrected")}
    assert set(board.variance["component"]) >= {"seed", "epoch", "temperature", "prompt"}
    assert list(board.gold["annotator"]) == ["ana", "bob"]


def test_filters_narrow_everything(filled):
    label_everything(filled)
    ctx = make_context(filled.store, AppOptions(n_boot=50))
    board = compute(ctx, Filters(temperatures=(0.7,), categories=("2", "4")))  # Self-harm, Fraud
    assert set(board.harm_points["temperature"]) == {0.7} and set(board.harm["T"]) == {0.7}
    # two prompts per cell: a rate is shown as too few to read, never as "1.00 [1.00, 1.00]"
    assert board.harm["raw [95% CI]"].str.fullmatch(r"too few to read \(n=[12]\)").all()
    assert board.harm_points["too_few"].all()
    assert board.judges["verdicts"].max() == 5 * 2  # 5 checkpoints x 2 prompts, one judge


def test_dashboard_without_labels(filled):
    ctx = make_context(filled.store, AppOptions(n_boot=50))
    board = compute(ctx, Filters())
    assert board.harm_points["corrected"].isna().all() and len(board.harm)
    assert board.harm["corrected [95% CI]"].eq("").all()
    assert "labelled" in board.judges.columns and board.judges["labelled"].eq(0).all()
    assert board.alpha_text.startswith("People vs people: no Krippendorff's alpha yet")
    assert any(n.startswith("Gold items: none configured") for n in board.notes)


def test_an_imported_calibration_set_corrects_but_stays_off_the_epoch_lines(filled, tmp_path):
    """Labelled answers imported as a random sample calibrate the correction from the start;
    they are their own "imported" row, never an epoch-0 point or part of the variance grid."""
    import json

    from annotations.importers import import_labelled_responses

    ctx = make_context(filled.store, AppOptions(n_boot=50))
    before = compute(ctx, Filters(), judge="refusal")
    rows = [{"prompt": f"Calibration request {i}", "label": label,
             "response": "I'm sorry, I can't help with that." if label == "refuses"
             else "Step one: get the tools."}
            for i, label in enumerate(["refuses"] * 6 + ["complies"] * 6)]
    path = tmp_path / "calibration.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_labelled_responses(filled.store, path, source="calib", random_sample=True)
    from pipeline.judge import judge_store
    judge_store(filled.store, "refusal", progress=False)

    board = compute(ctx, Filters(), judge="refusal")
    refusal = board.harm_points[board.harm_points["judge"] == "refusal"].set_index("checkpoint")
    assert "imported: calib" in refusal.index
    assert refusal["corrected"].notna().all()  # calibrated by the imported labels alone
    (report,) = [r for r in board.result.harmfulness.values() if r.judge == "refusal"]
    assert report.n_calibration == 12
    raw = board.epochs[~board.epochs["series"].str.endswith("corrected")]
    assert {s: sorted(e) for s, e in raw.groupby("series")["epoch"]} == {
        s: [0, 1, 2] for s in raw["series"].unique()}
    assert set(board.epochs["series"]) == {f"seed {s} · T={t}{c}" for s in (1, 2)
                                           for t in ("0", "0.7") for c in ("", " · corrected")}
    assert board.variance.equals(before.variance)
