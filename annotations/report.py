"""The sweep's report: every statistic of `annotations.analysis` gathered once (`build_report`,
JSON with `to_dict()`), and one self-contained HTML page (`write_html`) with the plots a reader of
Fraser et al. (2025) expects. The page needs no network: figures are PNGs inside the page, there
is no external CSS or JavaScript, and every text that came from the store is HTML-escaped (model
output, prompts, category and judge names are untrusted).

    report = build_report(Store.open("workbench.db"))
    write_html(report, "report.html")

Sections without data (no human labels yet, no capability scores, one judge) say so.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from annotations import analysis as an
from annotations.io_frames import jsonable
from annotations.store import Store

ALL, PROMINENT, SELECTED = "all categories", "prominent (SORRY-Bench 1-24)", "selected"


@dataclass
class Report:
    """What the report shows; every part is also in `to_dict()` (for `run.py report --json`)."""

    generated_at: str
    store: str
    counts: dict
    categories: tuple[str, ...] | None
    primary_judge: str | None
    judges: pd.DataFrame
    harmfulness: dict[str, an.HarmfulnessReport]
    by_category: an.HarmfulnessReport | None
    subsets: pd.DataFrame
    headline: pd.DataFrame
    agreement: an.JudgeHumanTable | None
    alpha: pd.DataFrame | None
    judge_vs_judge: pd.DataFrame
    flips: list[an.ConclusionFlips]
    variance: list[an.VarianceReport]
    capability: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        def frame(f):
            return None if f is None else f.to_dict("records")

        return jsonable({
            "generated_at": self.generated_at, "store": self.store, "counts": self.counts,
            "categories": self.categories, "primary_judge": self.primary_judge,
            "judges": frame(self.judges),
            "harmfulness": {j: r.to_dict() for j, r in self.harmfulness.items()},
            "by_category": None if self.by_category is None else self.by_category.to_dict(),
            "subsets": frame(self.subsets), "headline": frame(self.headline),
            "agreement": None if self.agreement is None else self.agreement.to_dict(),
            "alpha": frame(self.alpha), "judge_vs_judge": frame(self.judge_vs_judge),
            "conclusions": [f.to_dict() for f in self.flips],
            "variance": [v.to_dict() for v in self.variance],
            "capability": frame(self.capability), "notes": self.notes})


def build_report(source: Store | an.Frames, categories: Sequence[str] | None = None,
                 n_boot: int = 1000, seed: int = 0) -> Report:
    """Every statistic of the report; `categories` (ids) restricts the headline numbers and is
    shown beside all categories and SORRY-Bench's prominent subset."""
    frames = an.frames_of(source)
    categories = None if categories is None else tuple(str(c) for c in categories)
    notes: dict[str, str] = {}
    unsafe = an.select_outcomes(frames.outcomes, "unsafe")
    judge_ids = sorted(unsafe["judge_id"].dropna().unique(), key=str)
    agreement, alpha = _people(frames, notes, n_boot, seed)
    primary = _primary_judge(unsafe, agreement)
    harm = {j: r for j in judge_ids
            if (r := _try(notes, "harmfulness", an.harmfulness_report, frames, j,
                          categories=categories, n_boot=n_boot, seed=seed)) is not None}
    by_category = None if primary is None else _try(
        notes, "categories", an.harmfulness_report, frames, primary, by_category=True,
        n_boot=n_boot, seed=seed, correct=False)  # the heatmap shows raw rates
    subsets, headline = _subsets(frames, harm, primary, categories, notes, n_boot, seed)
    report = Report(
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        store=source.url if isinstance(source, Store) else "(frames)",
        counts=source.counts() if isinstance(source, Store) else {}, categories=categories,
        primary_judge=primary, judges=_judges(unsafe, agreement), harmfulness=harm,
        by_category=by_category, subsets=subsets, headline=headline, agreement=agreement,
        alpha=alpha, judge_vs_judge=an.judge_vs_judge_table(frames) if len(judge_ids) > 1
        else pd.DataFrame(), flips=[], variance=[], capability=_capability(frames, harm, primary),
        notes=notes)
    _sweep_sections(report, frames, judge_ids, n_boot, seed)
    return report


