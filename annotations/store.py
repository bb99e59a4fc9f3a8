"""The store: the only module that writes SQL. One SQLite file by default, or a PostgreSQL
server for a team (`postgresql://USER@HOST/DB`, driven by psycopg 3 from the `postgres` extra);
every store test runs on both.

Pipeline rows are upserted by their deterministic ids, so re-running a stage changes nothing.
Human labels and votes are only ever inserted (a repeated submission id is ignored), so nothing a
person entered is overwritten or deleted, and a changed label keeps its history.

    store = Store.open("workbench.db")
    with store.batch() as tx:          # everything inside lands whole or not at all
        tx.upsert_prompts(prompts)
"""

from __future__ import annotations

import contextlib
import enum
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Table, create_engine, event, func, inspect, select
from sqlalchemy.engine import Connection

from annotations.migrations import SCHEMA_VERSION, migrate, schema_version
from annotations.records import JobRecord, JobState
from annotations.records import (Annotator, CapabilityScore, Checkpoint, Generation, JudgeSpec,
                                 Label, Prompt, PromptKind, ResponseScore, Run, RunGoal,
                                 ScorerSpec, Verdict, Vote, utcnow)
from annotations.schema import (annotators, capability, checkpoints, generations, judge_cache,
                                judges, labels, metadata, prompts, run_goals, runs, scorers,
                                scores, verdicts, votes)
from annotations.schema import jobs

ENV_VAR = "WORKBENCH_STORE"
DEFAULT_PATH = "workbench.db"

def resolve_url(path_or_url: str | os.PathLike | None = None) -> str:
    """A SQLAlchemy URL from `--store`, else $WORKBENCH_STORE, else ./workbench.db."""
    value = str(path_or_url or os.environ.get(ENV_VAR) or DEFAULT_PATH)
    for plain in ("postgresql://", "postgres://"):  # psycopg 3 (the postgres extra), not psycopg2
        if value.startswith(plain):
            return "postgresql+psycopg://" + value[len(plain):]
    if "://" in value:
        return value
    Path(value).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, attempts: int = 100) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # many annotators write at once
    # Switching a new file to WAL needs it to itself; SQLite may answer "database is locked" at
    # once, without waiting, when another process is opening the same new file (seen in CI with
    # 8 processes). The mode is stored in the file, so a later try finds it set.
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe under WAL: a commit survives a crash
    cursor.close()


def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
    """Every session in UTC, whatever zone the team's server runs in: naive times a caller
    stores then mean UTC, as they do in SQLite (committed: a SET rolled back is undone)."""
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_conn.commit()


__all__ = ["DEFAULT_PATH", "ENV_VAR", "SCHEMA_VERSION", "Store", "StoreError", "migrate",
           "resolve_url", "schema_version"]


class StoreError(ValueError):
    """The store cannot be opened as asked (a missing driver, a newer schema, a bad URL)."""


DRIVER_EXTRAS = {"psycopg": "postgres"}  # driver module: the extra that brings it


def _engine(url: str) -> Engine:
    try:
        # A team server restarts or drops idle connections: test each one before handing it out
        engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    except ImportError as err:  # no driver, or one that cannot load (psycopg without libpq)
        raise StoreError(_missing_driver(url, err)) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_session)
    return engine


def _missing_driver(url: str, err: ImportError) -> str:
    """One line naming the driver and how to get it (the extra only where it brings it)."""
    dialect = url.split(":", 1)[0]
    module = (err.name or dialect.partition("+")[2] or dialect).split(".")[0]
    extra = DRIVER_EXTRAS.get(module)
    fix = (f"pip install 'safety-workbench[{extra}]' (or pip install -e '.[{extra}]')" if extra
           else f"pip install {module}")
    why = ("which is not installed" if isinstance(err, ModuleNotFoundError)
           else f"which cannot be loaded ({' '.join(str(err).split())})")
    return f"the {dialect} store needs the driver {module!r}, {why}: {fix}"


