"""The value checks of a sweep config's settings, by field name: each takes the converted value
and returns what is wrong with it in a few words, or None. `check` runs the one a field has
(`Class.field` first, then the bare field name) on a value or on each item of a tuple.

The checks that need a stage's own registry (judges, scorers, shapes, engines) import it when
they run, so reading a config stays quick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import JudgeConfig, ScorerConfig, ServedCheckpoint, TaskSpec

BAD = object()  # a value that failed its conversion or check; the problem is already recorded


def shown(value: Any) -> str:
    """A value as a problem names it: short, and a mapping or list by its kind."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}, got {v!r}"


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be > 0, got {v!r}"


def _fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else f"must be at least 0 and below 1, got {v!r}"


def _not_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _engine_dtype(v: str) -> str | None:
    known = ("auto", "float32", "bfloat16", "float16")
    return None if v in known else f"must be one of {', '.join(known)} or null, got {v!r}"


def _engine(v: str) -> str | None:
    from pipeline.engine import EngineKind

    known = [k.value for k in EngineKind]
    return None if v in known else f"must be one of {', '.join(known)}, got {v!r}"


def _base_url(v: str) -> str | None:
    from pipeline.http_client import check_base_url

    return check_base_url(v)


def _served(v: ServedCheckpoint) -> str | None:
    if (v.dataset is None) != (v.seed is None):
        return "a fine-tuned checkpoint needs both its dataset and its seed (the base neither)"
    if (v.dataset is None) != (v.epoch == 0):
        return ("epoch 0 is the base model (no dataset, no seed); a fine-tuned checkpoint's "
                "epoch is 1 or more")
    return None


def _quantization(v: str) -> str | None:
    from pipeline.models import QUANTIZATIONS

    known = [q for q in QUANTIZATIONS if q]
    return None if v in known else f"must be one of {', '.join(known)} or null, got {v!r}"


def _benchmark_shape(v: str) -> str | None:
    from pipeline.benchmarks import BENCHMARK_LOADERS

    if v.strip().lower().replace("_", "-") in BENCHMARK_LOADERS:
        return None
    return f"unknown benchmark shape {v!r} (known: {', '.join(BENCHMARK_LOADERS)})"


def _judge(judge: JudgeConfig) -> str | None:
    """The judge is registered and takes the arguments given (what its spec would record)."""
    from pipeline.judges import judge_spec

    try:
        judge_spec(judge.name, **judge.args)
    except (ValueError, OSError) as err:
        return str(err)
    return None


def _scorer(scorer: ScorerConfig) -> str | None:
    """The scorer is registered and takes the arguments given."""
    from pipeline.scorers import scorer_spec

    try:
        scorer_spec(scorer.name, **scorer.args)
    except (ValueError, TypeError, OSError) as err:
        return str(err)
    return None


def _data_shape(v: str) -> str | None:
    from pipeline.instructions import SHAPES

    if v.strip().lower() in SHAPES:
        return None
    return f"unknown instruction data shape {v!r} (known: {', '.join(SHAPES)})"


def _metric(v: str) -> str | None:
    from annotations.records import CapabilityMetric

    known = [m.value for m in CapabilityMetric]
    return None if v in known else f"unknown capability metric {v!r} (known: {', '.join(known)})"


def _finite(v: float) -> str | None:
    return None if v == v and abs(v) != float("inf") else f"must be a finite number, got {v!r}"


def _task_shape(v: str) -> str | None:
    from pipeline.tasks import TaskShape

    try:
        shape = TaskShape.parse(v)
    except ValueError as err:
        return str(err)
    return None if shape is not TaskShape.HELDOUT else (
        "heldout is the `capability:` section's instruction set; a task set is qa or "
        "multiple_choice")


def _task_name(v: str) -> str | None:
    if v.strip() == "capability-heldout":  # pipeline.sweep.CAPABILITY_BENCHMARK
        return "capability-heldout is the `capability:` hold-out's name; choose another"
    return _not_empty(v)