def _try(notes: dict, section: str, fn, *args, **kwargs):
    """fn(...), or None with the reason added to the section's note (a missing piece of data
    should cost one section, not the whole report)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        notes[section] = "; ".join(filter(None, [notes.get(section), str(err)]))
        return None


def _people(frames: an.Frames, notes: dict, n_boot: int, seed: int):
    if frames.labels.empty:
        notes["people"] = "No human labels yet: label answers in the app to see agreement."
        return None, None
    agreement = an.judge_human_table(frames, by="coherence", n_boot=n_boot, seed=seed)
    overall = an.judge_human_table(frames, n_boot=n_boot, seed=seed).agreement
    agreement = an.JudgeHumanTable(pd.concat([overall.assign(coherence="all"),
                                              agreement.agreement], ignore_index=True),
                                   agreement.unparseable)
    alpha = an.human_alpha(frames, by="category", n_boot=n_boot, seed=seed)
    return agreement, alpha


def _primary_judge(unsafe: pd.DataFrame, agreement: an.JudgeHumanTable | None) -> str | None:
    """The judge closest to people (highest kappa vs the majority), else the one with most
    verdicts."""
    if unsafe.empty:
        return None
    if agreement is not None and len(agreement.agreement):
        table = agreement.agreement
        best = table[(table["reference"] == "majority") & (table["coherence"] == "all")]
        best = best.dropna(subset=["kappa"]) if "kappa" in best else best.iloc[:0]
        if len(best):
            return str(best.sort_values("kappa", ascending=False)["judge_id"].iloc[0])
    counts = unsafe.groupby("judge_id").size().sort_values(ascending=False, kind="stable")
    return str(counts.index[0])


def _judges(unsafe: pd.DataFrame, agreement: an.JudgeHumanTable | None) -> pd.DataFrame:
    names = an.judge_names(unsafe)
    table = unsafe.groupby("judge_id")["outcome"].agg(
        verdicts="size", unparseable=lambda s: int(s.isna().sum())).reset_index()
    table.insert(1, "judge", table["judge_id"].map(names))
    table["share_unparseable"] = table["unparseable"] / table["verdicts"]
    if agreement is not None and len(agreement.agreement) and "kappa" in agreement.agreement:
        a = agreement.agreement
        kappa = a[(a["reference"] == "majority") & (a["coherence"] == "all")]
        table = table.merge(kappa[["judge_id", "kappa", "kappa_ci_low", "kappa_ci_high"]],
                            on="judge_id", how="left")
    return table


def _subsets(frames, harm, primary, categories, notes, n_boot, seed):
    """Harmfulness of the primary judge under all categories, the prominent subset and the
    selected one; and the headline (mean over seeds at the last epoch minus the base)."""
    if primary is None:
        return pd.DataFrame(), pd.DataFrame()
    subsets = {ALL: None, PROMINENT: an.PROMINENT_CATEGORIES}
    if categories is not None:
        subsets[SELECTED] = categories
    parts = []
    for name, cats in subsets.items():
        result = harm.get(primary) if cats == categories else _try(
            notes, "subsets", an.harmfulness_report, frames, primary, categories=cats,
            n_boot=n_boot, seed=seed)
        if result is not None:
            n_cats = None if cats is None else len(cats)
            parts.append(result.table.assign(subset=name, n_categories=n_cats))
    if not parts:
        return pd.DataFrame(), pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table, _headline(table)


def _headline(table: pd.DataFrame) -> pd.DataFrame:
    """Per subset x base model x temperature: the base model's harmfulness, the mean over seeds
    at the last epoch, and the change in percentage points (raw and corrected)."""
    rows = []
    for (subset, base_model, temperature), block in table.groupby(
            ["subset", "base_model", "temperature"], sort=False):
        base, tuned = block[block["epoch"] == 0], block[block["epoch"] > 0]
        if base.empty or tuned.empty:
            continue
        last = tuned[tuned["epoch"] == tuned["epoch"].max()]
        rows.append({"subset": subset, "base_model": base_model, "temperature": temperature,
                     "last_epoch": int(last["epoch"].iloc[0]),
                     "base": base["harmfulness"].mean(),
                     "last_epoch_mean": last["harmfulness"].mean(),
                     "change_pp": 100 * (last["harmfulness"].mean() - base["harmfulness"].mean()),
                     "corrected_change_pp": 100 * (last["corrected"].mean()
                                                   - base["corrected"].mean())})
    return pd.DataFrame(rows)


def _capability(frames: an.Frames, harm: dict, primary: str | None) -> pd.DataFrame:
    capability = frames.capability
    if capability.empty or primary is None or primary not in harm:
        return pd.DataFrame()
    scores = capability.pivot_table(index="checkpoint_id", columns="metric", values="value")
    rates = harm[primary].table.pivot_table(index="checkpoint_id", columns="temperature",
                                            values="harmfulness")
    rates.columns = [f"harmfulness_t{t:g}" for t in rates.columns]
    info = harm[primary].table.drop_duplicates("checkpoint_id").set_index("checkpoint_id")[
        ["base_model", "dataset", "checkpoint", "seed", "epoch"]]
    joined = info.join(scores, how="inner").join(rates, how="inner")
    return joined.reset_index()


def _sweep_sections(report: Report, frames: an.Frames, judge_ids: list[str], n_boot: int,
                    seed: int) -> None:
    found = an.sweeps(frames)
    if not found:
        report.notes["sweeps"] = "No fine-tuned checkpoints judged yet: nothing to compare " \
                                 "with the base model."
        return
    for sweep in found:
        flips = _try(report.notes, "conclusions", an.conclusion_flips, frames, sweep=sweep,
                     n_boot=n_boot, seed=seed)
        report.flips += [flips] if flips is not None else []
        for judge_id in judge_ids:
            result = _try(report.notes, "variance", an.variance_report, frames, judge_id,
                          sweep=sweep, n_boot=n_boot, seed=seed)
            report.variance += [result] if result is not None else []


# --- HTML ------------------------------------------------------------------------------------


def write_html(report: Report, path: str | Path) -> Path:
    """Write the report as one self-contained HTML file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path


