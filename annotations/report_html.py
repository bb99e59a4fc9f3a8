"""The report as one self-contained HTML page (`render`), from the jinja2 templates in
`templates/`: a section per part of the report, each with its tables and figures, and a note or
the reason where a part has no data yet. No network is needed: figures (`annotations.report_plots`)
are PNGs inside the page, with no external CSS or JavaScript. Autoescape is on, since text from
the store is untrusted (model output, prompts, category and judge names). The template reads the
Report's fields and tables' columns by name: it ignores fields it does not use, and a missing
column or value shows as an empty cell."""

from __future__ import annotations

import base64
import enum
import io
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, Undefined

from annotations import report_plots as plots
from annotations.harm import CalibrationSource, CellStatus

if TYPE_CHECKING:
    from annotations.agreement_tables import JudgeHumanTable
    from annotations.harm import HarmfulnessReport
    from annotations.report import Report
    from annotations.sweeps import ConclusionFlips

SECTIONS = [("overview", "Overview"), ("epochs", "Harmfulness by epoch and seed"),
            ("categories", "Harmfulness by category"), ("subsets", "Category subsets"),
            ("people", "Judges against people"),
            ("leaderboard", "Judge leaderboard, per labelled set"),
            ("scores", "Scores beside labels"), ("toxicity", "Toxicity"),
            ("coherence", "Incoherence, measured"),
            ("judges", "Judges against each other"),
            ("conclusions", "Do the conclusions depend on the judge?"),
            ("variance", "Where the variance comes from"),
            ("capability", "Capability beside safety"),
            ("matched", "Safety at matched capability"),
            ("robustness", "Does the conclusion hold?")]


def missing(value: object) -> bool:
    return (value is None or value is pd.NA or isinstance(value, Undefined)
            or (isinstance(value, (float, np.floating)) and math.isnan(value)))


def shown(value: object) -> object:
    """What `{{ value }}` prints: nothing for a missing value, an enum's value."""
    return "" if missing(value) else value.value if isinstance(value, enum.Enum) else value


def pct(value: object) -> str:
    return "" if missing(value) else f"{100 * float(value):.1f}%"


def num(value: object, digits: int = 2) -> str:
    if missing(value):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def ci(row: dict, name: str, fmt=pct) -> str:
    """`row[name]` with its interval (`{name}_ci_low`, else `ci_low`), e.g. 12.0% [8.1%, 16.3%]."""
    if missing(row.get(name)):
        return ""
    low = row.get(f"{name}_ci_low", row.get("ci_low"))
    high = row.get(f"{name}_ci_high", row.get("ci_high"))
    return f"{fmt(row[name])} [{fmt(low)}, {fmt(high)}]"


def records(frame: pd.DataFrame | None) -> list[dict]:
    return [] if frame is None or isinstance(frame, Undefined) else frame.to_dict("records")


def png(fig) -> str:
    """The matplotlib figure as base64 PNG, for a data: URL (no file, no network)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def correction_missing(result: HarmfulnessReport) -> str:
    """Why an epoch figure has no corrected line ("" when it is not known)."""
    if result.calibration == CalibrationSource.NONE:
        return "no human labels to calibrate the judge yet."
    return "" if result.informative else f"uninformative judge ({result.reason})."


def tuned_sweeps(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(base model, data set) of each fine-tuning in a harmfulness table: one figure each."""
    tuned = table[table["epoch"] > 0]  # mid-epoch checkpoints are on the same sweeps
    return sorted(set(zip(tuned["base_model"].astype(str), tuned["dataset"].astype(str))))


def majority(agreement: JudgeHumanTable | None) -> pd.DataFrame | None:
    """Judge-human agreement against the people's majority; None without any."""
    if agreement is None or agreement.agreement.empty:
        return None
    return agreement.agreement[agreement.agreement["reference"] == "majority"]


def capability_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(capability metrics, harmfulness-per-temperature columns) of the capability table."""
    rates = [c for c in table.columns if str(c).startswith("harmfulness_t")]
    metrics = [c for c in table.columns if c not in rates and c not in
               ("checkpoint_id", "base_model", "dataset", "checkpoint", "seed", "epoch", "step",
                "examples_seen")]
    return metrics, rates


def conclusion_rows(flips: ConclusionFlips) -> tuple[list[str], list[dict]]:
    """The sources (judges, people); and the summary's rows, each with its change under every
    source (None where there is none) and `flip` when the sources disagree."""
    sources = list(dict.fromkeys(flips.changes["source"]))
    changes = {(r["source"], r["seed"], r["epoch"], r["temperature"]): r
               for r in records(flips.changes)}
    rows = [{**r, "flip": not r["agree"], "changes": [
        changes.get((s, r["seed"], r["epoch"], r["temperature"])) for s in sources]}
        for r in records(flips.summary)]
    return sources, rows


ENV = Environment(loader=PackageLoader("annotations"), autoescape=True, trim_blocks=True,
                  lstrip_blocks=True, finalize=shown)
ENV.filters.update(pct=pct, num=num, ci=ci, records=records, png=png)
ENV.globals.update(missing=missing, num=num, plots=plots, sections=SECTIONS, titles=dict(SECTIONS),
                   Calibration=CalibrationSource, Status=CellStatus, majority=majority,
                   correction_missing=correction_missing, tuned_sweeps=tuned_sweeps,
                   capability_columns=capability_columns, conclusion_rows=conclusion_rows)


def render(report: Report) -> str:
    """The report as one HTML page."""
    names = dict(zip(report.judges.get("judge_id", ()), report.judges.get("judge", ())))
    with plots.style():  # the template draws the figures
        return ENV.get_template("report.html").render(
            report=report, primary=names.get(report.primary_judge, str(report.primary_judge)))
