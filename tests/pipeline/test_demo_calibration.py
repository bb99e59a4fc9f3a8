"""The demo's judge-calibration set (demo_data/judge_calibration.jsonl): it imports whole into a
real store as a random sample labelled by two annotators (two of the project's developers, AI
coding agents: see demo_data/README.md), and none of its requests is one the demo
sweep evaluates (calibration and evaluation share checkpoints, not prompts)."""

from __future__ import annotations

from pathlib import Path

from annotations.agreement import krippendorff_alpha
from annotations.importers import import_labelled_responses
from annotations.store import Store
from pipeline.config import BenchmarkSpec, load_config
from pipeline.sweep import benchmark_prompts

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_calibration_set_imports_and_is_disjoint_from_the_evaluation(tmp_path):
    config = load_config(ROOT / "configs/demo.yaml")
    (spec,) = config.calibration
    store = Store.open(tmp_path / "s.db")
    summary = import_labelled_responses(store, ROOT / spec.path, source=spec.source,
                                        random_sample=spec.random_sample)
    assert (summary["generations"], summary["labels_added"], summary["annotators"]) == \
        (120, 240, 2)
    labels = store.labels_frame()
    assert labels["chosen_at_random"].eq(True).all()
    assert labels.groupby("generation_id").size().eq(2).all()  # both people labelled everything

    calibration = set(store.prompts_frame()["text"])
    evaluated = {p.text for p in benchmark_prompts(config.benchmarks)}
    unsafe = {p.text for p in benchmark_prompts(config.benchmarks[:1])}
    assert not calibration & evaluated
    demo_unsafe = {p.text for p in benchmark_prompts([BenchmarkSpec(
        name="all", shape="demo-unsafe", path=str(ROOT / "demo_data/unsafe_demo.jsonl"))])}
    assert calibration <= demo_unsafe - unsafe  # the demo requests the sweep leaves out

    long = labels.rename(columns={"generation_id": "unit", "label": "value"})
    alpha = krippendorff_alpha(long[["unit", "annotator", "value"]], n_boot=200)
    assert alpha.alpha > 0.9
