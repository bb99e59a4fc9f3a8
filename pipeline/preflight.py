"""Before a sweep writes anything: read every file and find every model its config names
(`check_inputs`), so a bad input stops it with the store untouched. No model is loaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.config import CalibrationSpec, SweepConfig


def check_inputs(config: SweepConfig) -> None:
    """Read every file and find every model `config` needs, before the sweep writes anything,
    so that a bad input stops it with the store untouched. No model is loaded or converted."""
    from pipeline.benchmarks import load_benchmark
    from pipeline.instructions import load_instructions
    from pipeline.tasks import task_sets

    for spec in config.benchmarks:
        load_benchmark(spec.shape, spec.path, name=spec.name, columns=spec.columns)
    for data in config.datasets + (config.align.data if config.align else ()):
        load_instructions(data.shape, data.path, n=data.n, seed=data.seed)
    if config.capability is not None:
        load_instructions(config.capability.shape, config.capability.path)
    task_sets(config.tasks)
    _check_calibration(config.calibration)
    _check_models(config)


def _check_models(config: SweepConfig) -> None:
    from pipeline.models import check_available

    for base in config.base_models:
        check_available(base)
    for judge in config.judges:
        check_judge_model(judge.name, judge.args)


def check_judge_model(name: str, args: Mapping[str, Any]) -> None:
    """A local judge's model (llm, guard) can be loaded here (found, not loaded), and its
    adapter, when it has one, is a folder with LoRA weights."""
    from pipeline.models import check_available

    if name in ("llm", "guard") and isinstance(args.get("model"), str):
        check_available(args["model"])
    adapter = args.get("adapter")
    if adapter and not (Path(str(adapter)) / "adapter_model.safetensors").is_file():
        raise ValueError(f"judge {name}: adapter {adapter!r} is not a LoRA adapter folder (no "
                         "adapter_model.safetensors there)")


def _check_calibration(specs: Sequence[CalibrationSpec]) -> None:
    """Each labelled file imported into a scratch store in memory: the import's own checks."""
    if not specs:
        return
    from annotations.importers import import_labelled_responses
    from annotations.store import Store

    scratch = Store.open("sqlite://")
    try:
        for spec in specs:
            import_labelled_responses(scratch, spec.path, source=spec.source,
                                      columns=spec.columns, label_values=spec.label_values,
                                      random_sample=spec.random_sample)
    finally:
        scratch.close()
