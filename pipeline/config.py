"""A sweep's settings: one YAML file read into small frozen dataclasses, checked field by field.

Everything a sweep does is named here (base models, training data, seeds, epochs, LoRA and
quantization settings, benchmarks, temperatures, samples, judges, the capability hold-out), so a
sweep can be re-run, resumed or shared as one file. See configs/ for commented examples.

Every problem in a file is reported at once, each named by its path and what was expected, in one
`ConfigError` whose message is one line:

    sweep.yaml: train.learning_rate: expected a number, got 'fast'; name: missing (required)

`pipeline.preflight.check_inputs` then reads every file and finds every model the sweep will use,
so a bad input stops a sweep before it writes anything.
"""

from __future__ import annotations

import difflib
import importlib
import types
import typing
from collections.abc import Callable, Hashable, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.config_checks import BAD, check, shown

if TYPE_CHECKING:
    from pipeline.align import AlignSpec
    from pipeline.finetune import TrainSettings
    from pipeline.generate import GenerationSettings
    from pipeline.train_judge import JudgeTraining

# Sections whose classes live with their stage. They are imported only when a config has the
# section, or when a SweepConfig is made: the training stack takes about 9 s to import, and a
# config with a typo elsewhere should say so at once.
SECTIONS = {"train": "pipeline.finetune:TrainSettings",
            "generation": "pipeline.generate:GenerationSettings",
            "align": "pipeline.align:AlignSpec",
            "train_judge": "pipeline.train_judge:JudgeTraining"}
OPTIONAL_SECTIONS = ("align", "train_judge")  # absent: the stage does not run
MAX_PROBLEMS = 10


class ConfigError(ValueError):
    """A sweep config that cannot be used; the message names every problem on one line."""


def section_class(name: str) -> type:
    module, _, attr = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _default(name: str) -> Callable[[], Any]:
    return lambda: section_class(name)()


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
class ScorerConfig:
    """A scorer (pipeline/scorers: a number per answer, not a verdict) run over every answer at
    the sweep's end, e.g. `{name: base-loss, args: {model: smollm2}}` (incoherence)."""

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
class TaskSpec:
    """A capability task set of the user's own (pipeline/tasks.py): a `qa` or `multiple_choice`
    file, measured on every checkpoint and stored under `name` with each of `metrics` (none
    given: every metric of the shape: exact_match and contains, or choice_accuracy and
    choice_accuracy_norm)."""

    name: str
    path: str
    shape: str = "qa"
    n: int | None = None  # seeded subsample, in file order
    seed: int = 0
    metrics: tuple[str, ...] = ()
    max_new_tokens: int = 32  # greedy answers to qa questions
    batch_size: int = 16
    columns: str | None = None  # renames, `question=query,answers=aliases`


@dataclass(frozen=True)
class ServedCheckpoint:
    """A checkpoint an endpoint serves, under the endpoint's name `model`: the base (epoch 0,
    no dataset) or an epoch of a fine-tuning run on `dataset` with `seed`."""

    model: str
    epoch: int = 0
    dataset: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class EndpointSpec:
    """Checkpoints that live at an OpenAI-compatible endpoint (`vllm serve --enable-lora`,
    SGLang, Ollama, a hosted fine-tuning API): generated, judged and analysed like local ones.
    `name` is the base model's name in the store; see pipeline/endpoint.py."""

    name: str
    base_url: str
    checkpoints: tuple[ServedCheckpoint, ...] = ()
    api_key_env: str | None = None  # the variable holding the API key, if one is needed
    concurrency: int = 8  # requests in flight at once
    max_retries: int = 5
    timeout: float = 120.0
    backoff: float = 1.0
    max_backoff: float = 30.0


@dataclass(frozen=True)
class SlurmSpec:
    """Where `--executor slurm` submits each job (through submitit: one sbatch job per job, its
    dependencies as `afterok`)."""

    partition: str | None = None
    cluster: str = "slurm"  # submitit's: slurm, or local (subprocesses here, for tests)
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other sbatch setting: account, qos


@dataclass(frozen=True)
class RaySpec:
    """Where `--executor ray` runs the jobs: a running Ray cluster, or (no address) one started
    on this machine for the sweep."""

    address: str | None = None  # e.g. auto, or ray://head:10001


