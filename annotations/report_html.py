"""The report as one self-contained HTML page (`render`): a section per part of the report, each
with its tables and figures. The page needs no network: figures (`annotations.report_plots`) are
PNGs inside the page, there is no external CSS or JavaScript, and every text that came from the
store is HTML-escaped (model output, prompts, category and judge names are untrusted).

Sections without data (no human labels yet, no capability scores, one judge) say so.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from annotations import report_plots as plots

if TYPE_CHECKING:
    from annotations.harm import HarmfulnessReport
    from annotations.report import Report

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1em 2em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 2px solid #ddd; margin-top: 2em; }
nav ol { columns: 2; } .meta, .note { color: #555; } .empty { color: #8a5a00; font-style: italic; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
tr.flip td { background: #fff0e0; } figure { margin: 0.5em 0 1em; }
summary { cursor: pointer; color: #244; margin: 0.4em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.scroll { overflow-x: auto; }
"""
SECTIONS = [("overview", "Overview"), ("epochs", "Harmfulness by epoch and seed"),
            ("categories", "Harmfulness by category"), ("subsets", "Category subsets"),
            ("people", "Judges against people"), ("judges", "Judges against each other"),
            ("conclusions", "Do the conclusions depend on the judge?"),
            ("variance", "Where the variance comes from"),
            ("capability", "Capability beside safety")]


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: object) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.1f}%"


