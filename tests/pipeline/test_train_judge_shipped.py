"""The trained judge shipped in demo_data/judges/ is the one this project's train-judge stage
makes for the demo's settings and calibration labels: its record holds the key the demo config
and data give now, the stage uses it instead of training, and, on demand (`pytest -m rederive`,
about 5 minutes on 2 cores), training it again here gives the same adapter within float
tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from annotations.importers import import_labelled_responses
from annotations.store import Store
from pipeline.config import load_config
from pipeline.train_judge import (SHIPPED, TRAIN_ENV, labelled_pairs, made_with, shipped_adapter,
                                  split_by_prompt, trained_adapter, training_key)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "demo.db")
    config = load_config(ROOT / "configs/demo.yaml")
    for spec in config.calibration:
        import_labelled_responses(store, ROOT / spec.path, source=spec.source,
                                  random_sample=spec.random_sample)
    return store


def demo_key(store: Store) -> str:
    spec = load_config(ROOT / "configs/demo.yaml").train_judge
    frame = labelled_pairs(store, spec.benchmarks)
    return training_key(spec, frame[~split_by_prompt(frame, spec.holdout, spec.seed)])


def test_the_shipped_judge_matches_the_demo_settings_and_labels(demo_store, tmp_path,
                                                                monkeypatch):
    key = demo_key(demo_store)
    folder = shipped_adapter(key)
    assert folder is not None, (f"no judge in {SHIPPED} for key {key}: the demo's train_judge "
                                f"settings or calibration labels changed; re-derive it with "
                                f"{TRAIN_ENV}=1 (see pipeline/train_judge.py)")
    monkeypatch.delenv(TRAIN_ENV, raising=False)
    spec = load_config(ROOT / "configs/demo.yaml").train_judge
    adapter = trained_adapter(demo_store, spec, tmp_path / "judge", progress=False)
    assert made_with(adapter) == key and not (tmp_path / "judge" / "train").exists()
    assert (adapter / "adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors").read_bytes()


@pytest.mark.rederive
def test_training_it_again_gives_the_shipped_judge(demo_store, monkeypatch, tmp_path):
    monkeypatch.setenv(TRAIN_ENV, "1")
    spec = load_config(ROOT / "configs/demo.yaml").train_judge
    adapter = trained_adapter(demo_store, spec, tmp_path / "judge", progress=False)
    fresh = load_file(adapter / "adapter_model.safetensors")
    shipped = load_file(shipped_adapter(demo_key(demo_store)) / "adapter_model.safetensors")
    assert fresh.keys() == shipped.keys()
    worst = max(float((fresh[k] - shipped[k]).abs().max() / (shipped[k].abs().max() + 1e-12))
                for k in shipped)
    print(f"largest relative difference of a LoRA matrix: {worst:.2e}")
    assert worst < 1e-3