@dataclass(frozen=True)
class ExecutorSpec:
    """What each job of a sweep asks a scheduler for (`run.py sweep --executor slurm|ray`;
    the local executor ignores it). Jobs that run no model (the prepare job unless it trains a
    judge, an endpoint's evaluation) ask for no GPU; `gpus_by_kind` overrides by kind."""

    gpus: int = 1
    cpus: int | None = None
    mem_gb: float | None = None
    time_min: int = 24 * 60  # a job's time limit
    gpus_by_kind: dict[str, int] = field(default_factory=dict)  # e.g. {score: 0}
    folder: str | None = None  # submitit's logs and pickles; default: output_dir/jobs (shared)
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    ray: RaySpec = field(default_factory=RaySpec)


@dataclass(frozen=True)
class SweepConfig:
    name: str
    base_models: tuple[str, ...] = ("smollm2",)
    datasets: tuple[DataSpec, ...] = ()
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    train: TrainSettings = field(default_factory=_default("train"))
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    generation: GenerationSettings = field(default_factory=_default("generation"))
    judges: tuple[JudgeConfig, ...] = (JudgeConfig("refusal"),)
    scorers: tuple[ScorerConfig, ...] = ()  # per-answer scores (incoherence, toxicity)
    capability: CapabilitySpec | None = None
    tasks: tuple[TaskSpec, ...] = ()  # the user's own capability tasks (qa, multiple choice)
    calibration: tuple[CalibrationSpec, ...] = ()
    align: AlignSpec | None = None  # safety-tune each base model first (pipeline/align.py)
    # train a judge on the calibration labels' training split, judge with it too
    # (pipeline/train_judge.py)
    train_judge: JudgeTraining | None = None
    # Adapters, checkpoints and cached answers. Run as jobs on a cluster, every worker reads and
    # writes it: a path shared by every node, as the store is.
    output_dir: str = "out"
    # Generation and local LLM judges: auto (vllm where installed, else hf), vllm or hf; with
    # engine_fallback, vllm that cannot run here falls back to hf (said in the log).
    engine: str = "auto"
    engine_fallback: bool = False
    # The vLLM engine's dtype: none is float32 on CPU (answers equal to hf's) and the model's own
    # on a GPU; bfloat16 on a CPU with AMX or AVX512-BF16 is faster, its answers not identical.
    engine_dtype: str | None = None
    max_lora_rank: int = 64  # the vLLM engine's largest adapter rank
    endpoints: tuple[EndpointSpec, ...] = ()  # checkpoints served elsewhere (see above)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)  # resources of each job


# ----- reading the file ---------------------------------------------------------------------

def load_config(path: str | Path) -> SweepConfig:
    """Read and check a sweep YAML; relative data paths are taken from the current directory
    (the project root)."""
    path = Path(path)
    raw = _read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty (a sweep config needs at least `name:`)")
    return config_from_dict(raw, str(path))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the sweep config ({err.strerror or err})") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: builds no objects
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from None


def _yaml_problem(path: Path, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    problem = getattr(err, "problem", None) or "a YAML syntax error"
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start and (mark is None or start.line != mark.line):
        problem += f"; {context} at line {start.line + 1}"  # e.g. where a bracket was opened
    return f"{where}: not valid YAML ({problem})"


class UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one
    quietly, so a second `train:` would silently replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key, Hashable):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# ----- checking the settings ----------------------------------------------------------------