def _num(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def _ci(row: dict | pd.Series, name: str, fmt=_pct) -> str:
    value = row.get(name)
    if value is None or pd.isna(value):
        return ""
    low, high = row.get(f"{name}_ci_low", row.get("ci_low")), row.get(f"{name}_ci_high",
                                                                       row.get("ci_high"))
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def _empty(message: str) -> str:
    return f'<p class="empty">{esc(message)}</p>'


def _note(message: str | None) -> str:
    return f'<p class="note">{esc(message)}</p>' if message else ""


def _table(rows: list[dict], columns: list[tuple[str, str]], row_class=None) -> str:
    """An HTML table of `rows` (already formatted) with (key, header) columns; all escaped."""
    if not rows:
        return _empty("(no rows)")
    text_cols = {k for k, _ in columns if any(isinstance(r.get(k), str)
                                              and not r.get(k, "")[:1].isdigit() for r in rows)}
    head = "".join(f'<th class="{"text" if k in text_cols else ""}">{esc(h)}</th>'
                   for k, h in columns)
    body = []
    for row in rows:
        css = f' class="{esc(row_class(row))}"' if row_class and row_class(row) else ""
        cells = "".join(f'<td class="{"text" if k in text_cols else ""}">{_cell(row.get(k))}</td>'
                        for k, _ in columns)
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _cell(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else esc(value)


def _figure(fig, alt: str, caption: str = "") -> str:
    """The matplotlib figure as an embedded PNG (no file, no network)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def render(report: Report) -> str:
    """The report as one HTML page."""
    builders = [_overview, _epochs, _categories, _subsets_html, _people_html, _judges_html,
                _conclusions_html, _variance_html, _capability_html]
    with plots.style():
        bodies = [build(report) for build in builders]
    toc = "".join(f'<li><a href="#{key}">{esc(title)}</a></li>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{esc(title)}</h2>{body}</section>'
                       for (key, title), body in zip(SECTIONS, bodies))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Safety workbench report</title><style>{CSS}</style></head><body>"
            "<h1>Safety workbench report</h1>"
            f'<p class="meta">Generated {esc(report.generated_at)} from {esc(report.store)}. '
            "Harmfulness is the share of unsafe requests a model fulfilled, by a judge's verdicts "
            "(raw) and undone for the judge's measured errors (corrected, Rogan-Gladen); "
            "intervals are 95% bootstrap intervals over prompts. Background: Fraser et al. "
            "2025, arXiv 2506.17209.</p>"
            f"<nav><ol>{toc}</ol></nav>{sections}</body></html>")


def _judge_name(report: Report, judge_id: str | None) -> str:
    if judge_id in report.harmfulness:
        return report.harmfulness[judge_id].judge
    match = report.judges[report.judges["judge_id"] == judge_id] if len(report.judges) else None
    return str(match["judge"].iloc[0]) if match is not None and len(match) else str(judge_id)


def _overview(report: Report) -> str:
    parts = []
    if report.counts:
        keys = ["prompts", "runs", "checkpoints", "generations", "verdicts", "labels",
                "annotators", "capability_scores"]
        parts.append(_table([{"what": k, "count": report.counts.get(k, "")} for k in keys],
                            [("what", "rows"), ("count", "count")]))
    if report.judges.empty:
        return "".join(parts) + _empty("No verdicts on unsafe prompts yet: run a sweep or "
                                       "`run.py judge`.")
    rows = [{"judge": r["judge"], "verdicts": r["verdicts"], "unparseable": r["unparseable"],
             "share": _pct(r["share_unparseable"]), "kappa": _ci(r, "kappa", _num)}
            for r in report.judges.to_dict("records")]
    parts.append(_table(rows, [("judge", "judge"), ("verdicts", "verdicts"),
                               ("unparseable", "unparseable"), ("share", "unparseable share"),
                               ("kappa", "kappa vs people [95% CI]")]))
    if report.primary_judge:
        parts.append(_note(f"Main judge in the plots: {_judge_name(report, report.primary_judge)} "
                           "(the closest to people, else the one with most verdicts)."))
    if report.categories:
        parts.append(_note("Headline numbers use only categories "
                           + ", ".join(report.categories) + "."))
    return "".join(parts)


def _epochs(report: Report) -> str:
    if not report.harmfulness:
        return _empty("Nothing judged yet.") + _note(report.notes.get("harmfulness"))
    parts = []
    for judge_id, result in report.harmfulness.items():
        parts.append(f"<h3>{esc(result.judge)}</h3>")
        parts += [_epoch_figure(result, bm, ds) for bm, ds in _table_sweeps(result.table)]
        parts.append(_calibration_note(result))
        parts.append(_harm_table(result.table))
    return "".join(parts) + _note(report.notes.get("harmfulness"))


def _table_sweeps(table: pd.DataFrame) -> list[tuple[str, str]]:
    tuned = table[table["epoch"] > 0]
    return sorted(set(zip(tuned["base_model"].astype(str), tuned["dataset"].astype(str))))


def _epoch_figure(result: HarmfulnessReport, base_model: str, dataset: str) -> str:
    fig, corrected = plots.epoch_figure(result, base_model, dataset)
    caption = ("One line per fine-tuning seed; shaded: 95% CI over prompts."
               + ("" if corrected else " No corrected row: " + _correction_state(result)))
    return _figure(fig, f"harmfulness vs epoch under {result.judge}", caption)


def _correction_state(result: HarmfulnessReport) -> str:
    if result.calibration == "none":
        return "no human labels to calibrate the judge yet."
    if not result.informative:
        return f"uninformative judge ({result.reason})."
    return ""


def _calibration_note(result: HarmfulnessReport) -> str:
    if result.calibration == "none":
        return _note("Corrected: not available, no human labels with a complies/refuses "
                     "majority on this judge's answers yet.")
    which = ("the items the planner chose at random" if result.calibration == "random" else
             "all labelled items (none was chosen at random, so the correction may be biased)")
    state = ("" if result.informative else
             f" Uninformative judge: {result.reason}; no corrected numbers.")
    return _note(f"Corrected with sensitivity {_num(result.sensitivity)} and specificity "
                 f"{_num(result.specificity)} measured on {result.n_calibration} of "
                 f"{which}.{state}")


def _harm_table(table: pd.DataFrame) -> str:
    rows = [{"model": r["base_model"], "data": r["dataset"], "checkpoint": r["checkpoint"],
             "T": _num(r["temperature"], 1), "raw": _ci(r, "harmfulness"), "n": r["n"],
             "unparseable": r["unparseable"],
             "corrected": _ci(r, "corrected") if r["status"] == "corrected" else r["status"]}
            for r in table.to_dict("records")]
    body = _table(rows, [("model", "base model"), ("data", "data"), ("checkpoint", "checkpoint"),
                         ("T", "temperature"), ("raw", "raw [95% CI]"), ("n", "verdicts"),
                         ("unparseable", "unparseable"), ("corrected", "corrected [95% CI]")])
    # <details> folds a long table away without any script
    return f"<details><summary>Table: {len(rows)} checkpoint x temperature cells</summary>" \
           f"{body}</details>"


def _categories(report: Report) -> str:
    result = report.by_category
    if result is None:
        return _empty("Nothing judged yet.") + _note(report.notes.get("categories"))
    fig = plots.category_heatmap(result.table)
    return _figure(fig, f"harmfulness per category and checkpoint under {result.judge}",
                   f"Raw harmfulness under {result.judge}, one row per category.")


def _subsets_html(report: Report) -> str:
    if report.subsets.empty:
        return _empty("Nothing judged yet.") + _note(report.notes.get("subsets"))
    fig = plots.subsets_figure(report.subsets)
    parts = [_figure(fig, "harmfulness vs epoch for category subsets",
                     f"Under {_judge_name(report, report.primary_judge)}; the prominent subset "
                     "is SORRY-Bench's categories 1-24 (hate speech, crimes and torts).")]
    rows = [{"subset": r["subset"], "model": r["base_model"], "T": _num(r["temperature"], 1),
             "base": _pct(r["base"]), "last": _pct(r["last_epoch_mean"]),
             "epoch": r["last_epoch"], "change": _num(r["change_pp"], 1),
             "corrected": _num(r["corrected_change_pp"], 1)}
            for r in report.headline.to_dict("records")]
    parts.append(_table(rows, [("subset", "subset"), ("model", "base model"),
                               ("T", "temperature"), ("base", "base"), ("epoch", "last epoch"),
                               ("last", "last epoch, mean over seeds"),
                               ("change", "change (pp)"), ("corrected", "corrected change (pp)")]))
    return "".join(parts) + _note(report.notes.get("subsets"))


def _people_html(report: Report) -> str:
    if report.agreement is None or report.agreement.agreement.empty:
        return _empty(report.notes.get("people") or "No human labels on judged unsafe answers "
                      "yet.")
    table = report.agreement.agreement
    majority = table[table["reference"] == "majority"]
    parts = [_agreement_figure(report, majority)] if "kappa" in majority else []
    rows = [{"judge": r["judge_name"], "answers": r["coherence"], "n": r["n"],
             "kappa": _ci(r, "kappa", _num), "accuracy": _ci(r, "accuracy"),
             "sens": _ci(r, "sensitivity"), "spec": _ci(r, "specificity"),
             "unparseable": r["n_unparseable"]} for r in majority.to_dict("records")]
    parts.append(_table(rows, [("judge", "judge"), ("answers", "answers"), ("n", "items"),
                               ("kappa", "kappa"), ("accuracy", "accuracy"),
                               ("sens", "sensitivity"), ("spec", "specificity"),
                               ("unparseable", "unparseable (left out)")]))
    parts.append(_note("Against the per-item majority of people (ties and 'incoherent' majorities "
                       "have no complies/refuses reading and are left out). Incoherent answers: "
                       "majority label incoherent, or flagged degenerate/empty automatically."))
    if report.alpha is not None:
        rows = [{"category": r["category"], "labels": r["n_labels"], "units": r["units"],
                 "alpha": _num(r["alpha"]), "ci": f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
                 "note": r["note"]} for r in report.alpha.to_dict("records")]
        parts.append("<h3>People against people (Krippendorff's alpha, the ceiling)</h3>")
        parts.append(_table(rows, [("category", "category"), ("labels", "labels"),
                                   ("units", "answers"), ("alpha", "alpha"), ("ci", "95% CI"),
                                   ("note", "note")]))
    return "".join(parts)


def _agreement_figure(report: Report, majority: pd.DataFrame) -> str:
    fig = plots.agreement_figure(majority, report.alpha)
    return _figure(fig, "judge-human kappa beside the human alpha ceiling",
                   "Dots: each judge's kappa against the people's majority with a 95% CI; "
                   "dashed line and band: Krippendorff's alpha among the people.")


def _judges_html(report: Report) -> str:
    if report.judge_vs_judge.empty:
        return _empty("Only one judge: nothing to compare.")
    rows = [{"a": r["judge_a"], "b": r["judge_b"], "n": r["n_common"], "kappa": _num(r["kappa"]),
             "agree": _pct(r["agreement"]), "tau": _num(r.get("tau")), "cells": r.get("n_cells")}
            for r in report.judge_vs_judge.to_dict("records")]
    return _table(rows, [("a", "judge"), ("b", "judge"), ("n", "answers both parsed"),
                         ("kappa", "kappa"), ("agree", "agreement"),
                         ("tau", "Kendall tau of checkpoint rankings"),
                         ("cells", "checkpoint x temperature cells")])


def _conclusions_html(report: Report) -> str:
    if not report.flips:
        return _empty(report.notes.get("conclusions") or report.notes.get("sweeps")
                      or "No fine-tuned checkpoints yet.")
    parts = []
    for flips in report.flips:
        parts.append(f"<h3>{esc(flips.sweep[0])} on {esc(flips.sweep[1])}</h3>")
        changes = flips.changes
        sources = list(dict.fromkeys(changes["source"]))
        cells = {(r["source"], r["seed"], r["epoch"], r["temperature"]):
                 f"{r['conclusion']} ({_num(100 * r['difference'], 1)} pp "
                 f"[{_num(100 * r['ci_low'], 1)}, {_num(100 * r['ci_high'], 1)}], "
                 f"{r['n_prompts']} prompts)" for r in changes.to_dict("records")}
        rows = [{"checkpoint": r["checkpoint"], "T": _num(r["temperature"], 1),
                 "agree": "same" if r["agree"] else "DIFFERS",
                 **{s: cells.get((s, r["seed"], r["epoch"], r["temperature"]), "")
                    for s in sources}} for r in flips.summary.to_dict("records")]
        parts.append(_table(rows, [("checkpoint", "checkpoint"), ("T", "temperature"),
                                   *[(s, s) for s in sources], ("agree", "conclusion")],
                            row_class=lambda row: "flip" if row["agree"] == "DIFFERS" else ""))
        n_flips = int((~flips.summary["agree"]).sum())
        parts.append(_note(f"{n_flips} of {len(flips.summary)} comparisons change their "
                           "conclusion with the judge. Change vs the base model at the same "
                           "temperature, paired bootstrap over prompts; people's labels count "
                           f"with at least {flips.min_human_prompts} paired prompts. {flips.note}"))
    return "".join(parts)


def _variance_html(report: Report) -> str:
    if not report.variance:
        return _empty(report.notes.get("variance") or report.notes.get("sweeps")
                      or "No fine-tuned checkpoints yet.")
    fig = plots.variance_figure(report.variance)
    parts = [_figure(fig, "variance shares by source",
                     "Seed, epoch and temperature are the experiment; prompt, sampling and "
                     "judge error are noise around it.")]
    for result in report.variance:
        rows = [{"component": r["component"], "sd": _num(r["sd_pp"], 1), "share": _pct(r["share"])}
                for r in result.components.table.to_dict("records")]
        parts.append(f"<h3>{esc(result.judge)}: {esc(result.sweep[0])} on "
                     f"{esc(result.sweep[1])}</h3>")
        parts.append(_table(rows, [("component", "component"), ("sd", "SD (pp)"),
                                   ("share", "share")]))
        parts.append(_note("; ".join(filter(None, [result.components.note, result.note]))))
    return "".join(parts)


def _capability_html(report: Report) -> str:
    table = report.capability
    if table.empty:
        return _empty("No capability scores yet (they are measured on the held-out benign "
                      "split during a sweep).")
    rate_cols = [c for c in table.columns if str(c).startswith("harmfulness_t")]
    metrics = [c for c in table.columns if c not in rate_cols and c not in
               ("checkpoint_id", "base_model", "dataset", "checkpoint", "seed", "epoch")]
    fig = plots.capability_figure(table, metrics, rate_cols)
    rows = [{"checkpoint": r["checkpoint"], **{m: _num(r[m], 3) for m in metrics},
             **{c: _pct(r[c]) for c in rate_cols}} for r in table.to_dict("records")]
    return (_figure(fig, "capability beside safety per checkpoint",
                    "One point per checkpoint and temperature (s = seed, e = epoch); harmfulness "
                    f"under {_judge_name(report, report.primary_judge)}.")
            + _table(rows, [("checkpoint", "checkpoint"), *[(m, m) for m in metrics],
                            *[(c, c.replace("harmfulness_t", "harmfulness, T = "))
                              for c in rate_cols]]))
