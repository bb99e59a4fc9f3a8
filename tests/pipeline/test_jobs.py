"""A sweep as jobs, on the tiny Llama sweep of test_sweep.py (2 seeds x 2 epochs + the base, 3
judges): the plan and its dependencies; every job run by hand (`--only`) in plan order; the same
sweep through submitit's local executor (real subprocesses: `--executor slurm` with `cluster:
local`) and on a local Ray cluster, each giving exactly the rows of a local run; a worker killed
mid-job and the sweep submitted again; a killed checkpoint save; the jobs table, `--status` and
the app's Sweep tab.

The jobs run by hand share a SQLite store; the Slurm, Ray and killed-worker runs share a real
PostgreSQL server's database (tests/conftest.py's `postgres_url`: a fresh database on the
session's server), as a lab's workers would; the reference run is local on SQLite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import run
from annotations.jobs import jobs_table
from annotations.records import JobKind, JobState
from annotations.store import Store
from pipeline.config import config_from_dict, load_config
from pipeline.jobs import find_job, plan
from pipeline.sweep import run_job, run_sweep
from test_sweep import (CHECKPOINTS, JUDGES, PROMPTS, TEMPERATURES, judge_url,  # noqa: F401
                        rows, write_config)

ROOT = Path(__file__).resolve().parents[2]
GENERATIONS = CHECKPOINTS * PROMPTS * TEMPERATURES
NAMES = ["prepare", "evaluate:{m}", "train:{m}/toy/seed1", "evaluate:{m}/toy/seed1",
         "train:{m}/toy/seed2", "evaluate:{m}/toy/seed2"]


@pytest.fixture
def shared_url(tmp_path: Path) -> str:
    """The SQLite store the jobs run by hand share."""
    return str(tmp_path / "shared.db")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, tiny_model_dir, judge_url) -> Path:
    """The sweep's files, written once: a run's id holds its data file's path, so every
    variant below reads the same one."""
    folder = tmp_path_factory.mktemp("jobs-sweep")
    write_config(folder, tiny_model_dir, judge_url)
    return folder


@pytest.fixture(scope="module")
def local(sweep_dir, model_cache):
    """The reference: the whole sweep in one process (run_sweep), its rows and counts."""
    with pytest.MonkeyPatch.context() as env:  # as the autouse fixture sets them per test
        env.setenv("WORKBENCH_ENGINE", "hf")
        env.setenv("WORKBENCH_CACHE", str(model_cache))
        env.setenv("HF_HUB_OFFLINE", "1")
        store = Store.open(sweep_dir / "local.db")
        run_sweep(store, load_config(variant(sweep_dir, "local")), progress=False)
    return store


def variant(folder: Path, name: str, executor: dict | None = None) -> Path:
    """The sweep with its own output folder (so it trains again) and `executor:` section."""
    config = yaml.safe_load((folder / "sweep.yaml").read_text())
    config["output_dir"] = str(folder / f"out-{name}")
    if executor is not None:
        config["executor"] = executor
    path = folder / f"sweep-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_same_rows(store: Store, reference: Store) -> None:
    """The same checkpoints, answers (ids; greedy texts) and verdicts as the reference."""
    assert store.counts()["generations"] == GENERATIONS
    assert store.counts()["verdicts"] == GENERATIONS * JUDGES
    assert (set(store.checkpoints_frame()["id"])
            == set(reference.checkpoints_frame()["id"]))
    texts, verdicts = rows(store)
    want_texts, want_verdicts = rows(reference)
    assert set(texts) == set(want_texts) and verdicts == want_verdicts
    greedy = reference.generations_frame().query("temperature == 0")["id"]
    assert {g: texts[g] for g in greedy} == {g: want_texts[g] for g in greedy}


def cli(*argv: str) -> int:
    return run.main([*argv])


def printed_json(out: str):
    """The command's JSON, after whatever the Trainer printed (its logs, a dict a line)."""
    start = max(out.rfind("\n{\n"), out.rfind("\n[\n")) + 1
    return json.loads(out[start:])


def states(store: Store, sweep: str = "tiny") -> dict[str, str]:
    frame = store.jobs_frame(sweep)
    return dict(zip(frame["name"], frame["state"]))


# ----- the plan -----------------------------------------------------------------------------