def config_from_dict(raw: Any, where: str = "config") -> SweepConfig:
    """A checked SweepConfig from the YAML's data; raises ConfigError naming every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        problems.append(f"expected a mapping of settings (name: ..., base_models: ...), "
                        f"got {shown(raw)}")
    else:
        config = _build(SweepConfig, raw, "", problems)
        if config is not BAD:
            problems += _goal_problems(config)
    if problems:
        more = len(problems) - MAX_PROBLEMS
        said = "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise ConfigError(f"{where}: {said}")
    return config


def _goal_problems(config: SweepConfig) -> list[str]:
    """A capability goal can be measured: on the hold-out (then a hold-out metric) or on one of
    the sweep's task sets (then a metric of its shape); only the sweep's own runs take one."""
    from pipeline.tasks import TaskShape, task_shape

    problems = [f"{section}.train.until: only the sweep's fine-tuning trains to a goal"
                for section, spec in (("align", config.align), ("train_judge", config.train_judge))
                if spec is not None and spec.train.until is not None]
    goal = config.train.until
    if goal is None:
        return problems
    if goal.tasks is None:
        if config.capability is None:
            problems.append("train.until: needs the `capability:` hold-out to measure the goal "
                            "on (or `tasks:` naming one of the sweep's task sets)")
        elif task_shape(goal.metric) is not TaskShape.HELDOUT:
            problems.append(f"train.until.metric: {goal.metric} is measured on a task set: "
                            "name it with `tasks:`")
        return problems
    task = next((t for t in config.tasks if t.name == goal.tasks), None)
    if task is None:
        problems.append(f"train.until.tasks: no task set named {goal.tasks!r} "
                        f"(the sweep's: {', '.join(t.name for t in config.tasks) or 'none'})")
    elif task_shape(goal.metric) is not TaskShape.parse(task.shape):
        problems.append(f"train.until.metric: {goal.metric} cannot be measured on {task.name} "
                        f"(a {task.shape} task set)")
    return problems


def _build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    """`cls` from a mapping, each value converted to its field's type and checked."""
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping of settings, got {shown(raw)}")
        return BAD
    start, known = len(problems), {f.name: f for f in fields(cls)}
    hints, values = _hints(cls), {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            problems.append(f"{where}: unknown setting{_did_you_mean(key, known)}")
            continue
        values[key] = _convert(value, _field_type(cls, key, hints), where, problems)
        check(cls, key, values[key], where, problems)
    for name, f in known.items():
        if name not in raw and f.default is MISSING and f.default_factory is MISSING:
            problems.append(f"{path + '.' if path else ''}{name}: missing (required)")
    return cls(**values) if len(problems) == start else BAD


def _hints(cls: type) -> dict[str, Any]:
    if cls is not SweepConfig:
        return typing.get_type_hints(cls)
    # Its sections' names stand in for their classes here; _field_type imports one when needed.
    stand_ins = {spec.rpartition(":")[2]: object for spec in SECTIONS.values()}
    return typing.get_type_hints(cls, localns=stand_ins)


def _field_type(cls: type, name: str, hints: dict[str, Any]) -> Any:
    if cls is SweepConfig and name in SECTIONS:
        section = section_class(name)
        return section | None if name in OPTIONAL_SECTIONS else section
    if cls.__name__ == "JudgeTraining" and name == "train":
        return section_class("train")
    if cls.__name__ == "AlignSpec" and name == "data":  # typed tuple[Any, ...] over there
        return tuple[DataSpec, ...]
    return hints[name]


def _convert(value: Any, hint: Any, where: str, problems: list[str]) -> Any:
    """`value` as `hint` (Optional, tuple, dict, a dataclass or a scalar), or BAD."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        if value is None or (value == {} and is_dataclass(inner)):  # `capability: {}` is none
            return None
        return _convert(value, inner, where, problems)
    if origin is tuple:
        return _items(value, args[0], where, problems)
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        return _problem(problems, where, f"expected a mapping, got {shown(value)}")
    if is_dataclass(hint):
        return _build(hint, value, where, problems)
    return _scalar(value, hint, where, problems)


def _items(value: Any, hint: Any, where: str, problems: list[str]) -> Any:
    """A list's items (one value stands for a list of one; nothing for none)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    converted = tuple(_convert(v, hint, f"{where}[{i}]", problems) for i, v in enumerate(items))
    return BAD if any(v is BAD for v in converted) else converted


def _scalar(value: Any, hint: Any, where: str, problems: list[str]) -> Any:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint is float and number:
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 2e-5 (no dot) as text
        except ValueError:
            pass
    if hint is str and (isinstance(value, str) or number):
        return str(value)
    expected = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    return _problem(problems, where, f"expected {expected.get(hint, hint)}, got {shown(value)}")


def _problem(problems: list[str], where: str, what: str) -> Any:
    problems.append(f"{where}: {what}")
    return BAD


def _did_you_mean(key: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
