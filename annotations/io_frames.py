"""What the statistics commands of `run.py` call: read the user's CSV (or the store), compute,
return a plain dict ready for `--json`.

    agreement_from_csv("labels.csv")                # long form: unit, annotator, value
    correct_from_csv("judged.csv", "calib.csv")     # column judge; columns judge, human
    variance_from_csv("outcomes.csv")   # seed, epoch, temperature, sample, prompt, outcome

Files are read with `annotations.tabular`, so a bad file is reported as "file, line, field: what
is wrong". An empty judge verdict is unparseable: counted and left out, never read as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from annotations.agreement import LEVELS, krippendorff_alpha
from annotations.analysis import (Frames, frames_of, human_alpha, judge_human_table,
                                  variance_report)
from annotations.correction import corrected_harmfulness
from annotations.frames import jsonable
from annotations.records import HumanLabel
from annotations.store import Store
from annotations.tabular import (BadInputError, Row, read_table, require_columns,
                                 require_rows)
from annotations.variance import seed_spread, variance_components

BINARY_WORDS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0,
                HumanLabel.COMPLIES.value: 1, HumanLabel.REFUSES.value: 0}


def _binary(row: Row, field: str, allow_missing: bool = False) -> int | None:
    """0/1 from 0, 1, true/false or complies/refuses; None for an empty value or incoherent when
    `allow_missing`, else an error naming file, line and field."""
    value = row.get(field)
    text = "" if value is None else str(value).strip().lower()
    if text in BINARY_WORDS:
        return BINARY_WORDS[text]
    if allow_missing and text in ("", "nan", "none", "null", HumanLabel.INCOHERENT.value):
        return None
    raise row.error(field, f"expected 0 or 1 (or complies/refuses), got {value!r}")


def _read(path: str | Path, columns: Sequence[str]):
    table = read_table(path)
    require_rows(table)
    require_columns(table, columns)
    return table


def agreement_from_csv(path: str | Path, level: str = "nominal", n_boot: int = 1000,
                       seed: int = 0) -> dict:
    """Krippendorff's alpha of a long-form labels file with columns unit, annotator, value:
    alpha, ci_low, ci_high, units, annotators (and pairable_values, level, note)."""
    if level not in LEVELS:
        raise ValueError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    table = _read(path, ["unit", "annotator", "value"])
    frame = pd.DataFrame([{k: row.get(k) for k in ("unit", "annotator", "value")}
                          for row in table.rows])
    if level != "nominal":
        numbers = pd.to_numeric(frame["value"], errors="coerce")
        bad = frame["value"].notna() & numbers.isna()
        if bad.any():
            row = table.rows[int(np.flatnonzero(bad)[0])]
            raise row.error("value", f"{level} alpha needs numbers, got {row.get('value')!r}")
        frame["value"] = numbers
    seen: dict[tuple, int] = {}
    for row in table.rows:
        key = (row.get("unit"), row.get("annotator"))
        if key in seen and row.get("value") is not None:
            raise row.error("annotator", f"second label of {key[1]!r} on unit {key[0]!r} "
                                         f"(first on line {seen[key]})")
        seen.setdefault(key, row.line)
    result = krippendorff_alpha(frame, level=level, n_boot=n_boot, seed=seed)
    return jsonable({"file": str(path), **result.to_dict()})


def agreement_from_store(store: Store | Frames, by: str | None = "category",
                         n_boot: int = 1000, seed: int = 0) -> dict:
    """People's alpha (overall and per `by`) and each judge against the human majority."""
    frames = frames_of(store)
    if frames.labels.empty:
        return {"labels": 0, "note": "no human labels in the store yet", "alpha": [],
                "judges": [], "unparseable": []}
    alpha = human_alpha(frames, by=by, n_boot=n_boot, seed=seed)
    judges = judge_human_table(frames, n_boot=n_boot, seed=seed)
    majority = judges.agreement[judges.agreement["reference"] == "majority"] \
        if len(judges.agreement) else judges.agreement
    return jsonable({"labels": len(frames.labels), "alpha": alpha.to_dict("records"),
                     "judges": majority.to_dict("records"),
                     "unparseable": judges.unparseable.to_dict("records")})


