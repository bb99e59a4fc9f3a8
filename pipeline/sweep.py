"""A sweep: the whole experiment of Fraser et al. 2025 as one resumable script.

    (import the `calibration:` sets: answers labelled by people, judged with everything else)
    for each base model:   (safety-tune it first when the config has an `align:` section)
                           epoch 0 = the base itself: generate, judge, measure capability
      for each data set x seed:   fine-tune (a checkpoint per epoch), then for each checkpoint:
                                  generate, judge, measure capability
    for each endpoint:     its served checkpoints: generate, judge, measure capability

Every stage skips what the store already holds, so a sweep killed at any point and started again
finishes the same work without redoing or duplicating anything. Results land checkpoint by
checkpoint, so the app's dashboard fills up while the sweep runs.

    python run.py sweep configs/demo.yaml
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.importers import import_labelled_responses
from annotations.records import Checkpoint, Prompt, PromptKind, Run, stable_id
from annotations.store import Store
from pipeline.align import align
from pipeline.benchmarks import load_benchmark
from pipeline.capability import (CapabilityMetric, evaluate_capability, measure_checkpoint,
                                 measure_tasks, measured, missing_metrics)
from pipeline.config import BenchmarkSpec, DataSpec, EndpointSpec, JudgeConfig, SweepConfig
from pipeline.endpoint import generate_endpoint, measure_endpoint_capability, register
from pipeline.finetune import finetune, package_versions
from pipeline.engine import EngineKind, Request, choose_engine, close_shared, shared_engine
from pipeline.servable import EngineUnavailable, check_servable, engine_rank
from pipeline.generate import AdapterSwitcher, generate_all, generate_checkpoint, sample_batch
from pipeline.goal import GoalCheck
from pipeline.instructions import load_instructions
from pipeline.judge import judge_store
from pipeline.judges import takes
from pipeline.score import score_generations
from pipeline.models import LoadOptions, chat_prompt, load_model
from pipeline.tasks import task_sets

CAPABILITY_BENCHMARK = "capability-heldout"
log = logging.getLogger(__name__)


@dataclass
class SweepSummary:
    checkpoints: int = 0
    generations_added: int = 0
    verdicts_added: int = 0
    scores_added: int = 0
    not_answered: int = 0  # endpoint requests that failed: asked again on the next run
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoints": self.checkpoints, "generations_added": self.generations_added,
                "verdicts_added": self.verdicts_added, "scores_added": self.scores_added,
                "not_answered": self.not_answered,
                "seconds": round(self.seconds, 1),
                "stages": {k: round(v, 1) for k, v in self.stages.items()}}


def subsample(prompts: Sequence[Prompt], n: int | None, seed: int) -> list[Prompt]:
    """`n` prompts spread evenly over categories (round robin over shuffled categories)."""
    if n is None or n >= len(prompts):
        return list(prompts)
    rng = random.Random(seed)
    by_cat: dict[str, list[Prompt]] = defaultdict(list)
    for p in sorted(prompts, key=lambda p: p.id):
        by_cat[p.category_id or ""].append(p)
    for group in by_cat.values():
        rng.shuffle(group)
    order = sorted(by_cat)
    rng.shuffle(order)
    picked: list[Prompt] = []
    while len(picked) < n:
        for cat in order:
            if by_cat[cat] and len(picked) < n:
                picked.append(by_cat[cat].pop())
    return picked


def benchmark_prompts(specs: Sequence[BenchmarkSpec]) -> list[Prompt]:
    prompts: list[Prompt] = []
    for spec in specs:
        loaded = load_benchmark(spec.shape, spec.path, name=spec.name, columns=spec.columns)
        prompts += subsample(loaded, spec.n, spec.seed)
    return prompts


def capability_prompts(config: SweepConfig) -> list[Prompt]:
    spec = config.capability
    if spec is None:
        return []
    pairs = load_instructions(spec.shape, spec.path, n=spec.n, seed=spec.seed)
    return [Prompt(benchmark=CAPABILITY_BENCHMARK, kind=PromptKind.CAPABILITY, source_id=p.id,
                   text=f"{p.instruction}\n\n{p.context}" if p.context else p.instruction,
                   reference=p.response, category=p.category) for p in pairs]


def self_generated(switcher: AdapterSwitcher, base: str, pairs: Sequence[Any], out: Path,
                   max_new_tokens: int, batch_size: int) -> list[Any]:
    """The paper's control: the same instructions answered by the base model itself (greedy),
    cached beside the sweep's outputs so they are generated once."""
    cache = out / f"self-generated-{stable_id(base, [p.id for p in pairs], max_new_tokens)}.json"
    if cache.exists():
        answers = json.loads(cache.read_text())
    else:
        tok, answers = switcher.tokenizer, {}
        with switcher.use(Checkpoint(base_model=base)) as model:
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start:start + batch_size]
                texts = [chat_prompt(tok, f"{p.instruction}\n\n{p.context}" if p.context
                                     else p.instruction) for p in chunk]
                for p, (text, _, _) in zip(chunk, sample_batch(model, tok, texts, 0.0,
                                                               max_new_tokens, seed=0)):
                    answers[p.id] = text
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(answers))
    return [dataclasses.replace(p, response=answers[p.id]) for p in pairs]