def _task(spec: TaskSpec) -> str | None:
    """Each metric asked for can be measured on the task set's shape."""
    from annotations.records import CapabilityMetric
    from pipeline.tasks import TaskShape, task_shape

    if _task_shape(spec.shape) is not None:
        return None  # said already, under `shape`
    shape = TaskShape.parse(spec.shape)
    wrong = [m for m in spec.metrics if _metric(m) is None
             and task_shape(m) is not shape]
    if not wrong:
        return None
    return (f"{', '.join(wrong)} cannot be measured on a {shape.value} task set (its metrics: "
            f"{', '.join(m.value for m in CapabilityMetric if task_shape(m) is shape)})")


# sbatch settings the workbench sets itself, from the executor section or the job plan
SBATCH_OWN = {"dependency": "the plan's dependencies", "job_name": "the job's name",
              "partition": "executor.slurm.partition", "time": "executor.time_min",
              "gpus_per_node": "executor.gpus", "gres": "executor.gpus",
              "cpus_per_task": "executor.cpus", "mem": "executor.mem_gb",
              "output": "executor.folder", "error": "executor.folder"}


def _sbatch(settings: dict[str, Any]) -> str | None:
    """Other sbatch settings: scalars, none of those the workbench sets."""
    for key, value in settings.items():
        own = SBATCH_OWN.get(str(key).replace("-", "_"))
        if own is not None:
            return f"{key} is set by the workbench (from {own})"
        if isinstance(value, (dict, list)) or value is None:
            return f"{key}: expected a value (text, a number or true), got {shown(value)}"
    return None


def _cluster(v: str) -> str | None:
    known = ("slurm", "local")
    return None if v in known else f"must be one of {', '.join(known)}, got {v!r}"


def _gpus_by_kind(v: dict[str, Any]) -> str | None:
    from annotations.records import JobKind

    known = [k.value for k in JobKind]
    for kind, gpus in v.items():
        if kind not in known:
            return f"{kind!r} is not a kind of job (known: {', '.join(known)})"
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            return f"{kind}: expected a whole number of GPUs (0 or more), got {shown(gpus)}"
    return None


COUNT = _at_least(1)
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "epochs": COUNT, "batch_size": COUNT, "micro_batch_size": COUNT, "max_length": COUNT,
    "r": COUNT, "samples": COUNT, "max_new_tokens": COUNT, "n": COUNT, "repeat": COUNT,
    "seed": _at_least(0), "seeds": _at_least(0), "temperatures": _at_least(0),
    "learning_rate": _positive, "alpha": _positive, "dropout": _fraction,
    "warmup_ratio": _fraction, "name": _not_empty, "quantization": _quantization,
    "BenchmarkSpec.path": _not_empty, "CalibrationSpec.path": _not_empty,
    "BenchmarkSpec.shape": _benchmark_shape, "DataSpec.shape": _data_shape,
    "CapabilitySpec.shape": _data_shape, "SweepConfig.judges": _judge,
    "SweepConfig.scorers": _scorer,
    "TaskSpec.name": _task_name, "TaskSpec.path": _not_empty, "TaskSpec.shape": _task_shape,
    "TaskSpec.metrics": _metric, "SweepConfig.tasks": _task,
    "SweepConfig.engine": _engine, "engine_dtype": _engine_dtype, "max_lora_rank": COUNT,
    "base_url": _base_url,
    "EndpointSpec.checkpoints": _served, "concurrency": COUNT, "max_retries": _at_least(0),
    "timeout": _positive, "ServedCheckpoint.epoch": _at_least(0),
    "CapabilityGoal.metric": _metric, "CapabilityGoal.target": _finite,
    "CapabilityGoal.every": COUNT,
    "ExecutorSpec.gpus": _at_least(0), "ExecutorSpec.cpus": COUNT, "mem_gb": _positive,
    "time_min": COUNT, "gpus_by_kind": _gpus_by_kind, "SlurmSpec.cluster": _cluster,
    "SlurmSpec.partition": _not_empty, "sbatch": _sbatch, "RaySpec.address": _not_empty,
    "ExecutorSpec.folder": _not_empty,
}


def check(cls: type, name: str, value: Any, where: str, problems: list[str]) -> None:
    """Record what is wrong with `value`, the setting `name` of `cls` at `where`, if anything."""
    rule = CHECKS.get(f"{cls.__name__}.{name}") or CHECKS.get(name)
    if rule is None or value is None or value is BAD:
        return
    items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
    for i, item in items:
        said = rule(item)
        if said is not None:
            problems.append(f"{where}{'' if i is None else f'[{i}]'}: {said}")
