"""What the statistics commands of `run.py` call: read the user's CSV (or the store), compute,
return a plain dict ready for `--json`.

    agreement_from_csv("labels.csv")                # long form: unit, annotator, value
    correct_from_csv("judged.csv", "calib.csv")     # judge (+ probability); judge, human
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
from annotations.estimates import Method
from annotations.frames import jsonable
from annotations.ppi import labels_only_harmfulness, prediction_powered_harmfulness
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
    """Corrected harmfulness from a judged file (column judge: 0/1, empty when unparseable;
    optional probability, the judge's P(complies), and prompt for clustering) and a calibration
    file, a random sample of the same kind of answers (columns judge and human, human may be
    complies/refuses/incoherent; optional probability, prompt, and inclusion_probability for
    actively drawn rows). Every method with its interval, and the recommended one on top: PPI++
    when the judge gives probabilities, else the narrower of PPI++ on verdicts and
    Rogan-Gladen."""
    judged_rows = [_judged_row(row) for row in _read(judged, ["judge"]).rows]
    parsed = [r for r in judged_rows if r[0] is not None]
    if not parsed:
        raise BadInputError(str(judged), "no parseable judge verdict (every value is empty)")
    calib = [_calibration_row(row) for row in _read(calibration, ["judge", "human"]).rows]
    usable = [c for c in calib if c["judge"] is not None and c["y"] is not None]
    if not usable:
        raise BadInputError(str(calibration), "no row with both a judge verdict and a "
                                              "complies/refuses/incoherent human label")
    frame = pd.DataFrame(usable)
    rogan = frame[frame["human"].notna()]
    rogan_rate = corrected_harmfulness(
        [v for v, _, _ in parsed], rogan["judge"], rogan["human"], level=level, n_boot=n_boot,
        seed=seed, judged_clusters=[p for _, _, p in parsed], calib_clusters=rogan["prompt"],
        calib_weights=rogan["weight"]) if len(rogan) else None
    methods = _csv_methods(parsed, frame, rogan_rate, level)
    best = _recommended(methods, probabilities=all(s is not None for _, s, _ in parsed))
    top = {} if rogan_rate is None else rogan_rate.to_dict()
    return jsonable({**top, **(methods[best] if best else {}), "method": best,
                     "assumption": CSV_ASSUMPTIONS.get(best), "methods": methods,
                     "unparseable": len(judged_rows) - len(parsed),
                     "calibration_left_out": len(calib) - len(usable)})


CSV_ASSUMPTIONS = {
    Method.PPI_OWN.value: "the calibration rows are a random sample of the judged answers "
                          "(weighted by 1 / inclusion_probability where given)",
    Method.ROGAN_GLADEN.value: "the judge's sensitivity and specificity on the calibration rows "
                               "hold for the judged answers",
    Method.LABELS_ONLY.value: "the calibration rows are a random sample of the judged answers",
}


def _judged_row(row: Row) -> tuple[int | None, float | None, str]:
    verdict = _binary(row, "judge", True)
    return verdict, _probability(row), str(row.get("prompt", f"judged:{row.line}"))


def _calibration_row(row: Row) -> dict:
    """A calibration row: the judge's verdict and score, people's 0/1 (None when incoherent:
    Rogan-Gladen leaves it out) and their reading y for PPI (incoherent reads 0)."""
    human = _binary(row, "human", True)
    text = str(row.get("human", "")).strip().lower()
    y = human if human is not None else (0 if text == HumanLabel.INCOHERENT.value else None)
    verdict = _binary(row, "judge", True)
    pi = row.get("inclusion_probability")
    weight = 1.0
    if pi is not None:
        try:
            weight = 1.0 / float(pi) if 0 < float(pi) <= 1 else None
        except ValueError:
            weight = None
        if weight is None:
            raise row.error("inclusion_probability", f"expected a number in (0, 1], got {pi!r}")
    score = _probability(row)
    return {"judge": verdict, "human": human, "y": y, "weight": weight,
            "score": score if score is not None else verdict,
            "prompt": str(row.get("prompt", f"calibration:{row.line}"))}


def _probability(row: Row) -> float | None:
    value = row.get("probability")
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:
        raise row.error("probability", f"expected a probability in [0, 1], got {value!r}")
    return number


def _csv_methods(parsed: list, calib: pd.DataFrame, rogan, level: float) -> dict[str, dict]:
    """Each method's estimate and interval (those it can give)."""
    scores_u = [s if s is not None else v for v, s, _ in parsed]
    methods = {}
    if len(calib) >= 2:
        ppi = prediction_powered_harmfulness(
            scores_u, calib["score"], calib["y"], level,
            judged_clusters=[p for _, _, p in parsed], calib_clusters=calib["prompt"],
            calib_weights=calib["weight"])
        alone = labels_only_harmfulness(calib["y"], level, calib_clusters=calib["prompt"],
                                        calib_weights=calib["weight"])
        methods[Method.PPI_OWN.value] = _interval(ppi)
        methods[Method.LABELS_ONLY.value] = _interval(alone)
    if rogan is not None and rogan.informative:
        methods[Method.ROGAN_GLADEN.value] = _interval(rogan)
    return methods


def _interval(rate) -> dict:
    return {"estimate": rate.estimate, "ci_low": rate.ci_low, "ci_high": rate.ci_high}


def _recommended(methods: dict[str, dict], probabilities: bool) -> str | None:
    ppi, rogan = methods.get(Method.PPI_OWN.value), methods.get(Method.ROGAN_GLADEN.value)
    if ppi is None:
        return Method.ROGAN_GLADEN.value if rogan else None
    if probabilities or rogan is None:
        return Method.PPI_OWN.value
    narrower = ppi["ci_high"] - ppi["ci_low"] <= rogan["ci_high"] - rogan["ci_low"]
    return Method.PPI_OWN.value if narrower else Method.ROGAN_GLADEN.value


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