class Sweep:
    """Runs one SweepConfig against one store."""

    def __init__(self, store: Store, config: SweepConfig, progress: bool = True):
        self.store, self.config, self.progress = store, config, progress
        self.out = Path(config.output_dir)
        self.summary = SweepSummary()
        self.judges: dict[str, Any] = {}  # judge id -> loaded judge, reused across checkpoints
        self.judge_configs = list(config.judges)  # and a trained judge, when the config has one

    def run(self) -> SweepSummary:
        start = time.perf_counter()
        self.prompts = self._timed("prompts", benchmark_prompts, self.config.benchmarks)
        self.capability = capability_prompts(self.config)
        self.tasks = task_sets(self.config.tasks)  # the user's own capability tasks
        with self.store.batch() as tx:
            tx.upsert_prompts(self.prompts + self.capability)
        for spec in self.config.calibration:  # idempotent: a second import adds nothing
            self._timed("calibration", import_labelled_responses, self.store, spec.path,
                        source=spec.source, columns=spec.columns, label_values=spec.label_values,
                        random_sample=spec.random_sample)
        if self.config.train_judge is not None:
            self._trained_judge(self.config.train_judge)
        for base in self.config.base_models:
            if self.config.align is not None:
                base = self._timed("align", align, base, self.config.align, self.progress)
            self._base_model(base)
        for endpoint in self.config.endpoints:
            self._endpoint(endpoint)
        for scorer in self.config.scorers:  # every answer, once the judging is done
            self.summary.scores_added += self._timed(
                "score", score_generations, self.store, scorer.name, dict(scorer.args),
                progress=self.progress).scored
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _trained_judge(self, spec: Any) -> None:
        """Train the judge on the calibration labels' training split (once: the adapter is kept
        in the output folder) and judge with it beside the config's judges; the judge stage
        stores none of its verdicts on the answers it was trained on."""
        from pipeline.train_judge import judge_args, trained_adapter

        adapter = self._timed("train-judge", trained_adapter, self.store, spec,
                              self.out / "judge", self.progress)
        self.judge_configs.append(JudgeConfig("llm", judge_args(spec, adapter)))

    def _timed(self, stage: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.summary.stages[stage] += time.perf_counter() - start

    def _base_model(self, base: str) -> None:
        model, tokenizer = self._timed("load", load_model, base, LoadOptions())
        switcher = AdapterSwitcher(model, tokenizer)
        base_checkpoint = Checkpoint(base_model=base)
        self.store.upsert_checkpoint(base_checkpoint)
        engine = self._engine(base)
        if engine == EngineKind.HF:  # checkpoint by checkpoint: results land as each is done
            self._evaluate(switcher, base_checkpoint)
            for run, pairs in self._runs(switcher, base):
                for checkpoint in self._timed("finetune", finetune, self.store, run, pairs,
                                              self.config.train, self.out, self.progress,
                                              goal=self._goal_check()):
                    self._evaluate(switcher, checkpoint)
            return
        # vLLM: train every run first, then one engine answers for every checkpoint at once
        checkpoints = [base_checkpoint]
        for run, pairs in self._runs(switcher, base):
            checkpoints += self._timed("finetune", finetune, self.store, run, pairs,
                                       self.config.train, self.out, self.progress,
                                       goal=self._goal_check())
        try:
            answers: dict[str, dict[str, list[str]]] = {}
            if not self._generate_vllm(base, checkpoints):
                for checkpoint in checkpoints:
                    self.summary.generations_added += self._timed(
                        "generate", generate_checkpoint, self.store, switcher, checkpoint,
                        self.prompts, self.config.generation, self.progress)
            else:
                answers = self._timed("capability", self._capability_answers, base,
                                      checkpoints)
            for checkpoint in checkpoints:  # an LLM judge of this base model shares its engine
                self._evaluate(switcher, checkpoint, generate=False,
                               answers=answers.get(checkpoint.id))
        finally:  # judges built on this base model's engines go with them
            close_shared()
            self.judges.clear()

    def _goal_check(self) -> GoalCheck | None:
        """How a run measures its capability goal in-process: the goal's metric on the
        capability hold-out, or on the task set the goal names (stored under the same benchmark
        as the capability stage stores it, so each value is measured once)."""
        goal = self.config.train.until
        if goal is None:
            return None
        if goal.tasks is None:
            spec = self.config.capability
            if spec is None or not self.capability:
                raise ValueError("train.until needs the `capability:` hold-out to measure its "
                                 "goal (or `tasks:` naming one of the sweep's task sets)")
            items, benchmark = self.capability, CAPABILITY_BENCHMARK
            tokens, batch = spec.max_new_tokens, spec.batch_size
        else:
            task = next((t for t in self.tasks if t.name == goal.tasks), None)
            if task is None:
                raise ValueError(f"train.until.tasks: no task set named {goal.tasks!r} (the "
                                 f"sweep's: {', '.join(t.name for t in self.tasks) or 'none'})")
            items, benchmark = list(task.items), task.name
            tokens, batch = task.max_new_tokens, task.batch_size

        def measure(model: Any, tokenizer: Any) -> float:
            return evaluate_capability(model, tokenizer, CapabilityMetric(goal.metric), items,
                                       max_new_tokens=tokens, batch_size=batch)

        return GoalCheck(goal, benchmark, len(items), measure)

    def _engine(self, base: str) -> EngineKind:
        """The engine for this base model, checked before any work: a model or adapter rank
        vLLM cannot serve stops here, or falls back to hf where the config allows."""
        engine = choose_engine(self.config.engine, self.config.engine_fallback)
        if engine != EngineKind.VLLM:
            return engine
        try:
            check_servable(base, self.config.train.lora.r if self.config.datasets else None,
                           self.config.max_lora_rank)
        except EngineUnavailable as err:
            if not self.config.engine_fallback:
                raise
            log.warning("%s; generating with hf instead, as the config allows", err)
            return EngineKind.HF
        return engine

    def _runs(self, switcher: AdapterSwitcher, base: str) -> Iterator[tuple[Run, list[Any]]]:
        for data in self.config.datasets:
            pairs = self._pairs(switcher, base, data)
            for seed in self.config.seeds:
                yield Run(base_model=base, dataset=data.name + ("+self" if data.self_generated
                                                                 else ""), seed=seed,
                          hyperparameters={**self.config.train.hyperparameters(),
                                           "data": dataclasses.asdict(data)},
                          versions=package_versions()), pairs

    def _generate_vllm(self, base: str, checkpoints: list[Checkpoint]) -> bool:
        """Every checkpoint's missing answers through one vLLM engine; False when vLLM cannot
        serve this model and the config allows falling back to hf (said in the log)."""
        start = time.perf_counter()
        try:
            rank = engine_rank([c.adapter_path for c in checkpoints], self.config.max_lora_rank)
            engine = self._timed("engine start", shared_engine, base, max_lora_rank=rank,
                                 dtype=self.config.engine_dtype)
        except EngineUnavailable as err:
            if not self.config.engine_fallback:
                raise
            log.warning("%s; generating with hf instead, as the config allows", err)
            return False
        self.summary.generations_added += self._timed(
            "generate", generate_all, self.store, engine, checkpoints, self.prompts,
            self.config.generation, self.progress)
        log.info("vllm generation stage: %.0f s", time.perf_counter() - start)
        return True

    def _capability_answers(self, base: str, checkpoints: list[Checkpoint]
                            ) -> dict[str, dict[str, list[str]]]:
        """The greedy answers each checkpoint still needs (the hold-out's, each QA task set's)
        through the engine, by checkpoint id and benchmark (the reference loss and the
        multiple-choice log-likelihoods are still computed with transformers)."""
        wanted = {c.id: self._answer_sets(c) for c in checkpoints}
        keys = [(c, name, text) for c in checkpoints
                for name, (texts, _) in wanted[c.id].items() for text in texts]
        if not keys:
            return {}
        engine = shared_engine(base)
        requests = [Request(str(k), chat_prompt(engine.tokenizer, text), c.adapter_path, 0.0,
                            wanted[c.id][name][1], 0) for k, (c, name, text) in enumerate(keys)]
        texts = {a.id: a.text for call in engine.generate(requests) for a in call}
        answers: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for k, (c, name, _) in enumerate(keys):  # in question order within each set
            answers[c.id][name].append(texts[str(k)])
        return answers

    def _answer_sets(self, checkpoint: Checkpoint) -> dict[str, tuple[list[str], int]]:
        """By benchmark, the requests whose greedy answers `checkpoint` still needs, and how
        many new tokens an answer may have."""
        sets = {}
        if self.capability and not measured(self.store, checkpoint, self.capability,
                                            CAPABILITY_BENCHMARK):
            sets[CAPABILITY_BENCHMARK] = ([p.text for p in self.capability],
                                          self.config.capability.max_new_tokens)
        for task in self.tasks:
            if any(m.generates for m in missing_metrics(self.store, checkpoint, task)):
                sets[task.name] = ([item.question for item in task.items], task.max_new_tokens)
        return sets

    def _pairs(self, switcher: AdapterSwitcher, base: str, data: DataSpec) -> list[Any]:
        pairs = load_instructions(data.shape, data.path, n=data.n, seed=data.seed) * data.repeat
        if data.self_generated:
            gen = self.config.generation
            pairs = self._timed("self_generated", self_generated, switcher, base, pairs, self.out,
                                self.config.train.max_length, gen.batch_size)
        return pairs

    def _evaluate(self, switcher: AdapterSwitcher, checkpoint: Checkpoint,
                  generate: bool = True, answers: dict[str, list[str]] | None = None) -> None:
        """Generate, judge and measure capability; `answers`: greedy capability answers by
        benchmark, when an engine already drew them."""
        self.summary.checkpoints += 1
        if generate:
            self.summary.generations_added += self._timed(
                "generate", generate_checkpoint, self.store, switcher, checkpoint, self.prompts,
                self.config.generation, self.progress)
        self._judge()
        if self.capability:
            spec = self.config.capability
            self._timed("capability", measure_checkpoint, self.store, switcher, checkpoint,
                        self.capability, CAPABILITY_BENCHMARK, spec.max_new_tokens,
                        spec.batch_size, (answers or {}).get(CAPABILITY_BENCHMARK))
        if self.tasks:
            self._timed("capability", measure_tasks, self.store, switcher, checkpoint,
                        self.tasks, answers)

    def _endpoint(self, endpoint: EndpointSpec) -> None:
        served = register(self.store, endpoint)
        self.summary.checkpoints += len(served)
        result = self._timed("generate", generate_endpoint, self.store, endpoint, served,
                             self.prompts, self.config.generation, self.progress)
        self.summary.generations_added += result.added
        self.summary.not_answered += result.failures
        self._judge()
        if self.tasks:
            log.warning("endpoint %s: task sets are not measured on served checkpoints (no "
                        "log-likelihoods over a chat API)", endpoint.name)
        if self.capability:
            for item in served:
                self._timed("capability", measure_endpoint_capability, self.store, endpoint,
                            item, self.capability, CAPABILITY_BENCHMARK,
                            self.config.capability.max_new_tokens)

    def _judge(self) -> None:
        """Every judge over every answer it has not judged yet."""
        for judge in self.judge_configs:
            args = dict(judge.args)
            if takes(judge.name, "engine"):  # the sweep's engine setting, unless the judge's own
                args.setdefault("engine", self.config.engine)
                args.setdefault("engine_fallback", self.config.engine_fallback)
                args.setdefault("engine_dtype", self.config.engine_dtype)
            result = self._timed("judge", judge_store, self.store, judge.name, args,
                                 progress=self.progress, loaded=self.judges)
            self.summary.verdicts_added += result.judged


def run_sweep(store: Store, config: SweepConfig, progress: bool = True) -> SweepSummary:
    return Sweep(store, config, progress).run()