def test_the_plan_of_a_two_seed_sweep(tmp_path, tiny_model_dir, capsys):
    path = write_config(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")
    config = load_config(path)
    jobs = plan(config)
    m = tiny_model_dir.name
    assert [j.name for j in jobs] == [n.format(m=m) for n in NAMES]
    by_name = {j.name: j for j in jobs}
    needs = {j.name: [next(k.name for k in jobs if k.id == n) for n in j.needs] for j in jobs}
    assert needs == {"prepare": [], f"evaluate:{m}": ["prepare"],
                     f"train:{m}/toy/seed1": [], f"train:{m}/toy/seed2": [],
                     f"evaluate:{m}/toy/seed1": ["prepare", f"train:{m}/toy/seed1"],
                     f"evaluate:{m}/toy/seed2": ["prepare", f"train:{m}/toy/seed2"]}
    assert [j.kind for j in jobs] == [JobKind.PREPARE, JobKind.EVALUATE, JobKind.TRAIN,
                                      JobKind.EVALUATE, JobKind.TRAIN, JobKind.EVALUATE]
    # one GPU by default where a model runs; the prepare job trains no judge here
    assert {j.name: j.gpus for j in jobs} == {j.name: 0 if j.name == "prepare" else 1
                                             for j in jobs}
    assert [j.id for j in plan(load_config(path))] == [j.id for j in jobs]  # stable ids
    assert len({j.id for j in jobs}) == len(jobs)
    assert by_name[f"train:{m}/toy/seed1"].seed == 1

    assert cli("sweep", str(path), "--plan") == 0
    text = capsys.readouterr().out
    assert text.startswith("6 jobs of sweep tiny")
    assert f"evaluate:{m}/toy/seed2  1 GPU  after prepare, train:{m}/toy/seed2" in text
    assert cli("sweep", str(path), "--plan", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [j["needs"] for j in shown] == [needs[j["name"]] for j in shown]


def test_the_plan_with_alignment_scorers_endpoints_and_two_base_models(tmp_path, tiny_model_dir):
    raw = yaml.safe_load(write_config(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")
                         .read_text())
    raw.update(base_models=[str(tiny_model_dir), "org/other"], seeds=[7],
               align={"name": "refuse", "data": [{"name": "r", "path": "x.jsonl"}]},
               scorers=[{"name": "base-loss", "args": {"model": str(tiny_model_dir)}}],
               endpoints=[{"name": "served", "base_url": "http://127.0.0.1:9/v1",
                           "checkpoints": [{"model": "m"}]}],
               executor={"gpus": 2, "gpus_by_kind": {"score": 0}})
    jobs = plan(config_from_dict(raw))
    m = tiny_model_dir.name
    names = {j.id: j.name for j in jobs}
    needs = {j.name: sorted(names[n] for n in j.needs) for j in jobs}
    assert [j.name for j in jobs] == [
        "prepare", f"align:{m}", f"evaluate:{m}", f"train:{m}/toy/seed7",
        f"evaluate:{m}/toy/seed7", "align:other", "evaluate:other", "train:other/toy/seed7",
        "evaluate:other/toy/seed7", "evaluate:endpoint/served", "score"]
    assert needs[f"align:{m}"] == [] and needs[f"train:{m}/toy/seed7"] == [f"align:{m}"]
    assert needs["evaluate:other"] == ["align:other", "prepare"]
    assert needs["evaluate:endpoint/served"] == ["prepare"]
    assert needs["score"] == sorted(n for n in needs if n.startswith("evaluate"))
    gpus = {j.name: j.gpus for j in jobs}
    assert (gpus["prepare"], gpus["evaluate:endpoint/served"], gpus["score"]) == (0, 0, 0)
    assert gpus[f"train:{m}/toy/seed7"] == gpus[f"align:{m}"] == 2
    with pytest.raises(ValueError, match="seed 7 is listed twice"):
        plan(config_from_dict({**raw, "seeds": [7, 7]}))


def test_the_executor_section_is_checked(tmp_path):
    from pipeline.config import ConfigError

    raw = {"name": "x", "executor": {"gpus": -1, "gpus_by_kind": {"eval": 1},
                                     "slurm": {"cluster": "pbs", "sbatch": {"time": 5}}}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    said = str(err.value)
    assert "\n" not in said
    for part in ("executor.gpus: must be >= 0", "'eval' is not a kind of job",
                 "executor.slurm.cluster: must be one of slurm, local",
                 "time is set by the workbench (from executor.time_min)"):
        assert part in said


def test_an_sbatch_script_holds_the_jobs_settings_and_dependencies(tmp_path, tiny_model_dir):
    """What submitit writes into the sbatch file for a job with two dependencies."""
    from pipeline.executors import slurm_parameters, submitit_module

    slurm = submitit_module().slurm.slurm
    SlurmExecutor, make_sbatch = slurm.SlurmExecutor, slurm._make_sbatch_string

    raw = yaml.safe_load(write_config(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")
                         .read_text())
    raw["executor"] = {"gpus": 1, "cpus": 8, "mem_gb": 64, "time_min": 600,
                       "slurm": {"partition": "gpu", "sbatch": {"account": "safety",
                                                                "qos": "high"}}}
    config = config_from_dict(raw)
    job = plan(config)[3]  # evaluate:.../toy/seed1, after prepare and its training
    params = slurm_parameters(config, job, ["1001", "1002"])
    generic = {SlurmExecutor._equivalence_dict()[k]: v for k, v in params.items()
               if k in SlurmExecutor._equivalence_dict()}
    generic["mem"] = slurm._convert_mem(generic["mem"])
    script = make_sbatch(command="python -m submitit.core._submit x", folder=tmp_path,
                                 partition=params["slurm_partition"],
                                 additional_parameters=params["slurm_additional_parameters"],
                                 **generic)
    for line in ("--dependency=afterok:1001:1002", "--kill-on-invalid-dep=yes",
                 "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB",
                 "--time=600", "--account=safety", "--qos=high",
                 f"--job-name=tiny:{job.name}"):
        assert f"#SBATCH {line}" in script
    assert "dependency" not in slurm_parameters(config, plan(config)[0], [])[
        "slurm_additional_parameters"]


# ----- running the jobs -----------------------------------------------------------------------

def test_each_job_by_hand_in_plan_order_gives_the_rows_of_run_sweep(sweep_dir, local,
                                                                     shared_url, capsys):
    from tool.context import make_context
    from tool.sweep_tab import sweep_view

    path = variant(sweep_dir, "only")
    jobs = plan(load_config(path))
    base = ["--store", shared_url, "sweep", str(path), "--quiet"]
    # an evaluation before its run is trained fails, says why in a line, and records it
    assert cli(*base, "--only", jobs[3].name) == 2
    assert "its run is not trained yet" in capsys.readouterr().err
    store = Store.open(shared_url)
    assert states(store)[jobs[3].name] == JobState.FAILED.value
    for job in jobs:
        assert cli(*base, "--only", job.name, "--json") == 0, job.name
        assert printed_json(capsys.readouterr().out)["job"] == job.name
    assert_same_rows(store, local)
    assert set(states(store).values()) == {JobState.DONE.value}
    assert jobs_table(store, "tiny").set_index("job").loc[jobs[3].name, "attempts"] == 2

    again = run_job(store, load_config(path), find_job(jobs, jobs[5].name), progress=False)
    assert (again.generations_added, again.verdicts_added) == (0, 0)  # re-run: adds nothing

    assert cli(*base, "--status") == 0
    text = capsys.readouterr().out
    assert text.startswith("6 jobs: 6 done") and text.count("done ") >= 6
    assert cli(*base, "--status", "--json") == 0
    assert {r["state"] for r in json.loads(capsys.readouterr().out)} == {"done"}

    view = sweep_view(make_context(store), "tiny")  # the app's Sweep tab
    assert list(view.jobs["job"]) == [j.name for j in jobs]
    assert set(view.jobs["state"]) == {"done"} and view.summary == "tiny: 6 jobs: 6 done"
    assert view.jobs.set_index("job").loc[jobs[2].name, "waits for"] == ""
    assert view.jobs.set_index("job").loc[jobs[3].name, "waits for"] == \
        f"prepare, {jobs[2].name}"


def test_slurm_through_submitits_local_executor(sweep_dir, local, postgres_url, capsys):
    """`--executor slurm` with `cluster: local`: every job a real subprocess of submitit's,
    submitted once the jobs it waits for are done; the rows are a local run's."""
    path = variant(sweep_dir, "slurm", {"gpus": 0, "time_min": 30, "slurm": {"cluster": "local"}})
    assert cli("--store", postgres_url, "sweep", str(path), "--executor", "slurm", "--quiet",
               "--json") == 0
    submission = printed_json(capsys.readouterr().out)
    assert submission["executor"] == "slurm" and submission["jobs"] == 6
    store = Store.open(postgres_url)
    assert_same_rows(store, local)
    table = jobs_table(store, "tiny")
    assert set(table["state"]) == {"done"} and set(table["attempts"]) == {1}
    pids = {int(w.rsplit(" ", 1)[-1]) for w in table["worker"]}
    assert len(pids) == 6 and os.getpid() not in pids  # each job its own worker process
    assert any((sweep_dir / "out-slurm" / "jobs").glob("*/*_log.out"))  # submitit's logs


def test_ray_on_a_local_cluster(sweep_dir, local, postgres_url, capsys):
    """`--executor ray`: a Ray cluster started here, a task per job, dependencies as object
    refs; the rows are a local run's."""
    pytest.importorskip("ray")
    path = variant(sweep_dir, "ray", {"gpus": 0})
    assert cli("--store", postgres_url, "sweep", str(path), "--executor", "ray", "--quiet",
               "--json") == 0
    submission = printed_json(capsys.readouterr().out)
    assert submission["executor"] == "ray" and len(submission["scheduled"]) == 6
    store = Store.open(postgres_url)
    assert_same_rows(store, local)
    table = jobs_table(store, "tiny")
    assert set(table["state"]) == {"done"}
    assert os.getpid() not in {int(w.rsplit(" ", 1)[-1]) for w in table["worker"]}


def test_ray_refuses_jobs_larger_than_the_cluster(sweep_dir, shared_url, capsys):
    pytest.importorskip("ray")
    path = variant(sweep_dir, "ray-big", {"gpus": 1})  # this machine has no GPU
    assert cli("--store", shared_url, "sweep", str(path), "--executor", "ray", "--quiet") == 2
    assert "asks for 1 GPU, the Ray cluster has 0" in capsys.readouterr().err


def test_a_worker_killed_mid_job_then_the_sweep_submitted_again(sweep_dir, local, postgres_url):
    """SIGKILL the worker of a run's evaluation while it generates: the submitter reports it
    failed, its job still says running (the worker could not say otherwise), the jobs after
    it were not run; submitted again, the sweep finishes with nothing duplicated."""
    path = variant(sweep_dir, "killed",
                   {"gpus": 0, "time_min": 30, "slurm": {"cluster": "local"}})
    command = [sys.executable, str(ROOT / "run.py"), "--store", postgres_url, "sweep", str(path),
               "--executor", "slurm", "--quiet"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    submitter = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    victim = kill_an_evaluation(postgres_url, submitter)
    _, err = submitter.communicate(timeout=600)
    assert submitter.returncode == 2 and "job(s) failed" in err and victim in err
    store = Store.open(postgres_url)
    assert states(store)[victim] == JobState.RUNNING.value  # its worker died mid-job
    assert store.counts()["generations"] < GENERATIONS

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_rows(store, local)
    assert store.counts() | {"store": None} == local.counts() | {"store": None}
    table = jobs_table(store, "tiny").set_index("job")
    assert set(table["state"]) == {"done"} and table.loc[victim, "attempts"] == 2


def kill_an_evaluation(url: str, submitter: subprocess.Popen, timeout: float = 300) -> str:
    """SIGKILL the worker of a run's evaluate job once some of its answers are stored, but not
    all; returns the job's name."""
    deadline = time.time() + timeout
    while time.time() < deadline and submitter.poll() is None:
        store = Store.open(url)
        jobs = store.jobs_frame("tiny")
        running = jobs[(jobs["state"] == "running") & jobs["name"].str.contains("seed")
                       & jobs["name"].str.startswith("evaluate")] if len(jobs) else jobs
        for job in running.itertuples():
            done = answered(store, int(job.name.rsplit("seed", 1)[1]))
            if 0 < done < 2 * PROMPTS * TEMPERATURES:
                try:
                    os.kill(int(job.pid), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                store.close()
                return job.name
        store.close()
        time.sleep(0.1)
    pytest.fail("no evaluation could be caught in flight")


def answered(store: Store, seed: int) -> int:
    """Answers stored for the fine-tuned checkpoints of the run with `seed`."""
    gens = store.generations_frame(with_text=False)
    checkpoints = store.checkpoints_frame()
    mine = set(checkpoints[(checkpoints["seed"] == seed) & checkpoints["run_id"].notna()]["id"])
    return int(gens["checkpoint_id"].isin(mine).sum()) if len(gens) else 0


def test_a_checkpoint_save_killed_half_way_is_set_aside(sweep_dir, tmp_path):
    """A kill between the adapter's save and the trainer state's (written last) leaves a
    checkpoint folder the Trainer would resume from, and fail in, on every try: the train job
    removes it and resumes from the last whole checkpoint, to the same checkpoints."""
    path = variant(sweep_dir, "half-saved")
    config = load_config(path)
    train = plan(config)[2]
    first = Store.open(tmp_path / "first.db")
    run_job(first, config, train, progress=False)
    folders = sorted((sweep_dir / "out-half-saved").glob("run-*/checkpoint-*"),
                     key=lambda p: int(p.name.rsplit("-", 1)[1]))
    assert len(folders) == 2
    (folders[-1] / "trainer_state.json").unlink()  # the last save, cut short

    again = Store.open(tmp_path / "again.db")  # a new store: only what is on disk counts
    run_job(again, config, train, progress=False)
    assert (folders[-1] / "trainer_state.json").exists()  # trained again, saved whole
    assert set(again.checkpoints_frame()["id"]) == set(first.checkpoints_frame()["id"])
    assert states(again)[train.name] == JobState.DONE.value


# ----- the jobs table -------------------------------------------------------------------------

def test_the_store_keeps_each_jobs_tries(store_url):
    """Submitted: waiting; each start one more attempt; a new submission keeps the history."""
    from annotations.records import JobRecord

    store = Store.open(store_url)
    job = JobRecord(id="j1", sweep="s", kind=JobKind.TRAIN, name="train:m/d/seed1", position=2,
                    needs=("j0",))
    store.submit_jobs([job])
    store.start_job(job, "node7", 4242)
    store.finish_job("j1", JobState.FAILED, "ValueError: out of memory")
    store.start_job(job, "node8", 99)  # run again by hand, without a new submission
    (row,) = store.jobs_frame("s").to_dict("records")
    assert (row["state"], row["attempts"], row["host"], row["pid"]) == ("running", 2, "node8", 99)
    assert row["error"] is None and row["needs"] == ["j0"] and row["finished_at"] is None
    store.finish_job("j1", JobState.DONE)
    store.submit_jobs([job])
    (row,) = store.jobs_frame("s").to_dict("records")
    assert (row["state"], row["attempts"], row["host"]) == ("waiting", 2, "node8")
    assert jobs_table(store, "s").loc[0, "waits for"] == "j0"  # not in the store: its id
    assert store.jobs_frame("other").empty
    never = JobRecord(id="j2", sweep="s", kind=JobKind.EVALUATE, name="evaluate:m/d/seed1",
                      position=3, needs=("j1",))
    store.submit_jobs([never])  # beside a started one: no worker, no times (NaN in the frame)
    shown = jobs_table(store, "s").set_index("job").loc["evaluate:m/d/seed1"]
    assert (shown["state"], shown["attempts"], shown["worker"], shown["started"]) == (
        "waiting", 0, "", "")
    assert shown["waits for"] == "train:m/d/seed1"


def test_a_version_5_store_gets_the_jobs_table(tmp_path):
    """Migration 6 adds the jobs table, as the schema has it, to a store made before it."""
    from sqlalchemy import create_engine, inspect, text

    from annotations.migrations import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
    from annotations.schema import metadata

    engine = create_engine(f"sqlite:///{tmp_path / 'v5.db'}")
    with engine.begin() as conn:
        for step in MIGRATIONS[:5]:
            step(conn)
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', '5')"))
    assert "jobs" not in inspect(engine).get_table_names()
    assert migrate(engine) == 5 and schema_version(engine) == SCHEMA_VERSION == 6
    assert [c["name"] for c in inspect(engine).get_columns("jobs")] == \
        [c.name for c in metadata.tables["jobs"].columns]
