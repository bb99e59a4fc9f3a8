"""Where a sweep's jobs run: here one after another, on Slurm (through submitit) or on Ray.

    python run.py sweep CONFIG                     # every job here, in the plan's order
    python run.py sweep CONFIG --executor slurm    # an sbatch job each, dependencies `afterok`
    python run.py sweep CONFIG --executor ray      # a Ray task each, dependencies object refs
    python run.py sweep CONFIG --status            # where each job stands, from the store

A worker opens the store from its URL, reads the config's files and writes under its
`output_dir`: on a cluster every node must reach all three (a PostgreSQL store, a shared
folder). A job records its own state (running, then done or failed); the submitters mark the
jobs they hand over as waiting. Every job is safe to run again, so a sweep whose worker died is
finished by submitting it again.

Slurm holds the dependencies itself (`--dependency=afterok:ID:ID`, with
`--kill-on-invalid-dep=yes` so the jobs after a failed one end instead of waiting forever), and
the submitter returns once every job is queued (`--wait` waits). submitit's local executor
(`executor.slurm.cluster: local`, real subprocesses on this machine) has no scheduler to hold
them: each job is submitted once the jobs it waits for are done. Ray gets each job's
dependencies as the object refs of their tasks, and the submitter waits for every task.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from annotations.records import JobState
from annotations.store import Store
from pipeline.config import SweepConfig
from pipeline.jobs import Job

log = logging.getLogger(__name__)
ENV_PREFIXES = ("WORKBENCH_", "HF_", "TRANSFORMERS_", "VLLM_", "TOKENIZERS_", "OMP_", "MKL_")
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")  # never written into a job's pickle


class ExecutorKind(str, enum.Enum):
    LOCAL = "local"  # every job in this process (today's sweep)
    SLURM = "slurm"
    RAY = "ray"


class ExecutorError(RuntimeError):
    """Jobs that failed, or a scheduler that cannot be reached; the message is one line."""


@dataclass
class Submission:
    """What a submitter did: the scheduler's id of each job it handed over (by name) and,
    where it waited, the jobs that failed and those not run because a job before them did."""

    executor: str
    jobs: int
    scheduled: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # name: the error's last line
    not_run: list[str] = field(default_factory=list)
    waited: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Raise (one line) when a job failed: the sweep is not finished."""
        if self.failed:
            said = "; ".join(f"{name}: {error}" for name, error in self.failed.items())
            rest = f"; not run: {', '.join(self.not_run)}" if self.not_run else ""
            raise ExecutorError(f"{len(self.failed)} job(s) failed ({said}){rest}; submit the "
                               "sweep again to finish it (done work is kept)")


def last_line(err: BaseException) -> str:
    """The error as the jobs table shows it: its type and the last line it said."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1]}"[:500] if lines else type(err).__name__


@contextlib.contextmanager
def recorded(store: Store, jobs: Sequence[Job]) -> Iterator[None]:
    """The jobs' states in the store around their work: running (one more attempt, this
    worker), then done, or failed with the error's last line (the error still raised)."""
    host, pid = socket.gethostname(), os.getpid()
    for job in jobs:
        store.start_job(job.record(), host, pid)
    try:
        yield
    except BaseException as err:
        with contextlib.suppress(Exception):  # a store that is down must not hide the error
            for job in jobs:
                store.finish_job(job.id, JobState.FAILED, last_line(err))
        raise
    for job in jobs:
        store.finish_job(job.id, JobState.DONE)


