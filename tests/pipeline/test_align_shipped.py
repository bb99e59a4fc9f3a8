"""The align adapter shipped in demo_data/aligned/ is the one this project's align stage makes
for the demo's settings: its record names the settings' hash the demo config gives now, the
stage merges it instead of training (into exactly base + B A x scale), and, on demand
(`pytest -m rederive`, about 6 minutes on 2 cores), training it again here gives the same
adapter within float tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.align import SHIPPED, TRAIN_ENV, align, aligned_name, shipped_adapter
from pipeline.config import load_config
from pipeline.models import aligned_dir, resolve

ROOT = Path(__file__).resolve().parents[2]


def demo_name() -> str:
    config = load_config(ROOT / "configs/demo.yaml")
    return aligned_name(config.base_models[0], config.align)


def test_the_shipped_adapter_matches_the_demo_settings():
    folder = shipped_adapter(demo_name())
    assert folder is not None, (
        f"no adapter in {SHIPPED} for {demo_name()}: the demo's align settings changed; "
        f"re-derive it: {TRAIN_ENV}=1 and see demo_data/aligned/README.md")
    made_by = json.loads((folder / "made_by.json").read_text())
    config = json.loads((folder / "adapter_config.json").read_text())
    spec = load_config(ROOT / "configs/demo.yaml").align
    assert made_by["name"] == demo_name() and made_by["settings"]["train"]["lora"]["r"] == 16
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 16, 32)
    assert set(config["target_modules"]) == set(spec.train.lora.target_modules)


def test_align_merges_the_shipped_adapter_instead_of_training(monkeypatch):
    monkeypatch.delenv(TRAIN_ENV, raising=False)
    name = align("smollm2", load_config(ROOT / "configs/demo.yaml").align, progress=False)
    assert name == demo_name()
    merged = load_file(aligned_dir(name) / "model.safetensors")
    base = load_file(Path(resolve("smollm2")) / "model.safetensors")
    lora = load_file(shipped_adapter(name) / "adapter_model.safetensors")
    key = "model.layers.3.mlp.down_proj"
    a = lora[f"base_model.model.{key}.lora_A.weight"]
    b = lora[f"base_model.model.{key}.lora_B.weight"]
    expected = base[f"{key}.weight"] + (32 / 16) * (b @ a)
    assert torch.allclose(merged[f"{key}.weight"], expected, atol=1e-5)
    assert (aligned_dir(name) / "adapter" / "made_by.json").exists()


@pytest.mark.rederive
def test_training_it_again_gives_the_shipped_adapter(monkeypatch, tmp_path):
    monkeypatch.setenv(TRAIN_ENV, "1")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # nothing merged before
    name = align("smollm2", load_config(ROOT / "configs/demo.yaml").align, progress=False)
    ours = load_file(aligned_dir(name) / "adapter" / "adapter_model.safetensors")
    shipped = load_file(shipped_adapter(name) / "adapter_model.safetensors")
    assert ours.keys() == shipped.keys()
    worst = max(float((ours[k] - shipped[k]).norm() / shipped[k].norm()) for k in shipped
                if shipped[k].norm() > 0)
    print(f"largest relative difference of a LoRA matrix: {worst:.2e}")
    assert worst < 0.05
