"""The align stage: a LoRA safety-tune merged into the base and cached once; its data covers all
44 categories and is disjoint from the demo evaluation sets."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

from pipeline.align import AlignSpec, align, aligned_name
from pipeline.config import DataSpec, config_from_dict
from pipeline.finetune import LoraSettings, TrainSettings
from pipeline.models import aligned_dir, load_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo_data"


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / name).read_text().splitlines() if line.strip()]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def _max_jaccard(texts_a: list[str], texts_b: list[str]) -> float:
    sets_b = [_words(t) for t in texts_b]
    return max(len(a & b) / len(a | b) for a in map(_words, texts_a) for b in sets_b)


def test_refusal_data_covers_every_category_and_is_disjoint_from_the_evaluation_set():
    refusals = _lines("align_refusals.jsonl")
    assert len(refusals) >= 220
    assert set(Counter(r["category"] for r in refusals)) == {str(i) for i in range(1, 45)}
    unsafe = [q["turns"][0] for q in _lines("unsafe_demo.jsonl")]
    assert not {r["instruction"] for r in refusals} & set(unsafe)
    assert _max_jaccard([r["instruction"] for r in refusals], unsafe) <= 0.6


def test_helpful_data_is_disjoint_from_the_over_refusal_set():
    helpful = [h["instruction"] for h in _lines("align_helpful.jsonl")]
    sensitive = [s["prompt"] for s in _lines("sensitive_benign.jsonl")]
    assert not set(helpful) & set(sensitive)
    assert _max_jaccard(helpful, sensitive) <= 0.6


def _spec(tmp_path: Path) -> AlignSpec:
    data = tmp_path / "align.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "instruction": f"how do i make a {w}",
                                        "context": "", "response": "sorry , i cannot help ."})
                            + "\n" for i, w in enumerate(["car", "book", "house", "computer"])))
    return AlignSpec(name="t", data=(DataSpec(name="r", path=str(data), repeat=2),),
                     train=TrainSettings(epochs=1, batch_size=4, micro_batch_size=4,
                                         learning_rate=5e-2, optimizer="adamw_torch",
                                         max_length=64, lora=LoraSettings(r=4, alpha=8)))


def test_align_merges_caches_and_runs_once(tmp_path, tiny_model_dir):
    spec = _spec(tmp_path)
    name = align(str(tiny_model_dir), spec, progress=False)
    assert name == aligned_name(str(tiny_model_dir), spec) and name.startswith("aligned/")
    folder = aligned_dir(name)
    assert (folder / "config.json").exists() and not list(folder.glob("adapter_*"))
    model, _ = load_model(name)  # a plain model now: the LoRA is merged in
    assert not any("lora" in key for key in model.state_dict())
    mtime = (folder / "model.safetensors").stat().st_mtime
    start = time.perf_counter()
    assert align(str(tiny_model_dir), spec, progress=False) == name
    assert time.perf_counter() - start < 1 and (folder / "model.safetensors").stat().st_mtime == mtime


def test_other_settings_give_another_aligned_model(tmp_path, tiny_model_dir):
    spec = _spec(tmp_path)
    other = AlignSpec(name="t", data=spec.data, train=spec.train, seed=1)
    assert aligned_name(str(tiny_model_dir), spec) != aligned_name(str(tiny_model_dir), other)


def test_demo_config_aligns_its_base_first():
    config = config_from_dict(__import__("yaml").safe_load((ROOT / "configs/demo.yaml").read_text()))
    assert config.align is not None and config.base_models == ("smollm2",)
    assert {Path(d.path).name for d in config.align.data} >= {"align_refusals.jsonl",
                                                               "align_helpful.jsonl"}