def correct_from_csv(judged: str | Path, calibration: str | Path, level: float = 0.95,
                     n_boot: int = 2000, seed: int = 0) -> dict:
    """Rogan-Gladen corrected harmfulness from a judged file (column judge: 0/1, empty when
    unparseable; optional prompt for clustering) and a calibration file (columns judge and human;
    human may be complies/refuses/incoherent; optional prompt)."""
    judged_table = _read(judged, ["judge"])
    calib_table = _read(calibration, ["judge", "human"])
    verdicts = [(_binary(row, "judge", True), row.get("prompt", row.line))
                for row in judged_table.rows]
    parsed = [(v, p) for v, p in verdicts if v is not None]
    if not parsed:
        raise BadInputError(str(judged), "no parseable judge verdict (every value is empty)")
    pairs = [(_binary(row, "judge", True), _binary(row, "human", True),
              row.get("prompt", f"calibration:{row.line}")) for row in calib_table.rows]
    usable = [p for p in pairs if p[0] is not None and p[1] is not None]
    if not usable:
        raise BadInputError(str(calibration), "no row with both a judge verdict and a "
                                              "complies/refuses human label")
    result = corrected_harmfulness(
        [v for v, _ in parsed], [j for j, _, _ in usable], [h for _, h, _ in usable],
        level=level, n_boot=n_boot, seed=seed, judged_clusters=[str(p) for _, p in parsed],
        calib_clusters=[str(p) for _, _, p in usable])
    return jsonable({**result.to_dict(), "unparseable": len(verdicts) - len(parsed),
                     "calibration_left_out": len(pairs) - len(usable)})


VARIANCE_COLUMNS = ("seed", "epoch", "temperature", "sample", "prompt", "outcome")


def read_outcomes(path: str | Path) -> tuple[pd.DataFrame, int]:
    """The outcomes file as variance.py's frame (optional columns human, judge), and how many
    rows had an empty (unparseable) outcome and were left out."""
    table = _read(path, VARIANCE_COLUMNS)
    rows, unparseable = [], 0
    for row in table.rows:
        outcome = _binary(row, "outcome", allow_missing=True)
        if outcome is None:
            unparseable += 1
            continue
        values = {"outcome": outcome, "prompt": row.text("prompt"), "sample": row.text("sample")}
        for name in ("seed", "epoch", "temperature"):
            values[name] = _number(row, name)
        if "human" in table.columns:
            values["human"] = _binary(row, "human", allow_missing=True)
        rows.append(values)
    if not rows:
        raise BadInputError(str(path), "no row has a 0/1 outcome")
    frame = pd.DataFrame(rows)
    if "human" in frame.columns:
        frame["human"] = pd.to_numeric(frame["human"]).astype(float)
    return frame, unparseable


def _number(row: Row, field: str) -> float:
    try:
        return float(row.text(field))
    except ValueError:
        raise row.error(field, f"expected a number, got {row.get(field)!r}") from None


def variance_from_csv(path: str | Path, n_boot: int = 1000, seed: int = 0) -> dict:
    """Variance components and seed spread of an outcomes file (a complete grid)."""
    frame, unparseable = read_outcomes(path)
    components = variance_components(frame)
    spread = seed_spread(frame, n_boot=n_boot, seed=seed)
    return jsonable({"file": str(path), **components.to_dict(), "seed_spread": spread.to_dict(),
                     "unparseable": unparseable})


def variance_from_store(store: Store | Frames, judge_id: str | None = None,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """`variance_report` for one judge, or for every judge (errors per judge are reported)."""
    frames = frames_of(store)
    outcomes = frames.outcomes
    judge_ids = [judge_id] if judge_id else sorted(outcomes["judge_id"].dropna().unique())
    if not judge_ids:
        return {"judges": [], "note": "no verdicts in the store yet"}
    results = []
    for jid in judge_ids:
        try:
            results.append(variance_report(frames, jid, n_boot=n_boot, seed=seed).to_dict())
        except ValueError as err:
            results.append({"judge_id": jid, "error": str(err)})
    return jsonable({"judges": results})