def _insert(conn: Connection, table: Table):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _upsert(conn: Connection, table: Table, rows: Sequence[dict], update: bool = True) -> int:
    """Insert rows; on a repeated key update them (pipeline rows) or keep the old (human rows).
    Returns how many rows were written (with update=False: how many were new)."""
    if not rows:
        return 0
    key = [c.name for c in table.primary_key.columns]
    stmt = _insert(conn, table)
    if update:
        changed = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
        stmt = stmt.on_conflict_do_update(index_elements=key, set_=changed)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)
    # SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg's is gone once the cursor
    # closes: -1); it is how add_labels tells new labels from repeated submissions.
    stmt = stmt.execution_options(preserve_rowcount=True)
    if conn.dialect.name == "postgresql":
        # Rows lock in the order they are written: one order (by key) for every writer means
        # two workers upserting the same rows wait for each other instead of deadlocking.
        rows = sorted(rows, key=lambda row: tuple(row[k] for k in key))
    written = 0  # summed over an executemany's statements, by sqlite3 and psycopg alike
    for start in range(0, len(rows), 5000):
        written += conn.execute(stmt, list(rows[start:start + 5000])).rowcount
    return written


def _naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Times as SQLite gives them, naive UTC: PostgreSQL's come back with a zone, and frames
    must not differ by backend (a zone-aware column cannot be compared with a naive one)."""
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def _dump(record: Any, **extra: Any) -> dict:
    row = record.model_dump() | extra
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in row.items()}


class Store:
    """All reads and writes of the workbench's data. Methods take and return typed records or
    pandas frames; none leaks SQL to the caller."""

    def __init__(self, engine: Engine, conn: Connection | None = None):
        self.engine = engine
        self._conn = conn

    @classmethod
    def open(cls, path_or_url: str | os.PathLike | None = None) -> "Store":
        engine = _engine(resolve_url(path_or_url))
        try:
            migrate(engine)
        except ValueError as err:
            engine.dispose()
            raise StoreError(str(err)) from None
        return cls(engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextlib.contextmanager
    def batch(self) -> Iterator["Store"]:
        """A store whose writes form one transaction: all land when the block ends, or none."""
        if self._conn is not None:
            yield self
            return
        with self.engine.begin() as conn:
            yield Store(self.engine, conn)

    def _read(self, query: Any) -> pd.DataFrame:
        with self._begin() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        return _naive_utc(frame)

    # ----- pipeline rows (upserted by deterministic id) -----
    def upsert_prompts(self, items: Iterable[Prompt]) -> int:
        rows = [_dump(p, id=p.id) for p in items]
        with self._begin() as conn:
            _upsert(conn, prompts, rows)
        return len(rows)

    def upsert_run(self, run: Run) -> str:
        with self._begin() as conn:
            _upsert(conn, runs, [_dump(run, id=run.id, created_at=utcnow())])
        return run.id

    def upsert_checkpoint(self, checkpoint: Checkpoint) -> str:
        with self._begin() as conn:
            _upsert(conn, checkpoints, [_dump(checkpoint, id=checkpoint.id)])
        return checkpoint.id

    def upsert_goal(self, goal: RunGoal) -> str:
        with self._begin() as conn:
            _upsert(conn, run_goals, [_dump(goal)])
        return goal.id

    def goal(self, run_id: str) -> RunGoal | None:
        with self._begin() as conn:
            row = conn.execute(select(run_goals).where(run_goals.c.run_id == run_id)).first()
        if row is None:
            return None
        return RunGoal(**{k: v for k, v in row._mapping.items() if v is not None})

    def goals_frame(self) -> pd.DataFrame:
        return self._read(select(run_goals).order_by(run_goals.c.run_id))

    def upsert_generations(self, items: Iterable[Generation]) -> int:
        now = utcnow()
        rows = [_dump(g, id=g.id, created_at=now) for g in items]
        with self._begin() as conn:
            _upsert(conn, generations, rows)
        return len(rows)

    def upsert_judge(self, spec: JudgeSpec) -> str:
        with self._begin() as conn:
            _upsert(conn, judges, [_dump(spec, id=spec.id)])
        return spec.id

    def upsert_verdicts(self, items: Iterable[Verdict]) -> int:
        now = utcnow()
        rows = [_dump(v, id=v.id, created_at=now) for v in items]
        with self._begin() as conn:
            _upsert(conn, verdicts, rows)
        return len(rows)

    def upsert_scorer(self, spec: ScorerSpec) -> str:
        with self._begin() as conn:
            _upsert(conn, scorers, [_dump(spec, id=spec.id)])
        return spec.id

    def upsert_scores(self, items: Iterable[ResponseScore]) -> int:
        now = utcnow()
        rows = [_dump(s, id=s.id, created_at=now) for s in items]
        with self._begin() as conn:
            _upsert(conn, scores, rows)
        return len(rows)

    def upsert_capability(self, items: Iterable[CapabilityScore]) -> int:
        rows = [_dump(c, id=c.id) for c in items]
        with self._begin() as conn:
            _upsert(conn, capability, rows)
        return len(rows)

    def cache_get(self, keys: Sequence[str]) -> dict[str, str]:
        """Judge answers already received, by request key (so a re-run sends nothing twice)."""
        found: dict[str, str] = {}
        with self._begin() as conn:
            for start in range(0, len(keys), 500):
                query = select(judge_cache.c.key, judge_cache.c.raw).where(
                    judge_cache.c.key.in_(keys[start:start + 500]))
                found.update(dict(conn.execute(query).all()))
        return found

    def cache_put(self, judge_id: str, answers: dict[str, str]) -> None:
        rows = [{"key": k, "judge_id": judge_id, "raw": v, "created_at": utcnow()}
                for k, v in answers.items()]
        with self._begin() as conn:
            _upsert(conn, judge_cache, rows)

    # ----- human rows (insert only) -----
    def add_annotator(self, annotator: Annotator, replace: bool = False) -> None:
        row = _dump(annotator, created_at=utcnow())
        with self._begin() as conn:
            _upsert(conn, annotators, [row], update=replace)

    def annotator(self, name: str) -> Annotator | None:
        with self._begin() as conn:
            row = conn.execute(select(annotators).where(annotators.c.name == name)).first()
        if row is None:
            return None
        return Annotator(name=row.name, role=row.role, password_hash=row.password_hash)

    def add_labels(self, items: Iterable[Label]) -> int:
        """Insert labels; returns how many were new (a repeated submission id is ignored)."""
        rows = [_dump(lab) for lab in items]
        with self._begin() as conn:  # one write, no read first: no snapshot to go stale
            return _upsert(conn, labels, rows, update=False)

    def add_votes(self, items: Iterable[Vote]) -> int:
        rows = [_dump(v) for v in items]
        with self._begin() as conn:
            return _upsert(conn, votes, rows, update=False)

    # ----- reads -----
    def existing_ids(self, table_name: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are already stored in `table_name` (how stages resume)."""
        table = metadata.tables[table_name]
        found: set[str] = set()
        with self._begin() as conn:
            for start in range(0, len(ids), 500):
                query = select(table.c.id).where(table.c.id.in_(ids[start:start + 500]))
                found.update(conn.execute(query).scalars())
        return found

    def judged_generation_ids(self, judge_id: str) -> set[str]:
        query = select(verdicts.c.generation_id).where(verdicts.c.judge_id == judge_id)
        with self._begin() as conn:
            return set(conn.execute(query).scalars())

    def prompts(self, benchmark: str | None = None,
                kind: PromptKind | None = None) -> list[Prompt]:
        frame = self.prompts_frame(benchmark, kind)
        fields = set(Prompt.model_fields)
        frame = frame.astype(object).where(frame.notna(), None)  # pandas turns NULL into NaN
        return [Prompt(**{k: v for k, v in row.items() if k in fields and v is not None})
                for row in frame.to_dict("records")]

    def prompts_frame(self, benchmark: str | None = None,
                      kind: PromptKind | None = None) -> pd.DataFrame:
        query = select(prompts).order_by(prompts.c.benchmark, prompts.c.id)
        if benchmark is not None:
            query = query.where(prompts.c.benchmark == benchmark)
        if kind is not None:
            query = query.where(prompts.c.kind == PromptKind(kind).value)
        return self._read(query)

    def runs_frame(self) -> pd.DataFrame:
        return self._read(select(runs).order_by(runs.c.created_at))

    def checkpoints_frame(self) -> pd.DataFrame:
        """Checkpoints with their run's seed and data set (NULL for base models)."""
        query = (select(checkpoints, runs.c.seed, runs.c.dataset)
                 .join(runs, checkpoints.c.run_id == runs.c.id, isouter=True)
                 .order_by(checkpoints.c.base_model, runs.c.seed, checkpoints.c.epoch))
        return self._read(query)

    def generations_frame(self, with_text: bool = True) -> pd.DataFrame:
        cols = [c for c in generations.c if with_text or c.name != "text"]
        query = (select(*cols, prompts.c.benchmark, prompts.c.kind, prompts.c.category_id,
                        prompts.c.category)
                 .join(prompts, generations.c.prompt_id == prompts.c.id))
        return self._read(query)

    def generations(self, ids: Sequence[str]) -> list[Generation]:
        fields = set(Generation.model_fields)
        out: list[Generation] = []
        with self._begin() as conn:
            for start in range(0, len(ids), 500):
                query = select(generations).where(generations.c.id.in_(ids[start:start + 500]))
                for row in conn.execute(query).mappings():
                    out.append(Generation(**{k: v for k, v in row.items()
                                             if k in fields and v is not None}))
        return out

    def scored_generation_ids(self, scorer_id: str) -> set[str]:
        query = select(scores.c.generation_id).where(scores.c.scorer_id == scorer_id)
        with self._begin() as conn:
            return set(conn.execute(query).scalars())

    def scores_frame(self, scorer_id: str | None = None) -> pd.DataFrame:
        """One row per score: generation_id, scorer_id, scorer_name, scorer_args, value, raw."""
        query = select(scores.c.generation_id, scores.c.scorer_id,
                       scorers.c.name.label("scorer_name"), scorers.c.args.label("scorer_args"),
                       scores.c.value, scores.c.raw).join(scorers,
                                                          scores.c.scorer_id == scorers.c.id)
        if scorer_id is not None:
            query = query.where(scores.c.scorer_id == scorer_id)
        return self._read(query)

    def judges_frame(self) -> pd.DataFrame:
        return self._read(select(judges))

    def verdicts_frame(self, judge_id: str | None = None, with_raw: bool = False) -> pd.DataFrame:
        cols = [c for c in verdicts.c if with_raw or c.name != "raw"]
        query = select(*cols, judges.c.name.label("judge_name")).join(
            judges, verdicts.c.judge_id == judges.c.id)
        if judge_id is not None:
            query = query.where(verdicts.c.judge_id == judge_id)
        return self._read(query)

    def labels_frame(self, current: bool = True, annotator: str | None = None) -> pd.DataFrame:
        """Human labels; with `current`, only each annotator's latest label per generation."""
        query = select(labels).order_by(labels.c.created_at, labels.c.id)
        if annotator is not None:
            query = query.where(labels.c.annotator == annotator)
        frame = self._read(query)
        if current and len(frame):
            frame = frame.drop_duplicates(["generation_id", "annotator"], keep="last")
        return frame.reset_index(drop=True)

    def votes_frame(self) -> pd.DataFrame:
        return self._read(select(votes).order_by(votes.c.created_at))

    def annotators_frame(self) -> pd.DataFrame:
        return self._read(select(annotators.c.name, annotators.c.role, annotators.c.created_at))

    def capability_frame(self) -> pd.DataFrame:
        return self._read(select(capability))

    def outcomes_frame(self) -> pd.DataFrame:
        """One row per verdict with everything the statistics group by: the checkpoint's run,
        seed and epoch, the temperature and sample, the prompt and its category, the judge."""
        g, c, r, p, v, j = generations, checkpoints, runs, prompts, verdicts, judges
        query = (select(v.c.generation_id, v.c.judge_id, j.c.name.label("judge_name"),
                        j.c.args.label("judge_args"),
                        v.c.label.label("outcome"), v.c.probability, v.c.score,
                        g.c.checkpoint_id,
                        g.c.prompt_id, g.c.temperature, g.c.sample_index, g.c.degenerate,
                        g.c.empty, g.c.repetition, c.c.base_model, c.c.run_id, c.c.epoch,
                        c.c.step, c.c.examples_seen,
                        c.c.kind.label("checkpoint_kind"), c.c.source.label("import_source"),
                        r.c.seed, r.c.dataset, p.c.benchmark, p.c.kind, p.c.category_id,
                        p.c.category)
                 .join(j, v.c.judge_id == j.c.id).join(g, v.c.generation_id == g.c.id)
                 .join(c, g.c.checkpoint_id == c.c.id).join(p, g.c.prompt_id == p.c.id)
                 .join(r, c.c.run_id == r.c.id, isouter=True))
        return self._read(query)

    def counts(self) -> dict[str, Any]:
        """What `run.py status` prints: totals, prompts by benchmark, verdicts by judge."""
        with self._begin() as conn:
            def total(table: Table) -> int:
                return conn.execute(select(func.count()).select_from(table)).scalar_one()

            by_bench = dict(conn.execute(select(prompts.c.benchmark, func.count())
                                         .group_by(prompts.c.benchmark)).all())
            by_judge = conn.execute(
                select(judges.c.id, judges.c.name, judges.c.args, func.count(verdicts.c.id),
                       func.count(verdicts.c.label))
                .join(verdicts, verdicts.c.judge_id == judges.c.id, isouter=True)
                .group_by(judges.c.id)).all()  # PostgreSQL cannot compare JSON (args)
            return {
                "store": self.url,
                "schema_version": SCHEMA_VERSION,
                "prompts": total(prompts), "prompts_by_benchmark": by_bench,
                "runs": total(runs), "checkpoints": total(checkpoints),
                "generations": total(generations), "verdicts": total(verdicts),
                "verdicts_by_judge": {
                    JudgeSpec(name=name, args=args or {}).label:
                        {"verdicts": n, "unparseable": n - parsed}
                    for _id, name, args, n, parsed in by_judge},
                "labels": total(labels), "votes": total(votes), "annotators": total(annotators),
                "capability_scores": total(capability),
            }

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    # ----- the jobs of a sweep (pipeline/jobs.py): where each stands -----
    def submit_jobs(self, items: Iterable[JobRecord]) -> int:
        """Jobs handed to a scheduler: waiting from now on. A job seen before keeps its
        attempts, its last worker and its times: the history of its earlier tries."""
        now = utcnow()
        rows = [_dump(j, state=JobState.WAITING.value, error=None, submitted_at=now)
                for j in items]
        if not rows:
            return 0
        kept = {"id", "attempts", "host", "pid", "started_at", "finished_at"}
        with self._begin() as conn:
            stmt = _insert(conn, jobs)
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={c.name: stmt.excluded[c.name] for c in jobs.columns if c.name not in kept})
            conn.execute(stmt, rows)
        return len(rows)

    def start_job(self, job: JobRecord, host: str, pid: int) -> None:
        """A worker starts `job`: running, one more attempt, this worker's host and pid."""
        now = utcnow()
        started = {"state": JobState.RUNNING.value, "host": host, "pid": pid,
                   "started_at": now, "finished_at": None, "error": None}
        with self._begin() as conn:
            stmt = _insert(conn, jobs).on_conflict_do_update(
                index_elements=["id"],
                set_={**started, "attempts": func.coalesce(jobs.c.attempts, 0) + 1})
            conn.execute(stmt, [_dump(job, **started, attempts=1)])

    def finish_job(self, job_id: str, state: JobState, error: str | None = None) -> None:
        with self._begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state=JobState(state).value, error=error, finished_at=utcnow()))

    def jobs_frame(self, sweep: str | None = None) -> pd.DataFrame:
        """The jobs (every sweep's, or one's), in each sweep's plan order."""
        query = select(jobs).order_by(jobs.c.sweep, jobs.c.position, jobs.c.id)
        if sweep is not None:
            query = query.where(jobs.c.sweep == sweep)
        return self._read(query)
