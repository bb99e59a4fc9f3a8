"""The report on the simulated sweep of sweep_builder: its numbers are the analysis functions'
numbers, the HTML page is one self-contained file with a figure per plot and escaped store text,
and sections without data say so instead of failing."""

from __future__ import annotations

import dataclasses
import json
import re

import pandas as pd
import pytest
from sweep_builder import CATEGORIES, build_sweep  # the same simulated sweep as test_analysis

from annotations.analysis import CellStatus, Frames, PROMINENT_CATEGORIES, harmfulness_report
from annotations.report import Report, build_report, report_command, write_html
from annotations.report_html import SECTIONS, render
from annotations.store import Store

TITLES = [title for _, title in SECTIONS]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return build_sweep(tmp_path_factory.mktemp("report") / "sim.db")


@pytest.fixture(scope="module")
def report(sweep):
    return build_report(sweep.store, n_boot=200)


@pytest.fixture(scope="module")
def page(report, tmp_path_factory) -> str:
    path = write_html(report, tmp_path_factory.mktemp("html") / "report.html")
    return path.read_text(encoding="utf-8")


def _section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"no section {key}"
    return match.group(1)


def test_report_numbers_are_the_analysis_numbers(sweep, report):
    judge = sweep.judges["accurate"]
    assert report.primary_judge == judge  # the judge closest to people
    direct = harmfulness_report(sweep.store, judge, n_boot=200).table
    shown = report.harmfulness[judge].table
    pd.testing.assert_series_equal(shown["harmfulness"], direct["harmfulness"])
    assert set(report.subsets["subset"]) == {"all categories", "prominent (SORRY-Bench 1-24)"}
    assert len(report.flips) == 1 and len(report.variance) == 2
    assert report.counts["labels"] == len(sweep.labels)
    data = report.to_dict()
    json.dumps(data, allow_nan=False)  # strict JSON for `run.py report --json`
    assert data["primary_judge"] == judge and data["alpha"][0]["category"] == "all"


def test_headline_moves_with_the_category_subset(sweep, report):
    headline = report.headline.set_index(["subset", "temperature"])
    prominent = sweep.verdicts[(sweep.verdicts["judge"] == "accurate")
                               & sweep.verdicts["category_id"].isin(PROMINENT_CATEGORIES)
                               & (sweep.verdicts["temperature"] == 0.0)]
    base = prominent[prominent["epoch"] == 0]["label"].mean()
    last = prominent[prominent["epoch"] == 2]["label"].mean()  # both seeds: 20 prompts each
    row = headline.loc[("prominent (SORRY-Bench 1-24)", 0.0)]
    assert row["base"] == pytest.approx(base) and row["last_epoch_mean"] == pytest.approx(last)
    assert row["change_pp"] == pytest.approx(100 * (last - base))


def test_selected_categories_restrict_the_headline(sweep):
    report = build_report(sweep.store, categories=["30"], n_boot=100)
    table = report.harmfulness[sweep.judges["accurate"]].table
    assert (table["n"] == 10).all()  # ten prompts in category 30 per cell
    assert "selected" in set(report.subsets["subset"])


def test_html_is_one_self_contained_file(page):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page.lower()


def test_html_has_every_section_and_a_figure_per_plot(page):
    for title in TITLES:
        assert f"<h2>{title}</h2>" in page
    figures = {"epochs": 2, "categories": 1, "subsets": 1, "people": 1, "variance": 1,
               "capability": 1}
    for key, count in figures.items():
        body = _section(page, key)
        assert body.count('<img alt="') + body.count("<svg") >= count, key
        assert "data:image/png;base64," in body
    assert "DIFFERS" in _section(page, "conclusions") or "same" in _section(page, "conclusions")


def test_html_escapes_text_from_the_store(page):
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _section(page, "people")


def test_report_without_labels_or_capability_says_so(sweep, tmp_path):
    frames = Frames.from_store(sweep.store)
    bare = build_report(Frames(frames.outcomes, checkpoints=frames.checkpoints), n_boot=100)
    assert bare.agreement is None and bare.alpha is None
    page = write_html(bare, tmp_path / "bare.html").read_text()
    assert "No human labels yet" in _section(page, "people")
    assert "No capability scores yet" in _section(page, "capability")
    assert "no human labels to calibrate" in _section(page, "epochs")


def test_report_on_an_empty_store(tmp_path):
    result = report_command(Store.open(tmp_path / "empty.db"), html_path=tmp_path / "e.html")
    json.dumps(result, allow_nan=False)
    page = (tmp_path / "e.html").read_text()
    assert result["html"].endswith("e.html")
    for key in ("epochs", "categories", "subsets", "conclusions", "variance"):
        assert 'class="empty"' in _section(page, key), key


def test_category_names_reach_the_report(report):
    shown = set(report.by_category.table["category"])
    assert shown == set(CATEGORIES.values())


def test_html_says_how_the_judge_was_calibrated(page):
    epochs = " ".join(_section(page, "epochs").split())
    assert epochs.count("of the items the planner chose at random.") == 2  # one per judge
    assert "may be biased" not in epochs


def test_html_takes_the_report_as_it_is(report):
    """A field added to the Report later, a column missing from a table and an enum in a cell
    do not break the page: it shows what it knows, an empty cell, the enum's value."""

    @dataclasses.dataclass
    class Later(Report):
        added_later: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    judge, result = next(iter(report.harmfulness.items()))
    table = result.table.assign(status=[CellStatus.NOT_COMPUTED] * len(result.table))
    later = Later(**{**{f.name: getattr(report, f.name) for f in dataclasses.fields(report)},
                     "judge_vs_judge": report.judge_vs_judge.drop(columns=["tau"]),
                     "harmfulness": {judge: dataclasses.replace(result, table=table)}},
                  added_later=pd.DataFrame({"x": [1]}))
    page = render(later)
    for title in TITLES:
        assert f"<h2>{title}</h2>" in page
    assert "Kendall tau of checkpoint rankings" in _section(page, "judges")
    assert "<td>not computed</td>" in _section(page, "epochs") and "CellStatus" not in page
