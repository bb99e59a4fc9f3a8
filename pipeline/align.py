"""Align stage: safety-tune a base model so that it refuses unsafe requests, before a sweep.

A base that already complies with everything cannot become less safe, so a sweep that wants to
show what benign fine-tuning does to safety needs an aligned base. This stage trains a LoRA on
refusals to unsafe requests mixed with helpful answers to harmless-but-sensitive requests and
ordinary benign pairs (so the model learns to refuse without refusing everything), merges it into
the base and caches the merged model. It runs once per machine and settings: the cached model is
found by a name derived from the base and the settings, e.g. `aligned/smollm2-3f2a9c1e`, which
`pipeline.models.resolve` maps to the cache folder.

The adapter this stage trained for the demo's settings ships with the project
(`demo_data/aligned/<name>/`: the adapter, and `made_by.json` with the settings, their hash,
the package versions and the loss): where the name (so the base and every setting) matches, the
stage merges the shipped adapter instead of training (seconds instead of 8-13 minutes on 2
cores). `WORKBENCH_ALIGN_TRAIN=1` trains it here all the same, and
`tests/pipeline/test_align_shipped.py -m rederive` trains it again and compares (on demand).

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
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.records import stable_id
from pipeline.finetune import TrainSettings, build_trainer, package_versions
from pipeline.instructions import load_instructions
from pipeline.models import ALIGNED_PREFIX, aligned_dir, load_model

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).resolve().parents[1] / "demo_data" / "aligned"
TRAIN_ENV = "WORKBENCH_ALIGN_TRAIN"  # =1: train even where a shipped adapter matches


@dataclass(frozen=True)
class AlignSpec:
    name: str = "aligned"
    data: tuple[Any, ...] = ()  # DataSpec entries (see pipeline.config)
    train: TrainSettings = field(default_factory=TrainSettings)
    seed: int = 0


def spec_settings(spec: AlignSpec) -> dict[str, Any]:
    """The spec as its hash and made_by.json record it (training settings as a run records
    them: a setting added later with its default changes no hash)."""
    return {**dataclasses.asdict(spec), "train": spec.train.hyperparameters()}


def aligned_name(base: str, spec: AlignSpec) -> str:
    """The model name under which the aligned base is cached and stored."""
    settings = spec_settings(spec)
    stem = Path(base).name.lower() if Path(base).exists() else base.replace("/", "--").lower()
    return f"{ALIGNED_PREFIX}{stem}-{spec.name}-{stable_id(base, settings)[:8]}"


def training_pairs(spec: AlignSpec) -> list[Any]:
    """All data sets of the spec, mixed in a seeded order."""
    pairs: list[Any] = []
    for data in spec.data:
        pairs += load_instructions(data.shape, data.path, n=data.n, seed=data.seed) * data.repeat
    random.Random(spec.seed).shuffle(pairs)
    return pairs


def shipped_adapter(name: str) -> Path | None:
    """The shipped adapter made by this stage under exactly these settings, if there is one."""
    folder = SHIPPED / name.removeprefix(ALIGNED_PREFIX)
    made_by = folder / "made_by.json"
    if not made_by.exists() or json.loads(made_by.read_text()).get("name") != name:
        return None
    return folder


def align(base: str, spec: AlignSpec, progress: bool = True) -> str:
    """The aligned model's name; merges the shipped adapter, or trains one, and caches the
    merged model, unless that was done before. The adapter is kept beside it (`adapter/`)."""
    name = aligned_name(base, spec)
    target = aligned_dir(name)
    if (target / "config.json").exists():
        return name
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".align-"))
    shipped = None if os.environ.get(TRAIN_ENV) == "1" else shipped_adapter(name)
    try:
        if shipped is not None:
            log.info("align: merging the shipped adapter %s (made by this stage with the same "
                     "settings; %s=1 trains it here)", shipped, TRAIN_ENV)
            model, tokenizer = _merged(base, shipped)
            shutil.copytree(shipped, work / "model" / "adapter")
        else:
            trainer = build_trainer(base, spec.seed, training_pairs(spec), spec.train,
                                    work / "train", progress)
            result = trainer.train()
            trainer.model.save_pretrained(work / "adapter")
            (work / "adapter" / "made_by.json").write_text(json.dumps(
                {"name": name, "base": base, "settings": spec_settings(spec),
                 "versions": package_versions(), "train_loss": result.training_loss},
                indent=2, default=str))
            model, tokenizer = trainer.model.merge_and_unload(), trainer.processing_class
        model.save_pretrained(work / "model")
        tokenizer.save_pretrained(work / "model")
        if (work / "adapter").exists():
            (work / "adapter").rename(work / "model" / "adapter")
        (work / "model").rename(target)  # whole or not at all: a killed run leaves no model
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return name


def _merged(base: str, adapter: Path):
    from peft import PeftModel

    model, tokenizer = load_model(base)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload(), tokenizer
