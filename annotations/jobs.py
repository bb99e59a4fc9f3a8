"""The jobs of sweeps as people read them, from the store's jobs table: one row a job, in plan
order, with its state, tries, worker, times and error. The app's Sweep tab and `run.py sweep
CONFIG --status` both show `jobs_table`; neither computes anything else.

A job whose worker died mid-job still says `running`: nothing can tell a dead worker from a slow
one for certain. Submitting the sweep again runs it again, safely.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from annotations.records import JobState
from annotations.store import Store

COLUMNS = ["sweep", "job", "kind", "state", "attempts", "waits for", "worker", "started",
           "finished", "seconds", "error"]


def _utc(value: Any) -> datetime | None:
    """A stored time as UTC (SQLite gives it back without its zone; it was stored in UTC)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    when = pd.Timestamp(value).to_pydatetime()
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _shown(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else ""


def _seconds(state: str, started: datetime | None, finished: datetime | None) -> float | None:
    """How long it ran: to its end, or (running) until now."""
    if started is None:
        return None
    if state == JobState.RUNNING.value:
        return round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    if finished is None or finished < started:
        return None
    return round((finished - started).total_seconds(), 1)


def _missing(value: object) -> bool:
    """None, or a frame's NaN / NaT (a PostgreSQL frame gives NaN where SQLite gives None)."""
    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


def jobs_table(store: Store, sweep: str | None = None) -> pd.DataFrame:
    """Every job of `sweep` (or of every sweep), what it waits for by name."""
    frame = store.jobs_frame(sweep)
    names = dict(zip(frame["id"], frame["name"])) if len(frame) else {}
    rows = []
    for r in frame.to_dict("records"):
        started, finished = _utc(r["started_at"]), _utc(r["finished_at"])
        r = {k: (None if _missing(v) else v) for k, v in r.items()}  # NaN, NaT: not given
        rows.append({
            "sweep": r["sweep"], "job": r["name"], "kind": r["kind"], "state": r["state"],
            "attempts": int(r["attempts"] or 0),
            "waits for": ", ".join(names.get(n, n) for n in (r["needs"] or [])),
            "worker": f"{r['host']} pid {int(r['pid'])}" if r["host"] and r["pid"] else "",
            "started": _shown(started), "finished": _shown(finished),
            "seconds": _seconds(r["state"], started, finished), "error": r["error"] or ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def sweep_names(store: Store) -> list[str]:
    """The sweeps with jobs in the store, most recently submitted first."""
    frame = store.jobs_frame()
    if frame.empty:
        return []
    latest = frame.groupby("sweep")["submitted_at"].max().sort_values(ascending=False)
    return [str(name) for name in latest.index]


def state_counts(table: pd.DataFrame) -> dict[str, int]:
    """Jobs by state, every state named (0 where none)."""
    found = Counter(table["state"]) if len(table) else Counter()
    return {state.value: int(found.get(state.value, 0)) for state in JobState}


def jobs_summary(table: pd.DataFrame) -> str:
    """`12 jobs: 9 done, 1 running, 2 waiting, 0 failed`."""
    counts = state_counts(table)
    said = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return f"{len(table)} jobs: {said}" if len(table) else "no jobs"


def jobs_text(table: pd.DataFrame) -> list[str]:
    """The table as `run.py sweep CONFIG --status` prints it: a job a line."""
    width = max((len(name) for name in table["job"]), default=0)
    lines = [jobs_summary(table)]
    for r in table.to_dict("records"):
        tries = f"{r['attempts']} tr{'y' if r['attempts'] == 1 else 'ies'}"
        seconds = r["seconds"]
        took = "" if seconds is None or seconds != seconds else f"{seconds:.0f} s"
        lines.append(f"  {r['state']:<8} {r['job']:<{width}}  {tries:<9} {took:>7}  {r['worker']}"
                     + (f"  {r['error']}" if r["error"] else ""))
    return lines
