"""A sweep's settings: one YAML file read into small frozen dataclasses.

Everything a sweep does is named here (base models, training data, seeds, epochs, LoRA and
quantization settings, benchmarks, temperatures, samples, judges, the capability hold-out), so a
sweep can be re-run, resumed or shared as one file. See configs/ for commented examples.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.align import AlignSpec
from pipeline.finetune import LoraSettings, TrainSettings
from pipeline.generate import GenerationSettings


@dataclass(frozen=True)
class DataSpec:
    """Instruction data to fine-tune on (Dolly or Alpaca shape), seeded-subsampled to `n`."""

    name: str
    shape: str = "dolly"
    path: str = ""
    n: int | None = None
    seed: int = 0
    self_generated: bool = False  # the paper's control: train on the base model's own answers
    repeat: int = 1  # upsampling: each pair is used this many times per epoch


@dataclass(frozen=True)
class BenchmarkSpec:
    """Prompts to answer: a benchmark file of a known shape, optionally subsampled."""

    name: str
    shape: str
    path: str
    n: int | None = None  # stratified over categories, seeded
    seed: int = 0
    columns: str | None = None


@dataclass(frozen=True)
class JudgeConfig:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrationSpec:
    """Answers labelled by people (prompt, response, label; see `run.py import labelled`), imported
    before judging so every judge also judges them: their labels give each judge's sensitivity and
    specificity, and so the corrected harmfulness from the first results on. `random_sample` marks
    them as a random sample of answers like the judged ones (the correction's assumption)."""

    path: str
    source: str | None = None  # default: the file's stem
    columns: str | None = None
    label_values: str | None = None
    random_sample: bool = True


@dataclass(frozen=True)
class CapabilitySpec:
    path: str = ""
    shape: str = "dolly"
    n: int | None = None
    seed: int = 0
    max_new_tokens: int = 64
    batch_size: int = 32


@dataclass(frozen=True)
class SweepConfig:
    name: str
    base_models: tuple[str, ...] = ("smollm2",)
    datasets: tuple[DataSpec, ...] = ()
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    train: TrainSettings = field(default_factory=TrainSettings)
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    judges: tuple[JudgeConfig, ...] = (JudgeConfig("refusal"),)
    capability: CapabilitySpec | None = None
    calibration: tuple[CalibrationSpec, ...] = ()
    align: AlignSpec | None = None  # safety-tune each base model first (pipeline/align.py)
    output_dir: str = "out"


def _build(cls: type, raw: dict[str, Any] | None, where: str) -> Any:
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        if isinstance(value, list):
            raw[key] = tuple(value)
        elif isinstance(value, str) and "float" in str(hints[key]):
            raw[key] = float(value)  # YAML reads 2e-5 (no dot) as a string
    return cls(**raw)


def load_config(path: str | Path) -> SweepConfig:
    """Read and check a sweep YAML; relative data paths are taken from the file's folder's
    project root (the current directory)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the sweep config: {err}") from err
    return config_from_dict(raw, str(path))


def _train(raw: dict[str, Any] | None, where: str) -> TrainSettings:
    train = dict(raw or {})
    lora = _build(LoraSettings, train.pop("lora", None), f"{where}.lora")
    return _build(TrainSettings, {**train, "lora": lora}, where)


def _align(raw: dict[str, Any] | None, where: str) -> AlignSpec | None:
    if not raw:
        return None
    raw = dict(raw)
    return _build(AlignSpec, {
        **raw, "train": _train(raw.get("train"), f"{where}: align.train"),
        "data": [_build(DataSpec, d, f"{where}: align.data") for d in raw.get("data", [])]},
        f"{where}: align")


def config_from_dict(raw: dict[str, Any], where: str = "config") -> SweepConfig:
    raw = dict(raw)
    return _build(SweepConfig, {
        **raw,
        "train": _train(raw.get("train"), f"{where}: train"),
        "align": _align(raw.get("align"), where),
        "datasets": [_build(DataSpec, d, f"{where}: datasets") for d in raw.get("datasets", [])],
        "benchmarks": [_build(BenchmarkSpec, b, f"{where}: benchmarks")
                       for b in raw.get("benchmarks", [])],
        "generation": _build(GenerationSettings, raw.get("generation"), f"{where}: generation"),
        "judges": [_build(JudgeConfig, j, f"{where}: judges")
                   for j in raw.get("judges", [{"name": "refusal"}])],
        "calibration": [_build(CalibrationSpec, c, f"{where}: calibration")
                        for c in raw.get("calibration", [])],
        "capability": (_build(CapabilitySpec, raw["capability"], f"{where}: capability")
                       if raw.get("capability") else None),
    }, where)