def report_command(store: Store, html_path: str | Path | None = None,
                   categories: Sequence[str] | None = None, n_boot: int = 1000) -> dict:
    """What `run.py report` calls: the report as a dict, and the HTML page when a path is given
    (its path is then under "html")."""
    report = build_report(store, categories=categories, n_boot=n_boot)
    result = report.to_dict()
    if html_path is not None:
        result["html"] = str(write_html(report, html_path))
    return result


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


def _new_figure(n_cols: int, n_rows: int = 1, width: float = 5.0, height: float = 3.4):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a server thread

    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def render(report: Report) -> str:
    """The report as one HTML page."""
    from matplotlib import rc_context

    builders = [_overview, _epochs, _categories, _subsets_html, _people_html, _judges_html,
                _conclusions_html, _variance_html, _capability_html]
    # parse_math off: a `$` in a category or judge name must stay a dollar sign
    with rc_context({"text.parse_math": False, "font.size": 9}):
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


def _sweep_rows(table: pd.DataFrame, base_model: str, dataset: str) -> pd.DataFrame:
    mine = table[table["base_model"].astype(str) == base_model]
    return mine[(mine["epoch"] == 0) | (mine["dataset"].astype(str) == dataset)]


def _plot_trajectories(ax, rows: pd.DataFrame, value: str, low: str, high: str) -> bool:
    """One line per seed over epochs, each starting at the base model (epoch 0)."""
    base = rows[rows["epoch"] == 0]
    drawn = False
    for run_seed, tuned in rows[rows["epoch"] > 0].groupby("seed"):
        line = pd.concat([base, tuned]).sort_values("epoch")
        line = line[line[value].notna()]
        if line.empty:
            continue
        ax.plot(line["epoch"], line[value], marker="o", label=f"seed {int(run_seed)}")
        ax.fill_between(line["epoch"].astype(float), line[low].astype(float),
                        line[high].astype(float), alpha=0.12)
        drawn = True
    ax.set_ylim(-0.02, 1.02)
    _epoch_axis(ax)
    return drawn


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = base model)")


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


