"""Align stage: safety-tune a base model so that it refuses unsafe requests, before a sweep.

A base that already complies with everything cannot become less safe, so a sweep that wants to
show what benign fine-tuning does to safety needs an aligned base. This stage trains a LoRA on
refusals to unsafe requests mixed with helpful answers to harmless-but-sensitive requests and
ordinary benign pairs (so the model learns to refuse without refusing everything), merges it into
the base and caches the merged model. It runs once per machine and settings: the cached model is
found by a name derived from the base and the settings, e.g. `aligned/smollm2-3f2a9c1e`, which
`pipeline.models.resolve` maps to the cache folder.

    align:                      # in a sweep config; the sweep's base models are aligned first
      name: refuse
      data:
        - {name: refusals, shape: dolly, path: demo_data/align_refusals.jsonl}
        - {name: helpful, shape: dolly, path: demo_data/align_helpful.jsonl}
        - {name: benign, shape: dolly, path: demo_data/benign_train.jsonl, n: 120}
      train: {epochs: 2, learning_rate: 5.0e-4, ...}
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.records import stable_id
from pipeline.finetune import TrainSettings, build_trainer
from pipeline.instructions import load_instructions
from pipeline.models import ALIGNED_PREFIX, aligned_dir


@dataclass(frozen=True)
class AlignSpec:
    name: str = "aligned"
    data: tuple[Any, ...] = ()  # DataSpec entries (see pipeline.config)
    train: TrainSettings = field(default_factory=TrainSettings)
    seed: int = 0


def aligned_name(base: str, spec: AlignSpec) -> str:
    """The model name under which the aligned base is cached and stored."""
    settings = dataclasses.asdict(spec)
    stem = Path(base).name.lower() if Path(base).exists() else base.replace("/", "--").lower()
    return f"{ALIGNED_PREFIX}{stem}-{spec.name}-{stable_id(base, settings)[:8]}"


def training_pairs(spec: AlignSpec) -> list[Any]:
    """All data sets of the spec, mixed in a seeded order."""
    pairs: list[Any] = []
    for data in spec.data:
        pairs += load_instructions(data.shape, data.path, n=data.n, seed=data.seed) * data.repeat
    random.Random(spec.seed).shuffle(pairs)
    return pairs


def align(base: str, spec: AlignSpec, progress: bool = True) -> str:
    """The aligned model's name; trains, merges and caches it unless that was done before."""
    name = aligned_name(base, spec)
    target = aligned_dir(name)
    if (target / "config.json").exists():
        return name
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".align-"))
    try:
        trainer = build_trainer(base, spec.seed, training_pairs(spec), spec.train,
                                work / "train", progress)
        trainer.train()
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(work / "model")
        trainer.processing_class.save_pretrained(work / "model")
        (work / "model").rename(target)  # whole or not at all: a killed run leaves no model
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return name
