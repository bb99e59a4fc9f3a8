"""The statistics over a real store: a simulated sweep (base + 2 seeds x 2 epochs, 2 temperatures,
40 prompts, an accurate judge and a noisy one with unparseable verdicts, three annotators on a
subset) written through the Store API, and every number checked against one computed here by hand
from the rows that went in."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from sweep_builder import CATEGORIES, Sweep, build_sweep  # the simulated sweep, shared

from annotations.analysis import (FELL, NO_CHANGE, PROMINENT_CATEGORIES, ROSE, TOO_FEW, Frames,
                                  compare_conclusions, conclusion, conclusion_flips,
                                  harmfulness_report, human_alpha, human_majority,
                                  judge_human_table, judge_vs_judge_table, plan_labels,
                                  sweep_frame, unparseable_table, variance_report)
from annotations.estimates import PREFIX, Method
from annotations.frames import MIN_ITEMS
from annotations.harm import CalibrationSource
from annotations.io_frames import (agreement_from_csv, agreement_from_store, correct_from_csv,
                                   variance_from_csv, variance_from_store)
from annotations.records import Annotator, Checkpoint, Generation, HumanLabel, Label, Prompt
from annotations.store import Store
from annotations.tabular import BadInputError


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Sweep:
    return build_sweep(tmp_path_factory.mktemp("sweep") / "sim.db")


@pytest.fixture(scope="module")
def frames(sweep) -> Frames:
    return Frames.from_store(sweep.store)


def _majority_by_hand(labels: pd.DataFrame) -> dict[str, str | None]:
    out = {}
    for gen_id, block in labels.groupby("generation_id"):
        counts = block["label"].value_counts()
        out[gen_id] = counts.index[0] if (counts == counts.iloc[0]).sum() == 1 else None
    return out


# --- people ----------------------------------------------------------------------------------


def test_human_majority_ties_incoherent_and_random_flag():
    labels = pd.DataFrame({
        "generation_id": ["a", "a", "a", "b", "b", "c", "c", "c", "d"],
        "annotator": ["x", "y", "z", "x", "y", "x", "y", "z", "x"],
        "label": ["complies", "complies", "refuses", "complies", "refuses", "incoherent",
                  "incoherent", "refuses", "refuses"],
        "chosen_at_random": [None, True, None, False, False, None, None, None, True]})
    majority = human_majority(labels).set_index("generation_id")
    assert majority.loc["a", "majority"] == "complies" and majority.loc["a", "human"] == 1
    assert majority.loc["b", "majority"] is None and np.isnan(majority.loc["b", "human"])
    assert majority.loc["c", "incoherent"] and np.isnan(majority.loc["c", "human"])
    assert majority.loc["d", "human"] == 0 and majority.loc["d", "n_labels"] == 1
    assert majority["chosen_at_random"].to_dict() == {"a": True, "b": False, "c": False, "d": True}
    assert human_majority(labels.iloc[:0]).empty


def test_human_alpha_overall_and_per_category_match_the_package(sweep, frames):
    import krippendorff

    table = human_alpha(frames, by="category", n_boot=200)
    overall = table.iloc[0]
    assert overall["category"] == "all"
    wide = sweep.labels.pivot(index="annotator", columns="generation_id", values="label")
    codes = wide.replace({"complies": 0, "refuses": 1, "incoherent": 2}).astype(float)
    expected = krippendorff.alpha(reliability_data=codes.to_numpy(), level_of_measurement="nominal")
    assert overall["alpha"] == pytest.approx(expected)
    assert overall["ci_low"] <= overall["alpha"] <= overall["ci_high"]
    assert set(table["category"]) == {"all", *CATEGORIES.values()}
    assert 0.5 < overall["alpha"] < 1  # 8% errors each: substantial, not perfect


# --- judges against people -------------------------------------------------------------------


def test_judge_human_table_against_the_majority_by_hand(sweep, frames):
    table = judge_human_table(frames, n_boot=200)
    majority = _majority_by_hand(sweep.labels)
    binary = {g: {"complies": 1, "refuses": 0}.get(m) for g, m in majority.items()}
    for name, judge_id in sweep.judges.items():
        mine = sweep.verdicts[(sweep.verdicts["judge"] == name)
                              & sweep.verdicts["generation_id"].map(binary).notna()]
        parsed = mine[mine["label"].notna()]
        human = parsed["generation_id"].map(binary).astype(int)
        row = table.agreement[(table.agreement["judge_id"] == judge_id)
                              & (table.agreement["reference"] == "majority")].iloc[0]
        assert row["n"] == len(parsed)
        assert row["n_unparseable"] == mine["label"].isna().sum()
        assert row["kappa"] == pytest.approx(cohen_kappa_score(human, parsed["label"].astype(int)))
    kappas = table.agreement[table.agreement["reference"] == "majority"].set_index("judge_name")
    assert kappas.loc["accurate", "kappa"] > kappas.loc["noisy", "kappa"]
    references = set(table.agreement["reference"])
    assert references == {"majority", "annotator:ana", "annotator:bob", "annotator:cy"}


def test_judge_human_table_splits_by_coherence_and_checkpoint(sweep, frames):
    table = judge_human_table(frames, by=["coherence", "checkpoint"], n_boot=100).agreement
    assert set(table["coherence"]) == {"coherent", "incoherent"}
    assert "base" in set(table["checkpoint"]) and "seed 2 epoch 2" in set(table["checkpoint"])
    with pytest.raises(ValueError, match="cannot split by"):
        judge_human_table(frames, by="colour")


def test_unparseable_counted_per_judge_and_checkpoint(sweep, frames):
    table = unparseable_table(frames)
    noisy = table[table["judge_id"] == sweep.judges["noisy"]]
    expected = (sweep.verdicts[sweep.verdicts["judge"] == "noisy"]
                .groupby(["checkpoint_id", "temperature"])["label"].apply(lambda s: s.isna().sum()))
    got = noisy.set_index(["checkpoint_id", "temperature"])["unparseable"]
    assert got.sort_index().tolist() == expected.sort_index().tolist()
    accurate = table[table["judge_id"] == sweep.judges["accurate"]]
    assert accurate["unparseable"].sum() == 0 and accurate["verdicts"].sum() == 400


def test_judge_vs_judge_kappa_and_ranking(sweep, frames):
    row = judge_vs_judge_table(frames).iloc[0]
    wide = sweep.verdicts.pivot(index="generation_id", columns="judge", values="label").dropna()
    assert row["n_common"] == len(wide)
    assert row["kappa"] == pytest.approx(cohen_kappa_score(wide["accurate"], wide["noisy"]))
    assert row["n_cells"] == 10 and -1 <= row["tau"] <= 1


# --- harmfulness -----------------------------------------------------------------------------


def _calibration_by_hand(sweep, judge: str, random_only: bool = True):
    majority = _majority_by_hand(sweep.labels)
    chosen = sweep.labels.groupby("generation_id")["chosen_at_random"].any()
    binary = {g: {"complies": 1, "refuses": 0}.get(m) for g, m in majority.items()}
    mine = sweep.verdicts[(sweep.verdicts["judge"] == judge) & sweep.verdicts["label"].notna()]
    mine = mine[mine["generation_id"].map(binary).notna()]
    if random_only:
        mine = mine[mine["generation_id"].map(chosen)]
    human = mine["generation_id"].map(binary)
    sens = ((mine["label"] == 1) & (human == 1)).sum() / (human == 1).sum()
    spec = ((mine["label"] == 0) & (human == 0)).sum() / (human == 0).sum()
    return sens, spec, len(mine)


def test_harmfulness_report_raw_and_corrected_by_hand(sweep, frames):
    report = harmfulness_report(frames, sweep.judges["noisy"], n_boot=300)
    ckpt = sweep.checkpoints[(1, 2)]
    mine = sweep.verdicts[(sweep.verdicts["judge"] == "noisy")
                          & (sweep.verdicts["checkpoint_id"] == ckpt)
                          & (sweep.verdicts["temperature"] == 0.7)]
    row = report.table[(report.table["checkpoint_id"] == ckpt)
                       & (report.table["temperature"] == 0.7)].iloc[0]
    raw = mine["label"].dropna().mean()
    assert row["harmfulness"] == pytest.approx(raw)
    assert row["unparseable"] == mine["label"].isna().sum()
    assert row["n"] == mine["label"].notna().sum() and row["seed"] == 1 and row["epoch"] == 2
    sens, spec, n_calib = _calibration_by_hand(sweep, "noisy")
    assert report.calibration == CalibrationSource.RANDOM and report.n_calibration == n_calib
    assert report.sensitivity == pytest.approx(sens) and report.specificity == pytest.approx(spec)
    expected = np.clip((raw + spec - 1) / (sens + spec - 1), 0, 1)
    assert row["rogan_gladen"] == pytest.approx(expected)
    assert row["rogan_gladen_ci_low"] <= row["rogan_gladen"] <= row["rogan_gladen_ci_high"]
    method = Method(row["method"])  # the headline is one method's number, named beside it
    assert row["corrected"] == row[PREFIX[method]] and row["assumption"] == method.assumption
    assert row["corrected_ci_low"] <= row["corrected"] <= row["corrected_ci_high"]
    assert row["status"] == "corrected" and report.informative
    assert len(report.table) == 10
    json.dumps(report.to_dict(), allow_nan=False, default=str)


def test_harmfulness_report_calibrates_on_random_picks_only_unless_told(sweep, frames):
    labels = frames.labels.assign(chosen_at_random=None)
    chosen = Frames(frames.outcomes, labels)
    none = harmfulness_report(chosen, sweep.judges["accurate"], n_boot=100)
    assert none.calibration == CalibrationSource.NONE and none.n_calibration == 0
    assert none.table["corrected"].isna().all() and none.reason == "no calibration labels"
    report = harmfulness_report(chosen, sweep.judges["accurate"], n_boot=100, random_only=False)
    sens, spec, n_calib = _calibration_by_hand(sweep, "accurate", random_only=False)
    assert report.calibration == CalibrationSource.ALL_LABELLED
    assert report.n_calibration == n_calib and report.sensitivity == pytest.approx(sens)


def test_harmfulness_report_without_labels_and_with_an_uninformative_judge(sweep, frames):
    bare = harmfulness_report(Frames(frames.outcomes), sweep.judges["accurate"], n_boot=100)
    assert bare.calibration == "none" and not bare.informative
    assert (bare.table["status"] == "no calibration labels").all()
    assert bare.table["corrected"].isna().all() and bare.table["harmfulness"].notna().all()
    coin = frames.outcomes.copy()
    coin["outcome"] = np.random.default_rng(5).integers(0, 2, len(coin)).astype(float)
    report = harmfulness_report(Frames(coin, frames.labels), sweep.judges["accurate"], n_boot=100)
    if report.informative:  # a coin can beat MIN_YOUDEN by luck; make sure it does not here
        pytest.fail(f"a coin judge looked informative: {report.sensitivity}, {report.specificity}")
    # no pooled number from a coin; a cell with MIN_ITEMS labels of its own still has one
    table = report.table
    assert table[["ppi_pooled", "rogan_gladen"]].isna().all().all()
    own = table["n_own_labels"] >= MIN_ITEMS
    assert own.any() and (~own).any()
    assert table.loc[~own, "status"].str.startswith("uninformative judge").all()
    assert (table.loc[own, "method"] == Method.PPI_OWN.value).all()
    assert (table.loc[own, "corrected"] == table.loc[own, "ppi_own"]).all()


def test_harmfulness_report_category_subsets(sweep, frames):
    judge = sweep.judges["accurate"]
    subset = harmfulness_report(frames, judge, categories=PROMINENT_CATEGORIES, n_boot=100)
    assert subset.categories == PROMINENT_CATEGORIES
    prominent = sweep.verdicts[(sweep.verdicts["judge"] == "accurate")
                               & sweep.verdicts["category_id"].isin(["1", "7"])]
    base = prominent[(prominent["epoch"] == 0) & (prominent["temperature"] == 0.0)]
    row = subset.table[(subset.table["checkpoint"] == "base")
                       & (subset.table["temperature"] == 0.0)].iloc[0]
    assert row["harmfulness"] == pytest.approx(base["label"].mean()) and row["n"] == 20
    per_category = harmfulness_report(frames, judge, by_category=True, n_boot=100).table
    assert len(per_category) == 10 * 4 and set(per_category["category"]) == set(CATEGORIES.values())
    assert PROMINENT_CATEGORIES == tuple(str(i) for i in range(1, 25))
    with pytest.raises(ValueError, match="no verdicts"):
        harmfulness_report(frames, judge, categories=["99"])


# --- sweeps ----------------------------------------------------------------------------------


def test_sweep_frame_repeats_the_base_under_each_seed(sweep, frames):
    outcomes = frames.outcomes[frames.outcomes["judge_id"] == sweep.judges["accurate"]]
    frame = sweep_frame(outcomes, ("tiny", "demo"))
    assert len(frame) == 2 * 3 * 2 * 40  # seeds x epochs 0..2 x temperatures x prompts
    base = frame[frame["epoch"] == 0]
    assert sorted(base["seed"].unique()) == [1, 2]
    per_seed = base.groupby("seed")["generation_id"].apply(frozenset)
    assert per_seed.iloc[0] == per_seed.iloc[1] and len(per_seed.iloc[0]) == 80


def test_variance_report_on_a_complete_grid(sweep, frames):
    accurate = variance_report(frames, sweep.judges["accurate"], n_boot=100)
    assert accurate.components.n_rows == 480 and accurate.components.n_prompts == 40
    assert accurate.dropped_prompts == 0 and accurate.sweep == ("tiny", "demo")
    table = accurate.components.table.set_index("component")
    assert table.loc["epoch", "variance"] > 0  # harmfulness was built to rise with epoch
    assert not np.isnan(table.loc["judge error", "variance"])  # human labels were joined
    noisy = variance_report(frames, sweep.judges["noisy"], n_boot=100)
    holes = sweep.verdicts[(sweep.verdicts["judge"] == "noisy") & sweep.verdicts["label"].isna()]
    assert noisy.dropped_prompts == holes["prompt_id"].nunique()
    assert noisy.components.n_prompts == 40 - noisy.dropped_prompts
    assert len(noisy.spread.vs_base) == 2 * 2 * 2
    json.dumps(noisy.to_dict(), default=str)


def test_conclusion_reading():
    assert conclusion(0.2, 0.05, 0.3) == ROSE
    assert conclusion(-0.2, -0.3, -0.01) == FELL
    assert conclusion(0.1, -0.01, 0.2) == NO_CHANGE
    assert conclusion(0.1, np.nan, np.nan) == NO_CHANGE


def _constructed(flip: bool, n_prompts: int = 60) -> Frames:
    """One seed, epoch 0 and 1, one temperature: both judges see 10% -> 80% harmfulness, or
    (flip) the second judge sees no change at all."""
    rows = []
    for epoch in (0, 1):
        for p in range(n_prompts):
            truth = int(p < n_prompts * (0.1 if epoch == 0 else 0.8))
            for judge in ("a", "b"):
                seen = truth if not (flip and judge == "b") else int(p < n_prompts * 0.4)
                rows.append({"generation_id": f"g{epoch}-{p}", "judge_id": judge,
                             "judge_name": f"judge {judge}", "outcome": seen, "kind": "unsafe",
                             "checkpoint_id": f"c{epoch}", "prompt_id": f"p{p}",
                             "temperature": 0.0, "sample_index": 0, "base_model": "m",
                             "run_id": None if epoch == 0 else "r", "epoch": epoch,
                             "seed": np.nan if epoch == 0 else 1.0, "dataset": None
                             if epoch == 0 else "d"})
    labels = [{"generation_id": f"g{e}-{p}", "annotator": "ana",
               "label": "complies" if p < n_prompts * (0.1 if e == 0 else 0.8) else "refuses"}
              for e in (0, 1) for p in range(0, n_prompts, 4)]
    return Frames(pd.DataFrame(rows), pd.DataFrame(labels))


def test_conclusion_flips_when_judges_agree_and_when_they_do_not():
    agree = conclusion_flips(_constructed(flip=False), n_boot=300)
    row = agree.summary.iloc[0]
    assert row["agree"] and row["conclusions"] == [ROSE]
    assert row["judge a"] == row["judge b"] == row["people (majority)"] == ROSE
    people = agree.changes[agree.changes["source_kind"] == "human"].iloc[0]
    labelled = range(0, 60, 4)  # 15 prompts; complies at epoch 0 when p < 6, at epoch 1 p < 48
    by_hand = sum(p < 48 for p in labelled) / 15 - sum(p < 6 for p in labelled) / 15
    assert people["n_prompts"] == 15 and people["difference"] == pytest.approx(by_hand)
    flipped = conclusion_flips(_constructed(flip=True), n_boot=300).summary.iloc[0]
    assert not flipped["agree"] and flipped["judge b"] == NO_CHANGE
    assert flipped["conclusions"] == sorted([ROSE, NO_CHANGE])


def test_conclusion_flips_leave_out_people_with_too_few_labels():
    result = conclusion_flips(_constructed(flip=False), min_human_prompts=20, n_boot=200)
    row = result.summary.iloc[0]
    assert row["people (majority)"] == TOO_FEW and row["agree"]
    assert "fewer than 20" in result.note


def test_compare_conclusions_on_a_constructed_table():
    changes = pd.DataFrame({
        "source": ["j1", "j2", "people", "j1", "j2"], "seed": [1, 1, 1, 2, 2],
        "epoch": [1, 1, 1, 1, 1], "temperature": [0.0] * 5,
        "conclusion": [ROSE, ROSE, TOO_FEW, FELL, NO_CHANGE]})
    summary = compare_conclusions(changes).set_index("seed")
    assert summary.loc[1, "agree"] and not summary.loc[2, "agree"]
    assert summary.loc[2, "conclusions"] == [FELL, NO_CHANGE]


def test_conclusion_flips_on_the_store(sweep, frames):
    result = conclusion_flips(frames, n_boot=200)
    assert set(result.changes["source"]) == {"accurate", "noisy", "people (majority)"}
    assert len(result.summary) == 8
    rises = result.changes[(result.changes["source"] == "accurate")
                           & (result.changes["epoch"] == 2)]
    assert (rises["conclusion"] == ROSE).all()  # 15% -> 75%: every judge must see it
    json.dumps(result.to_dict(), default=str)


# --- the planner -----------------------------------------------------------------------------


def test_plan_labels_order_share_and_skipping(sweep, frames):
    plan = plan_labels(frames, n=50, k=3, random_share=0.2, seed=1)
    assert len(plan) == 50 and plan["rank"].tolist() == list(range(1, 51))
    assert plan["chosen_at_random"].sum() == 10
    assert plan["chosen_at_random"].tolist() == [i % 5 == 4 for i in range(50)]
    assert (plan["reason"] == "random").eq(plan["chosen_at_random"]).all()
    fully = set(sweep.labels["generation_id"])  # every labelled item has all three labels
    assert not set(plan["generation_id"]) & fully
    assert plan["generation_id"].is_unique
    planned = plan[~plan["chosen_at_random"]]["reason"].tolist()
    tiers = {"disagreement": 0, "unparseable": 0, "least_annotated": 1}
    assert [tiers[r] for r in planned] == sorted(tiers[r] for r in planned)


def test_plan_labels_stratifies_and_counts_only_missing_labels(sweep, frames):
    labels = frames.labels[frames.labels["annotator"] == "ana"]  # one label each
    plan = plan_labels(Frames(frames.outcomes, labels), n=400, k=2, random_share=0.0)
    assert not plan["chosen_at_random"].any()
    assert set(labels["generation_id"]) <= set(plan["generation_id"])  # one label < k = 2
    stratified = plan[plan["reason"] == "least_annotated"].head(10)
    strata = set(zip(stratified["checkpoint_id"], stratified["temperature"]))
    assert len(strata) == 10  # round-robin: the first ten cover all ten strata
    agreed = frames.outcomes.groupby("generation_id")["outcome"].agg(lambda s: s.nunique() > 1)
    first = plan.iloc[0]  # a priority pick: the judges disagree on it, or one could not read it
    assert first["reason"] in ("disagreement", "unparseable")
    assert agreed[first["generation_id"]] == (first["reason"] == "disagreement")
    with pytest.raises(ValueError, match="random_share"):
        plan_labels(frames, n=5, random_share=1.5)


# --- the commands' functions -----------------------------------------------------------------


def test_agreement_from_csv_matches_the_statistic(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("unit,annotator,value\n1,a,x\n1,b,x\n2,a,y\n2,b,y\n3,a,x\n3,b,y\n"
                    "4,a,y\n4,b,y\n")
    result = agreement_from_csv(path, n_boot=200)
    import krippendorff
    expected = krippendorff.alpha(reliability_data=[[0, 1, 0, 1], [0, 1, 1, 1]],
                                  level_of_measurement="nominal")
    assert result["alpha"] == pytest.approx(expected)
    assert result["units"] == 4 and result["annotators"] == 2
    assert set(result) >= {"alpha", "ci_low", "ci_high", "units", "annotators"}
    bad = tmp_path / "bad.csv"
    bad.write_text("unit,rater,value\n1,a,x\n")
    with pytest.raises(BadInputError, match=r"bad\.csv.*'annotator'"):
        agreement_from_csv(bad)


def test_correct_from_csv_matches_the_formula(tmp_path):
    judged = tmp_path / "judged.csv"
    verdicts = "".join(f"{int(i < 30)},p{i}\n" for i in range(100))
    judged.write_text("judge,prompt\n" + verdicts + ",p100\n")  # the last one unparseable
    calib = tmp_path / "calib.csv"
    rows = ["judge,human"] + ["1,complies"] * 18 + ["0,complies"] * 2 + ["0,refuses"] * 27 \
        + ["1,refuses"] * 3 + ["1,incoherent"]
    calib.write_text("\n".join(rows) + "\n")
    result = correct_from_csv(judged, calib, n_boot=300)
    sens, spec = 18 / 20, 27 / 30
    rogan = result["methods"][Method.ROGAN_GLADEN.value]
    assert rogan["estimate"] == pytest.approx((0.3 + spec - 1) / (sens + spec - 1))
    assert result["estimate"] == result["methods"][result["method"]]["estimate"]
    # the incoherent answer reads 0 for PPI++ and is left out of Rogan-Gladen only
    assert result["unparseable"] == 1 and result["calibration_left_out"] == 0
    assert result["n_judged"] == 100 and result["n_calibration"] == 50
    alone = result["methods"][Method.LABELS_ONLY.value]
    assert alone["estimate"] == pytest.approx(20 / 51)
    bad = tmp_path / "nohuman.csv"
    bad.write_text("judge,label\n1,complies\n")
    with pytest.raises(BadInputError, match=r"nohuman\.csv.*'human'"):
        correct_from_csv(judged, bad)


def test_variance_from_csv_and_from_store(tmp_path, sweep, frames):
    outcomes = frames.outcomes[frames.outcomes["judge_id"] == sweep.judges["accurate"]]
    frame = sweep_frame(outcomes, ("tiny", "demo")).drop(columns="generation_id")
    path = tmp_path / "outcomes.csv"
    frame.to_csv(path, index=False)
    result = variance_from_csv(path, n_boot=100)
    direct = variance_report(frames, sweep.judges["accurate"], n_boot=100)
    expected = direct.components.table.set_index("component")["variance"]
    got = {c["component"]: c["variance"] for c in result["components"]}
    assert got["epoch"] == pytest.approx(expected["epoch"])
    assert got["prompt"] == pytest.approx(expected["prompt"])
    assert result["unparseable"] == 0
    json.dumps(result, allow_nan=False)
    store_result = variance_from_store(frames, n_boot=100)
    assert len(store_result["judges"]) == 2 and "components" in store_result["judges"][0]
    bad = tmp_path / "bad.csv"
    frame.drop(columns="sample").to_csv(bad, index=False)
    with pytest.raises(BadInputError, match=r"bad\.csv.*'sample'"):
        variance_from_csv(bad)


def test_agreement_from_store(sweep, frames):
    result = agreement_from_store(frames, n_boot=100)
    json.dumps(result, allow_nan=False)
    assert result["labels"] == len(sweep.labels)
    assert {row["judge_name"] for row in result["judges"]} == {"accurate", "noisy"}
    assert agreement_from_store(Frames(frames.outcomes))["note"].startswith("no human labels")


def test_labels_on_answers_no_judge_has_seen_still_count(tmp_path):
    store = Store.open(tmp_path / "unjudged.db")
    prompt = Prompt(benchmark="sim", text="an unsafe request", category_id="7",
                    category="Violent Crimes")
    store.upsert_prompts([prompt])
    base = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    generations = [Generation(checkpoint_id=base, prompt_id=prompt.id, temperature=0.7,
                              sample_index=i, text=f"answer {i}") for i in range(3)]
    store.upsert_generations(generations)
    for name in ("ana", "bob"):
        store.add_annotator(Annotator(name=name))
    words = [("complies", "complies"), ("refuses", "refuses"), ("complies", "refuses")]
    store.add_labels(Label(generation_id=g.id, annotator=who, label=HumanLabel(word))
                     for g, pair in zip(generations[:3], words)
                     for who, word in zip(("ana", "bob"), pair))
    alpha = human_alpha(store, by="category", n_boot=50)
    # one category: its row would repeat "all", so there is none
    assert alpha.iloc[0]["units"] == 3 and list(alpha["category"]) == ["all"]
    plan = plan_labels(store, n=10, k=3, random_share=0.0)
    assert set(plan["generation_id"]) == {g.id for g in generations}
    assert (plan["reason"] == "least_annotated").all() and (plan["n_labels"] == 2).all()


def test_variance_report_keeps_the_complete_part_of_a_partial_grid(sweep):
    """A third epoch judged for seed 1 only, and one live-sampled request asked of the base
    alone: the decomposition is the complete grid's, with a plain sentence on what was left
    out; `checkpoints` narrows it to the chosen ones."""
    frames = Frames.from_store(sweep.store)
    base = variance_report(frames, sweep.judges["accurate"], n_boot=50)
    extra = frames.outcomes[(frames.outcomes["epoch"] == 2) & (frames.outcomes["seed"] == 1)]
    extra = extra.assign(epoch=3, checkpoint_id="epoch-3", generation_id=extra["generation_id"]
                         + "-3")
    live = frames.outcomes[frames.outcomes["epoch"] == 0].head(2).assign(
        prompt_id="live-prompt", generation_id=lambda f: f["generation_id"] + "-live")
    partial = Frames(pd.concat([frames.outcomes, extra, live], ignore_index=True), frames.labels)
    result = variance_report(partial, sweep.judges["accurate"], n_boot=50)
    assert result.dropped_epochs == (3,) and result.dropped_prompts == 1
    assert "Left out epoch(s) 3: not judged yet for every seed and temperature." in result.note
    assert "Left out 1 request(s) that lack a verdict" in result.note
    assert result.components.table.equals(base.components.table)
    keep = [c for c in frames.outcomes["checkpoint_id"].unique()
            if c not in {sweep.checkpoints[(2, 1)], sweep.checkpoints[(2, 2)]}]
    one_seed = variance_report(frames, sweep.judges["accurate"], n_boot=50, checkpoints=keep)
    assert one_seed.components.n_rows == 40 * 3 * 2  # seed 1: base + 2 epochs, 2 temperatures


def test_judge_names_are_short_and_tell_judges_apart():
    from annotations.frames import judge_names

    frame = pd.DataFrame({
        "judge_id": ["a1", "b2", "c3", "d4", "e5"],
        "judge_name": ["refusal", "llm", "llm", "http", "http"],
        "judge_args": [{}, {"model": "smollm2", "template": "sorry_bench", "max_new_tokens": 8},
                       {"model": "smollm2", "template": "harmbench", "max_new_tokens": 8},
                       {"model": "x", "template_hash": "1"}, {"model": "x", "template_hash": "2"}]})
    assert judge_names(frame) == {"a1": "refusal", "b2": "llm(template=sorry_bench)",
                                  "c3": "llm(template=harmbench)", "d4": "http [d4]",
                                  "e5": "http [e5]"}
    assert judge_names(frame.drop(columns="judge_args").iloc[:2]) == {"a1": "refusal",
                                                                       "b2": "llm"}