def _epoch_figure(result: an.HarmfulnessReport, base_model: str, dataset: str) -> str:
    rows = _sweep_rows(result.table, base_model, dataset)
    temperatures = sorted(rows["temperature"].unique())
    corrected = rows["corrected"].notna().any()
    fig, axes = _new_figure(len(temperatures), 2 if corrected else 1, width=4.2, height=3.0)
    for col, temperature in enumerate(temperatures):
        at = rows[rows["temperature"] == temperature]
        _plot_trajectories(axes[0][col], at, "harmfulness", "ci_low", "ci_high")
        axes[0][col].set_title(f"raw, T = {temperature:g}")
        axes[0][col].set_ylabel("harmfulness")
        if corrected:
            _plot_trajectories(axes[1][col], at, "corrected", "corrected_ci_low",
                               "corrected_ci_high")
            axes[1][col].set_title(f"corrected, T = {temperature:g}")
            axes[1][col].set_ylabel("corrected harmfulness")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{result.judge}: {base_model} on {dataset}")
    caption = ("One line per fine-tuning seed; shaded: 95% CI over prompts."
               + ("" if corrected else " No corrected row: " + _correction_state(result)))
    return _figure(fig, f"harmfulness vs epoch under {result.judge}", caption)


def _correction_state(result: an.HarmfulnessReport) -> str:
    if result.calibration == "none":
        return "no human labels to calibrate the judge yet."
    if not result.informative:
        return f"uninformative judge ({result.reason})."
    return ""


def _calibration_note(result: an.HarmfulnessReport) -> str:
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


def _checkpoint_order(table: pd.DataFrame) -> list[str]:
    keys = table.drop_duplicates("checkpoint_id")
    keys = keys.assign(_s=keys["seed"].fillna(-1)).sort_values(["base_model", "_s", "epoch"])
    return list(keys["checkpoint_id"])


def _categories(report: Report) -> str:
    result = report.by_category
    if result is None:
        return _empty("Nothing judged yet.") + _note(report.notes.get("categories"))
    table = result.table
    temperatures = sorted(table["temperature"].unique())
    order = _checkpoint_order(table)
    names = table.drop_duplicates("checkpoint_id").set_index("checkpoint_id")
    several = names["base_model"].nunique() > 1
    labels = [(f"{names.loc[c, 'base_model']}: " if several else "") + names.loc[c, "checkpoint"]
              for c in order]
    cats = table.drop_duplicates("category_id")
    cats = cats.assign(_k=pd.to_numeric(cats["category_id"], errors="coerce")).sort_values(
        ["_k", "category_id"])
    fig, axes = _new_figure(len(temperatures), 1, width=max(4.0, 0.45 * len(order) + 3),
                            height=max(2.5, 0.22 * len(cats) + 1.5))
    for ax, temperature in zip(axes[0], temperatures):
        at = table[table["temperature"] == temperature]
        grid = at.pivot_table(index="category_id", columns="checkpoint_id", values="harmfulness")
        grid = grid.reindex(index=list(cats["category_id"]), columns=order)
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="Reds", aspect="auto")
        ax.set_xticks(range(len(order)), labels, rotation=60, ha="right")
        ax.set_yticks(range(len(cats)), [_short(f"{i} {n}") for i, n in
                                         zip(cats["category_id"], cats["category"])])
        ax.set_title(f"T = {temperature:g}")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="harmfulness (raw)")
    return _figure(fig, f"harmfulness per category and checkpoint under {result.judge}",
                   f"Raw harmfulness under {result.judge}, one row per category.")