def work(store_url: str, config: SweepConfig, job: Job, cwd: str, env: dict[str, str],
         *after: Any) -> dict[str, Any]:
    """One job in a worker: the store opened from its URL, the job run, its summary returned.
    `after`: the results of the jobs it waited for (Ray passes them; unused)."""
    os.chdir(cwd)  # the config's relative paths are the submitter's
    os.environ.update(env)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("bitsandbytes", "kernels"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from pipeline.sweep import run_job

    store = Store.open(store_url)
    try:
        return run_job(store, config, job, progress=False).to_dict()
    finally:
        store.close()


def forwarded_env() -> dict[str, str]:
    """The settings a worker needs from the submitter's environment (model cache, engine, hub
    offline), secrets left out: they would be written into the job's pickle."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)
            and not any(word in k for word in SECRET_WORDS)}


def worker_url(store: Store) -> str:
    """The store's URL as a worker needs it (with the password, if the URL holds one: prefer
    ~/.pgpass or PGPASSWORD on a cluster, which stay out of the job's files)."""
    return store.engine.url.render_as_string(hide_password=False)


def submit(store: Store, config: SweepConfig, jobs: Sequence[Job], executor: ExecutorKind,
           wait: bool = False) -> Submission:
    """Hand `jobs` (in plan order) to Slurm or Ray, each marked waiting in the store first."""
    store.submit_jobs([job.record() for job in jobs])
    if executor is ExecutorKind.SLURM:
        return submit_slurm(store, config, jobs, wait)
    if executor is ExecutorKind.RAY:
        return run_ray(store, config, jobs)
    raise ValueError(f"the {executor.value} executor runs the sweep itself (pipeline.sweep)")


# ----- Slurm, through submitit ----------------------------------------------------------------

def slurm_parameters(config: SweepConfig, job: Job, after: Sequence[str]) -> dict[str, Any]:
    """submitit's `update_parameters` for one job: its resources from the `executor:` section
    and its dependencies (Slurm job ids) as `afterok`."""
    spec = config.executor
    sbatch = dict(spec.slurm.sbatch)
    if after:
        sbatch |= {"dependency": "afterok:" + ":".join(after), "kill_on_invalid_dep": "yes"}
    params: dict[str, Any] = {"name": f"{config.name}:{job.name}", "timeout_min": spec.time_min,
                              "gpus_per_node": job.gpus, "slurm_additional_parameters": sbatch}
    if spec.cpus is not None:
        params["cpus_per_task"] = spec.cpus
    if spec.mem_gb is not None:
        params["mem_gb"] = spec.mem_gb
    if spec.slurm.partition is not None:
        params["slurm_partition"] = spec.slurm.partition
    return params


def jobs_folder(config: SweepConfig) -> Path:
    """submitit's pickles and logs (on Slurm, a folder the nodes share)."""
    return Path(config.executor.folder or Path(config.output_dir) / "jobs").expanduser()


def submitit_module() -> Any:
    """submitit, imported without letting it configure logging: its `dictConfig` at import
    closes every handler already set (pytest's capture among them); its messages then go
    where the application's logging sends them."""
    os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")
    import submitit

    return submitit


def _submitit_executor(config: SweepConfig) -> Any:
    submitit = submitit_module()
    cluster = config.executor.slurm.cluster
    try:
        return submitit.AutoExecutor(folder=jobs_folder(config) / "%j", cluster=cluster)
    except RuntimeError as err:
        raise ExecutorError(f"executor.slurm.cluster {cluster}: {err} (submit from a Slurm "
                           "login node, or set `cluster: local` to run the jobs here)") from None


def submit_slurm(store: Store, config: SweepConfig, jobs: Sequence[Job],
                 wait: bool = False) -> Submission:
    """Each job an sbatch job, its dependencies `afterok`; returns once all are queued (with
    `wait`, once all have ended). On submitit's local cluster, jobs are submitted as the jobs
    they wait for finish."""
    executor = _submitit_executor(config)
    args = (worker_url(store), config)
    place = (str(Path.cwd()), forwarded_env())
    if executor.cluster == "local":
        return _run_as_ready(store, config, jobs, executor, args, place)
    if store.engine.dialect.name == "sqlite":
        log.warning("a SQLite store shared by workers on several nodes needs a shared "
                    "filesystem with working locks; a PostgreSQL store is safer")
    handles: dict[str, Any] = {}
    for job in jobs:
        after = [handles[n].job_id for n in job.needs]
        executor.update_parameters(**slurm_parameters(config, job, after))
        handles[job.id] = executor.submit(work, *args, job, *place)
    done = Submission("slurm", len(jobs), {j.name: handles[j.id].job_id for j in jobs},
                      waited=wait)
    if wait:
        _collect(store, done, [(job, handles[job.id].result) for job in jobs])
    return done


def _run_as_ready(store: Store, config: SweepConfig, jobs: Sequence[Job], executor: Any,
                  args: tuple, place: tuple, poll_s: float = 0.5) -> Submission:
    """submitit's local executor cannot hold dependencies: submit each job once every job it
    waits for is done; after a failure, the jobs behind it are not run."""
    done = Submission("slurm", len(jobs))
    waiting, running, finished = list(jobs), {}, set()
    while waiting or running:
        for job in [j for j in waiting if all(n in finished for n in j.needs)]:
            waiting.remove(job)
            executor.update_parameters(**slurm_parameters(config, job, []))
            running[job.id] = (job, executor.submit(work, *args, job, *place))
            done.scheduled[job.name] = running[job.id][1].job_id
        ended = [(job, handle) for job, handle in running.values() if handle.done()]
        for job, handle in ended:
            del running[job.id]
            if _collect(store, done, [(job, handle.result)]):
                finished.add(job.id)
        lost = {j.id for j in jobs if j.name in done.failed or j.name in done.not_run}
        for job in [j for j in waiting if lost & set(j.needs)]:
            waiting.remove(job)
            done.not_run.append(job.name)
        if not ended:
            time.sleep(poll_s)
    return done


def _collect(store: Store, done: Submission, results: Sequence[tuple[Job, Any]]) -> bool:
    """Wait for each result; a failure is noted as failed, or as not run where the job never
    started (a job before it failed). True when every one succeeded."""
    ok = True
    for job, result in results:
        try:
            result()
        except Exception as err:  # the job's own error, or its worker's death
            ok = False
            frame = store.jobs_frame(job.sweep)
            state = frame.loc[frame["id"] == job.id, "state"]
            if len(state) and state.iloc[0] == JobState.WAITING.value:
                done.not_run.append(job.name)
            else:
                done.failed[job.name] = _failure(err)
    return ok


def _failure(err: BaseException) -> str:
    """A failed job's error in a line: submitit's "produced no output" (the worker died) says
    it in its first line, the rest being the log's tail; others in their last."""
    if type(err).__name__ == "UncompletedJobError":
        return str(err).strip().splitlines()[0][:500]
    return last_line(err)


# ----- Ray ------------------------------------------------------------------------------------

def ray_options(config: SweepConfig, job: Job) -> dict[str, Any]:
    spec = config.executor
    options: dict[str, Any] = {"num_gpus": job.gpus, "name": job.name}
    if spec.cpus is not None:
        options["num_cpus"] = spec.cpus
    if spec.mem_gb is not None:
        options["memory"] = int(spec.mem_gb * 2 ** 30)
    return options


def run_ray(store: Store, config: SweepConfig, jobs: Sequence[Job]) -> Submission:
    """Each job a Ray task (a fresh worker process each: `max_calls=1` frees its GPU memory),
    the object refs of the jobs it waits for among its arguments, so Ray starts it after them
    (and not at all after a failure). On the cluster at `executor.ray.address`, else on one
    started here for the sweep."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=config.executor.ray.address, include_dashboard=False,
                 log_to_driver=False)
    try:
        _check_fits(ray.cluster_resources(), config, jobs)
        task = ray.remote(max_calls=1)(work)
        args, place = (worker_url(store), config), (str(Path.cwd()), forwarded_env())
        refs: dict[str, Any] = {}
        for job in jobs:
            refs[job.id] = task.options(**ray_options(config, job)).remote(
                *args, job, *place, *[refs[n] for n in job.needs])
        done = Submission("ray", len(jobs), {j.name: refs[j.id].hex() for j in jobs})
        _collect(store, done, [(job, lambda ref=refs[job.id]: ray.get(ref)) for job in jobs])
        return done
    finally:
        if started:
            ray.shutdown()


def _check_fits(resources: dict[str, float], config: SweepConfig, jobs: Sequence[Job]) -> None:
    """A job asking for more than the whole Ray cluster has would wait forever: say so now."""
    for job in jobs:
        for name, asked in ray_options(config, job).items():
            have = {"num_gpus": "GPU", "num_cpus": "CPU", "memory": "memory"}.get(name)
            if have and asked > resources.get(have, 0):
                raise ValueError(f"job {job.name} asks for {asked} {have}, the Ray cluster has "
                                 f"{resources.get(have, 0):g}: set the `executor:` section to "
                                 "what it has (gpus, gpus_by_kind, cpus, mem_gb)")
