"""A sweep: the whole experiment of Fraser et al. 2025, as one resumable process or as jobs.

    (import the `calibration:` sets: answers labelled by people, judged with everything else)
    for each base model:   (safety-tune it first when the config has an `align:` section)
                           epoch 0 = the base itself: generate, judge, measure capability
      for each data set x seed:   fine-tune (a checkpoint per epoch), then for each checkpoint:
                                  generate, judge, measure capability
    for each endpoint:     its served checkpoints: generate, judge, measure capability

Every stage skips what the store already holds, so a sweep killed at any point and started again
finishes the same work without redoing or duplicating anything. Results land checkpoint by
checkpoint, so the app's dashboard fills up while the sweep runs.

The same work is split into jobs (pipeline/jobs.py: prepare, align, train, evaluate, score):
`run_sweep` runs every job of the plan in this process, in the plan's order (the order above);
`run_job` runs one, as a worker on Slurm or Ray does (pipeline/executors.py). Each job records
its state in the store's jobs table: running when it starts, done or failed when it ends.

    python run.py sweep configs/demo.yaml
    python run.py sweep configs/demo.yaml --only train:smollm2/dolly/seed1
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.importers import import_labelled_responses
from annotations.records import Checkpoint, JobKind, Prompt, PromptKind, Run, stable_id
from annotations.store import Store
from pipeline.align import align, aligned_name
from pipeline.benchmarks import load_benchmark
from pipeline.capability import (CapabilityMetric, evaluate_capability, measure_checkpoint,
                                 measure_tasks, measured, missing_metrics)
from pipeline.config import BenchmarkSpec, DataSpec, EndpointSpec, JudgeConfig, SweepConfig
from pipeline.endpoint import generate_endpoint, measure_endpoint_capability, register
from pipeline.finetune import (finetune, finished_epochs, package_versions,
                               recover_checkpoints, run_dir)
from pipeline.engine import EngineKind, Request, choose_engine, close_shared, shared_engine
from pipeline.executors import recorded
from pipeline.servable import EngineUnavailable, check_servable, engine_rank
from pipeline.generate import AdapterSwitcher, generate_all, generate_checkpoint, sample_batch
from pipeline.goal import GoalCheck
from pipeline.instructions import load_instructions
from pipeline.jobs import Job, data_label, plan
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
        write_whole(cache, json.dumps(answers))
    return [dataclasses.replace(p, response=answers[p.id]) for p in pairs]


def write_whole(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a temporary file renamed): a worker killed mid-write
    leaves nothing that the next run would read as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def set_aside_incomplete(folder: Path) -> list[Path]:
    """Remove the checkpoint folders that a killed save left without a readable trainer state
    (the Trainer writes it last): it resumes from the newest `checkpoint-*` folder, whatever
    that holds, and would fail there on every later try. Training then resumes from the last
    whole checkpoint."""
    removed = []
    for path in sorted(Path(folder).glob("checkpoint-*")):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.warning("%s: an incomplete checkpoint (killed while saving?): removed", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class Sweep:
    """Runs one SweepConfig against one store: every job of its plan (`run`), or some
    (`run_jobs`, as a worker does)."""

    def __init__(self, store: Store, config: SweepConfig, progress: bool = True):
        self.store, self.config, self.progress = store, config, progress
        self.out = Path(config.output_dir)
        self.summary = SweepSummary()
        self.judges: dict[str, Any] = {}  # judge id -> loaded judge, reused across checkpoints
        self.judge_configs = list(config.judges)  # and a trained judge, when the config has one
        self.prompts: list[Prompt] = []  # read by `_load_inputs`, before a job's work
        self.capability: list[Prompt] = []
        self.tasks: list[Any] = []
        self._inputs_read = False
        self._judge_added = False  # the trained judge is in judge_configs
        self._loaded: tuple[str, AdapterSwitcher] | None = None  # the model in memory

    def run(self) -> SweepSummary:
        """Every job of the plan here, in the plan's order: results land checkpoint by
        checkpoint. With vLLM, a base model's runs are all trained first and one engine answers
        for all its checkpoints (`_local_steps`)."""
        start = time.perf_counter()
        jobs = plan(self.config)
        self.store.submit_jobs([job.record() for job in jobs])
        for step in self._local_steps(jobs):
            self.run_jobs(step)
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _local_steps(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """The plan's jobs one at a time; with vLLM, each base model's evaluate jobs as one
        step after its last training job."""
        if choose_engine(self.config.engine, self.config.engine_fallback) != EngineKind.VLLM:
            return [[job] for job in jobs]
        steps: list[list[Job]] = []
        held: list[Job] = []  # this base model's evaluations
        for job in jobs:
            if held and job.base != held[0].base:
                steps, held = steps + [held], []
            if job.kind is JobKind.EVALUATE and job.base is not None:
                held.append(job)
            else:
                steps.append([job])
        return steps + [held] if held else steps

    def run_jobs(self, jobs: Sequence[Job]) -> None:
        """These jobs' work here (several only for evaluate jobs of one base model), their
        states recorded in the store."""
        with recorded(self.store, jobs):
            self._load_inputs()
            if jobs[0].kind is JobKind.EVALUATE:
                self._evaluate_jobs(jobs)
                return
            work = {JobKind.PREPARE: self._prepare, JobKind.ALIGN: self._align,
                    JobKind.TRAIN: self._train, JobKind.SCORE: self._score}
            for job in jobs:
                work[job.kind](job)

    def _load_inputs(self) -> None:
        """The prompts, the capability hold-out and the task sets, read from their files (as
        every job does: a worker elsewhere has the files and the store, nothing else)."""
        if self._inputs_read:
            return
        self.prompts = self._timed("prompts", benchmark_prompts, self.config.benchmarks)
        self.capability = capability_prompts(self.config)
        self.tasks = task_sets(self.config.tasks)  # the user's own capability tasks
        self._inputs_read = True

    def _prepare(self, job: Job | None = None) -> None:
        """The prompts into the store, the calibration sets imported, the judge trained."""
        with self.store.batch() as tx:
            tx.upsert_prompts(self.prompts + self.capability)
        for spec in self.config.calibration:  # idempotent: a second import adds nothing
            self._timed("calibration", import_labelled_responses, self.store, spec.path,
                        source=spec.source, columns=spec.columns, label_values=spec.label_values,
                        random_sample=spec.random_sample)
        if self.config.train_judge is not None:
            self._trained_judge(self.config.train_judge)

    def _align(self, job: Job) -> None:
        self._timed("align", align, job.base, self.config.align, self.progress)

    def _model(self, base: str) -> str:
        """The model a base model's jobs work on: itself, or its aligned version (made by its
        align job; other jobs find it in the model cache: on a cluster, a shared one)."""
        return base if self.config.align is None else aligned_name(base, self.config.align)

    def _switcher(self, model: str) -> AdapterSwitcher:
        """`model` loaded, once for all the jobs of it in a row (one model in memory)."""
        if self._loaded is None or self._loaded[0] != model:
            self._loaded = None
            loaded = self._timed("load", load_model, model, LoadOptions())
            self._loaded = (model, AdapterSwitcher(*loaded))
        return self._loaded[1]

    def _train(self, job: Job) -> None:
        model = self._model(job.base)
        self._engine(model)  # a model or adapter rank vLLM cannot serve stops before training
        run, pairs = self._run(model, job)
        set_aside_incomplete(run_dir(self.out, run))
        self._timed("finetune", finetune, self.store, run, pairs, self.config.train, self.out,
                    self.progress, goal=self._goal_check())

    def _run(self, model: str, job: Job) -> tuple[Run, list[Any]]:
        """The fine-tuning run a train or evaluate job is about, and its training pairs."""
        data = next(d for d in self.config.datasets if data_label(d) == job.dataset)
        run = Run(base_model=model, dataset=job.dataset, seed=job.seed,
                  hyperparameters={**self.config.train.hyperparameters(),
                                   "data": dataclasses.asdict(data)},
                  versions=package_versions())
        return run, self._pairs(model, data)

    def _trained(self, job: Job, model: str) -> list[Checkpoint]:
        """The checkpoints of a trained run (recorded from disk where this store lacks them);
        an evaluate job trains nothing."""
        run, pairs = self._run(model, job)
        goal, settings = self._goal_check(), self.config.train
        recover_checkpoints(self.store, run, run_dir(self.out, run), settings, goal, len(pairs))
        done = ((settings.until is not None and self.store.goal(run.id) is not None)
                or finished_epochs(self.store, run) >= set(range(1, settings.epochs + 1)))
        if not done:
            raise ValueError(f"{job.name}: its run is not trained yet (run its train job first)")
        return finetune(self.store, run, pairs, settings, self.out, self.progress, goal=goal)

    def _evaluate_jobs(self, jobs: Sequence[Job]) -> None:
        """Evaluate jobs of one base model (or endpoints): checkpoint by checkpoint with hf;
        with vLLM, one engine answers for all their checkpoints, then each is judged and
        measured."""
        self._use_trained_judge()
        if jobs[0].endpoint is not None:
            for job in jobs:
                self._endpoint(next(e for e in self.config.endpoints if e.name == job.endpoint))
            return
        model = self._model(jobs[0].base)
        checkpoints: list[Checkpoint] = []
        for job in jobs:
            if job.dataset is None:  # the base model itself: epoch 0
                checkpoints.append(Checkpoint(base_model=model))
                self.store.upsert_checkpoint(checkpoints[-1])
            else:
                checkpoints += self._trained(job, model)
        switcher = self._switcher(model)
        if self._engine(model) == EngineKind.HF:  # results land as each checkpoint is done
            for checkpoint in checkpoints:
                self._evaluate(switcher, checkpoint)
            return
        self._evaluate_vllm(model, switcher, checkpoints)

    def _evaluate_vllm(self, base: str, switcher: AdapterSwitcher,
                       checkpoints: list[Checkpoint]) -> None:
        """Every checkpoint's answers through one vLLM engine, then each judged and measured."""
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

    def _score(self, job: Job | None = None) -> None:
        for scorer in self.config.scorers:  # every answer, once the judging is done
            self.summary.scores_added += self._timed(
                "score", score_generations, self.store, scorer.name, dict(scorer.args),
                progress=self.progress).scored

    def _trained_judge(self, spec: Any) -> None:
        """Train the judge on the calibration labels' training split (once: the adapter is kept
        in the output folder) and judge with it beside the config's judges; the judge stage
        stores none of its verdicts on the answers it was trained on."""
        from pipeline.train_judge import judge_args, trained_adapter

        adapter = self._timed("train-judge", trained_adapter, self.store, spec,
                              self.out / "judge", self.progress)
        self.judge_configs.append(JudgeConfig("llm", judge_args(spec, adapter)))
        self._judge_added = True

    def _use_trained_judge(self) -> None:
        """The judge the prepare job trained, beside the config's: found in the output folder
        (trained there once, never by an evaluate job)."""
        from pipeline.train_judge import judge_args, made_with

        spec = self.config.train_judge
        if spec is None or self._judge_added:
            return
        adapter = self.out / "judge" / "adapter"
        if made_with(adapter) is None:
            raise ValueError(f"the trained judge is not in {adapter} yet: run the sweep's "
                             "prepare job first")
        self.judge_configs.append(JudgeConfig("llm", judge_args(spec, adapter)))
        self._judge_added = True

    def _timed(self, stage: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.summary.stages[stage] += time.perf_counter() - start

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

    def _pairs(self, base: str, data: DataSpec) -> list[Any]:
        pairs = load_instructions(data.shape, data.path, n=data.n, seed=data.seed) * data.repeat
        if data.self_generated:
            gen = self.config.generation
            pairs = self._timed("self_generated", self_generated, self._switcher(base), base,
                                pairs, self.out, self.config.train.max_length, gen.batch_size)
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
    """The whole sweep in this process: every job of its plan, in order."""
    return Sweep(store, config, progress).run()


def run_job(store: Store, config: SweepConfig, job: Job, progress: bool = True) -> SweepSummary:
    """Exactly `job`'s part of the sweep, here: what a worker runs, and `run.py sweep CONFIG
    --only JOB`. Run again, it adds nothing (every stage skips what the store holds)."""
    sweep = Sweep(store, config, progress)
    start = time.perf_counter()
    sweep.run_jobs([job])
    sweep.summary.seconds = time.perf_counter() - start
    return sweep.summary