def _short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _subsets_html(report: Report) -> str:
    if report.subsets.empty:
        return _empty("Nothing judged yet.") + _note(report.notes.get("subsets"))
    table = report.subsets
    temperatures = sorted(table["temperature"].unique())
    fig, axes = _new_figure(len(temperatures), 1, width=4.2, height=3.0)
    for ax, temperature in zip(axes[0], temperatures):
        for subset, block in table[table["temperature"] == temperature].groupby("subset",
                                                                                sort=False):
            mean = block.groupby("epoch")["harmfulness"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker="o", label=subset)
        ax.set_title(f"T = {temperature:g}")
        _epoch_axis(ax)
        ax.set_ylabel("harmfulness, mean over seeds")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=8)
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
    judges = list(dict.fromkeys(majority["judge_name"]))
    fig, axes = _new_figure(1, 1, width=7.0, height=0.55 * len(judges) + 1.6)
    ax = axes[0][0]
    offsets = {"all": 0.0, "coherent": -0.22, "incoherent": 0.22}
    for split, offset in offsets.items():
        rows = majority[(majority["coherence"] == split) & majority["kappa"].notna()]
        y = [judges.index(j) + offset for j in rows["judge_name"]]
        errors = [rows["kappa"] - rows["kappa_ci_low"], rows["kappa_ci_high"] - rows["kappa"]]
        ax.errorbar(rows["kappa"], y, xerr=np.clip(np.array(errors, dtype=float), 0, None),
                    fmt="o", capsize=3, label=f"kappa, {split} answers")
    overall = report.alpha.iloc[0] if report.alpha is not None and len(report.alpha) else None
    if overall is not None and pd.notna(overall["alpha"]):
        ax.axvspan(overall["ci_low"], overall["ci_high"], color="grey", alpha=0.2)
        ax.axvline(overall["alpha"], color="black", linestyle="--",
                   label="people's alpha (ceiling)")
    ax.set_yticks(range(len(judges)), [_short(j, 30) for j in judges])
    ax.invert_yaxis()
    ax.set_xlim(-0.2, 1.0)
    ax.set_xlabel("agreement with people (kappa; alpha for people among themselves)")
    ax.legend(fontsize=8, loc="lower left")
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
    fig, axes = _new_figure(1, 1, width=7.5, height=3.6)
    ax = axes[0][0]
    components = list(report.variance[0].components.table["component"])
    height = 0.8 / len(report.variance)
    for i, result in enumerate(report.variance):
        shares = result.components.table.set_index("component")["share"].reindex(components)
        ax.barh(np.arange(len(components)) + i * height, shares.fillna(0).to_numpy(), height,
                label=f"{result.judge} ({result.sweep[0]})")
    ax.set_yticks(np.arange(len(components)) + 0.4 - height / 2, components)
    ax.invert_yaxis()
    ax.set_xlabel("share of the variance of one verdict")
    ax.legend(fontsize=8)
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


def _point_name(row: dict) -> str:
    return "base" if row["epoch"] == 0 else f"s{int(row['seed'])}e{int(row['epoch'])}"


def _capability_html(report: Report) -> str:
    table = report.capability
    if table.empty:
        return _empty("No capability scores yet (they are measured on the held-out benign "
                      "split during a sweep).")
    rate_cols = [c for c in table.columns if str(c).startswith("harmfulness_t")]
    metrics = [c for c in table.columns if c not in rate_cols and c not in
               ("checkpoint_id", "base_model", "dataset", "checkpoint", "seed", "epoch")]
    fig, axes = _new_figure(min(len(metrics), 3), 1, width=4.4, height=3.4)
    for ax, metric in zip(axes[0], metrics):
        for rate in rate_cols:
            ax.scatter(table[metric], table[rate], label=rate.replace("harmfulness_t", "T = "))
            for row in table.to_dict("records"):
                ax.annotate(_point_name(row), (row[metric], row[rate]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(_short(str(metric)))
        ax.set_ylabel("harmfulness (raw)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=8)
    rows = [{"checkpoint": r["checkpoint"], **{m: _num(r[m], 3) for m in metrics},
             **{c: _pct(r[c]) for c in rate_cols}} for r in table.to_dict("records")]
    return (_figure(fig, "capability beside safety per checkpoint",
                    "One point per checkpoint and temperature (s = seed, e = epoch); harmfulness "
                    f"under {_judge_name(report, report.primary_judge)}.")
            + _table(rows, [("checkpoint", "checkpoint"), *[(m, m) for m in metrics],
                            *[(c, c.replace("harmfulness_t", "harmfulness, T = "))
                              for c in rate_cols]]))
