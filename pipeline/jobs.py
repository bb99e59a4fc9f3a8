"""A sweep as a set of jobs: what each does, what it waits for, what it asks a scheduler for.

Pure: from a SweepConfig to a list of `Job`s in an order that respects every dependency (the
order the one-process sweep runs them in). Nothing here reads a file, loads a model or opens
the store; `pipeline.sweep.run_job` runs one job, `pipeline.executors` hands them to Slurm or
Ray.

    prepare                      prompts into the store, calibration sets imported, a judge
                                 trained (when the config trains one)
    align:BASE                   the base model safety-tuned (with an `align:` section)
    evaluate:BASE                the base model itself: generate, judge, measure capability
                                   waits for prepare (and align:BASE)
    train:BASE/DATA/seedN        one fine-tuning run
                                   waits for align:BASE (when there is one)
    evaluate:BASE/DATA/seedN     every checkpoint of that run: generate, judge, measure
                                   waits for prepare and train:BASE/DATA/seedN
    evaluate:endpoint/NAME       an endpoint's served checkpoints; waits for prepare
    score                        the config's scorers over every answer (with `scorers:`)
                                   waits for every evaluate job

Ids are stable (the same config gives the same ids on every machine), so the store's jobs
table follows a sweep across submissions.

    python run.py sweep configs/demo.yaml --plan
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from annotations.records import JobKind, JobRecord, stable_id
from pipeline.config import DataSpec, SweepConfig


@dataclass(frozen=True)
class Job:
    """One job of a sweep. `base` is a base model as the config names it (before alignment),
    `dataset` a data set's label (its name, `+self` for the self-generated control)."""

    sweep: str
    kind: JobKind
    name: str
    base: str | None = None
    dataset: str | None = None
    seed: int | None = None
    endpoint: str | None = None
    needs: tuple[str, ...] = ()  # ids of the jobs it waits for
    gpus: int = 0
    position: int = 0

    @property
    def id(self) -> str:
        return job_id(self.sweep, self.kind, self.base, self.dataset, self.seed, self.endpoint)

    def record(self) -> JobRecord:
        return JobRecord(id=self.id, sweep=self.sweep, kind=self.kind, name=self.name,
                         position=self.position, needs=self.needs)

    def to_dict(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        names = names or {}
        return {"id": self.id, "name": self.name, "kind": self.kind.value, "gpus": self.gpus,
                "needs": [names.get(n, n) for n in self.needs]}


def job_id(sweep: str, kind: JobKind, base: str | None = None, dataset: str | None = None,
           seed: int | None = None, endpoint: str | None = None) -> str:
    return stable_id("job", sweep, kind.value, base, dataset, seed, endpoint)


def data_label(data: DataSpec) -> str:
    """A data set as its runs record it: the self-generated control is `NAME+self`."""
    return data.name + ("+self" if data.self_generated else "")


@dataclass
class _Planner:
    config: SweepConfig
    jobs: list[Job] = field(default_factory=list)

    def add(self, kind: JobKind, name: str, needs: Sequence[Job | None] = (),
            **target: Any) -> Job:
        job = Job(self.config.name, kind, name, needs=tuple(j.id for j in needs if j),
                  gpus=job_gpus(self.config, kind, **target), position=len(self.jobs),
                  **target)
        self.jobs.append(job)
        return job


def plan(config: SweepConfig) -> list[Job]:
    """Every job of the sweep, each after the jobs it waits for."""
    _check_unique(config)
    p = _Planner(config)
    prepare = p.add(JobKind.PREPARE, "prepare")
    short = short_names(config.base_models)
    evaluations: list[Job] = []
    for base in config.base_models:
        align = (p.add(JobKind.ALIGN, f"align:{short[base]}", base=base)
                 if config.align is not None else None)
        evaluations.append(p.add(JobKind.EVALUATE, f"evaluate:{short[base]}", [prepare, align],
                                 base=base))
        for data in config.datasets:
            for seed in config.seeds:
                target = {"base": base, "dataset": data_label(data), "seed": seed}
                run = f"{short[base]}/{data_label(data)}/seed{seed}"
                train = p.add(JobKind.TRAIN, f"train:{run}", [align], **target)
                evaluations.append(p.add(JobKind.EVALUATE, f"evaluate:{run}", [prepare, train],
                                         **target))
    for endpoint in config.endpoints:
        evaluations.append(p.add(JobKind.EVALUATE, f"evaluate:endpoint/{endpoint.name}",
                                 [prepare], endpoint=endpoint.name))
    if config.scorers:
        p.add(JobKind.SCORE, "score", evaluations)
    return p.jobs


def job_gpus(config: SweepConfig, kind: JobKind, base: str | None = None,
             endpoint: str | None = None, **_: Any) -> int:
    """The GPUs a job asks for: the executor's `gpus` where the job runs a model, none where it
    does not (the prepare job without a judge to train, an endpoint's evaluation, which calls a
    server); `gpus_by_kind` wins."""
    spec = config.executor
    if kind.value in spec.gpus_by_kind:
        return spec.gpus_by_kind[kind.value]
    runs_a_model = {JobKind.PREPARE: config.train_judge is not None,
                    JobKind.EVALUATE: endpoint is None}.get(kind, True)
    return spec.gpus if runs_a_model else 0


def short_names(models: Sequence[str]) -> dict[str, str]:
    """A readable name for each base model: its last path part (`Llama-3.2-1B`), the whole
    name where two would look the same."""
    last = {m: m.rstrip("/").rsplit("/", 1)[-1] or m for m in models}
    seen = Counter(last.values())
    return {m: last[m] if seen[last[m]] == 1 else m for m in models}


def _check_unique(config: SweepConfig) -> None:
    """Two jobs with one name would be one job to the store and to a scheduler."""
    said = [("base model", config.base_models), ("seed", config.seeds),
            ("data set", [data_label(d) for d in config.datasets]),
            ("endpoint", [e.name for e in config.endpoints])]
    for what, values in said:
        twice = sorted({str(v) for v, n in Counter(values).items() if n > 1})
        if twice:
            raise ValueError(f"{config.name}: the {what} {', '.join(twice)} is listed twice; "
                             "a sweep runs as jobs only when each is listed once")


def find_job(jobs: Sequence[Job], wanted: str) -> Job:
    """A job by its name or id (`run.py sweep CONFIG --only NAME`)."""
    for job in jobs:
        if wanted in (job.name, job.id):
            return job
    raise ValueError(f"no job {wanted!r} in this sweep (its jobs: "
                     f"{', '.join(j.name for j in jobs)})")


def plan_text(jobs: Sequence[Job]) -> list[str]:
    """The plan as `run.py sweep CONFIG --plan` prints it: a job a line, what it waits for."""
    names = {j.id: j.name for j in jobs}
    width = max((len(j.name) for j in jobs), default=0)
    lines = [f"{len(jobs)} jobs of sweep {jobs[0].sweep}" if jobs else "no jobs"]
    for job in jobs:
        after = ", ".join(names[n] for n in job.needs)
        lines.append(f"  {job.name:<{width}}  {job.gpus} GPU{'s' if job.gpus != 1 else ''}"
                     + (f"  after {after}" if after else ""))
    return lines
