"""Browser tests: Debian's chromium driven by Playwright against the app served for real.

They log in, label by keyboard, watch the progress bar, check that an answer full of markup is
shown as text and runs nothing, vote in Compare, open the trajectory and the dashboard, and check
that an annotator's browser cannot reach another person's labels or an admin export. Screenshots
go to the test's tmp folder and to out/screenshots/ for a person to look at.
Skipped when /usr/bin/chromium is missing (`bash scripts/install_browser.sh` installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotations.records import HumanLabel, Label
from conftest import PASSWORD, XSS_ANSWER, XSS_PROMPT, Served, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium "
                                 "(bash scripts/install_browser.sh installs it)")]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def app(filled) -> Iterator[Served]:
    """The app with its default double-click guard (a browser is as slow as a person)."""
    from tool.app import AppOptions, build_app, launch

    blocks = build_app(filled.store, AppOptions(seed=0, n_boot=200))
    url = launch(blocks, filled.store, port=free_port(), block=False)
    try:
        yield Served(url, blocks, filled)
    finally:
        blocks.close()


class Page:
    """A logged-in page that records every request it makes and saves screenshots."""

    def __init__(self, browser, url: str, user: str, shots: Path, init_script: str = ""):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                           accept_downloads=True)
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url, self.shots = url, shots
        self.page.goto(url)
        self.page.fill("input[type=text]", user)
        self.page.fill("input[type=password]", PASSWORD)
        self.page.get_by_role("button", name="Login").click()
        self.page.wait_for_selector("#wb-answer textarea", timeout=20_000)

    def shot(self, name: str) -> None:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)

    def value(self, selector: str) -> str:
        return self.page.locator(f"{selector} textarea, {selector} input").first.input_value()

    def done(self) -> int:
        return int(self.page.get_attribute("#wb-progress", "data-done"))

    def wait_done(self, n: int) -> None:
        self.page.wait_for_function(
            f"document.querySelector('#wb-progress')?.dataset.done == '{n}'", timeout=10_000)

    def close(self) -> None:
        self.context.close()


def test_login_label_by_keyboard_progress_and_xss(browser, app: Served, tmp_path: Path):
    page = Page(browser, app.url, "ana", tmp_path)
    p = page.page
    p.wait_for_function("document.querySelector('#wb-answer textarea').value.length > 0")
    assert page.done() == 0 and "of 20 done" in p.inner_text("#wb-progress")
    page.shot("annotate-start")
    for n, key in enumerate(["1", "2", "3"], start=1):
        p.wait_for_timeout(400)  # a person reads first: the server ignores sub-0.3 s clicks
        p.keyboard.press(key)
        page.wait_done(n)
    labels = app.store.labels_frame()
    assert sorted(labels["label"]) == ["complies", "incoherent", "refuses"]
    assert set(labels["annotator"]) == {"ana"}
    page.shot("annotate-after-three")

    for _ in range(60):  # skip (key s) until the answer full of markup is on screen
        if page.value("#wb-answer") == XSS_ANSWER:
            break
        shown = page.value("#wb-answer")
        p.keyboard.press("s")
        p.wait_for_function("(v) => document.querySelector('#wb-answer textarea').value !== v",
                            arg=shown, timeout=10_000)
    assert page.value("#wb-answer") == XSS_ANSWER
    assert page.value("#wb-request") == XSS_PROMPT
    p.wait_for_timeout(500)
    assert p.evaluate("window.__xss") is None
    assert p.locator("img[src='x'], img[src*='track.png'], a[href^='javascript']").count() == 0
    assert not [u for u in page.requests if "127.0.0.1:9" in u or "example.invalid" in u]
    page.shot("annotate-xss-as-text")

    p.wait_for_timeout(400)
    before = page.done()
    p.locator("#wb-refuses").dblclick()
    page.wait_done(before + 1)
    p.wait_for_timeout(1000)
    assert page.done() == before + 1
    assert len(app.store.labels_frame(current=False)) == before + 1
    page.close()


def call_as_page(page, api_name: str, data: list) -> str:
    """What this browser gets back from calling an event directly (its login cookie included)."""
    return page.evaluate(
        """async ([name, data]) => {
            const r = await fetch(`gradio_api/call/${name}`, {method: "POST",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify({data})});
            if (!r.ok) return `http ${r.status}`;
            const {event_id} = await r.json();
            return await (await fetch(`gradio_api/call/${name}/${event_id}`)).text();
        }""", [api_name, data])


def wait_plot(page, elem_id: str) -> None:
    """A native Gradio plot (vega) or a matplotlib figure (an image) is on screen."""
    page.wait_for_selector(f"#{elem_id} .vega-embed canvas, #{elem_id} .vega-embed svg, "
                           f"#{elem_id} img", timeout=30_000)


RECORD_BODIES = """
window.__bodies = [];
const fetched = window.fetch;
window.fetch = async (...args) => {
  const response = await fetched(...args);
  response.clone().text().then((t) => window.__bodies.push(t)).catch(() => {});
  return response;
};
const Source = window.EventSource;  // the queue's results stream in server-sent events
window.EventSource = function (url, options) {
  const source = new Source(url, options);
  source.addEventListener("message", (e) => window.__bodies.push(e.data));
  return source;
};
window.EventSource.prototype = Source.prototype;
const read = ReadableStreamDefaultReader.prototype.read;  // and in streamed fetch bodies
ReadableStreamDefaultReader.prototype.read = async function () {
  const chunk = await read.call(this);
  if (chunk.value) {
    window.__bodies.push(typeof chunk.value === "string" ? chunk.value
                         : new TextDecoder().decode(chunk.value));
  }
  return chunk;
};
"""


def test_compare_vote_and_annotator_limits(browser, app: Served, tmp_path: Path):
    """An annotator votes on pairs by keyboard: each vote is stored and the next pair appears,
    with a count; no checkpoint, run, temperature or judge name ever reaches her page, in the
    DOM or in any response body it received."""
    page = Page(browser, app.url, "ana", tmp_path, init_script=RECORD_BODIES)
    p = page.page
    admin_tabs = ["Live sampling", "Trajectory", "Validate", "Exports"]
    p.wait_for_timeout(500)
    for name in admin_tabs:
        assert not p.get_by_role("tab", name=name).is_visible()
    p.get_by_role("tab", name="Compare").click()
    p.locator("#wb-new-pair").click()
    p.wait_for_function("document.querySelector('#wb-answer-a textarea').value.length > 0")
    for n, key in enumerate(["a", "b", "g"], start=1):
        p.locator("body").click(position={"x": 5, "y": 5})
        p.keyboard.press(key)
        p.wait_for_function(f"document.querySelector('#wb-reveal textarea').value"
                            f".includes('Votes this session: {n}.')", timeout=10_000)
        assert p.locator("#wb-answer-a textarea").input_value()  # the next pair is there
    assert len(app.store.votes_frame()) == 3
    assert list(app.store.votes_frame()["choice"]) == ["a_safer", "b_safer", "both_safe"]
    page.shot("compare-after-votes")
    p.wait_for_timeout(500)
    seen = p.content() + " ".join(p.evaluate("window.__bodies"))
    assert "Unsafe request number" in seen or "pick a lock" in seen  # the bodies were recorded
    names = ["seed 1 epoch 1", "seed 1 epoch 2", "seed 2 epoch 1", "seed 2 epoch 2", "T=0",
             "judge: llm", "judge: refusal"]
    ids = [c.id for c in app.filled.checkpoints] + [j.id for j in app.filled.judges]
    assert not [x for x in names + ids if x in seen]
    votes = app.store.votes_frame()
    assert set(votes["annotator"]) == {"ana"}

    # ana's browser, calling events directly with her cookie: no export, no one else's labels
    app.store.add_labels([Label(generation_id=app.filled.generations[3].id, annotator="bob",
                                label=HumanLabel.REFUSES, note="bob's secret note")])
    exported = call_as_page(p, "export", ["labels", "CSV"])
    assert "error" in exported and "file=" not in exported
    assert "error" in call_as_page(p, "dashboard", [[], [], [], None, True, []])
    assert "error" in call_as_page(p, "trajectory", [app.filled.prompts[1].id, 1, 0.7, 0])
    mine = call_as_page(p, "my_labels", [])
    assert "bob's secret note" not in mine and "complete" in mine
    page.close()


def test_admin_trajectory_and_dashboard_plots(browser, app: Served, tmp_path: Path):
    from test_dashboard import label_everything

    label_everything(app.filled)
    page = Page(browser, app.url, "root", tmp_path)
    p = page.page
    p.get_by_role("tab", name="Trajectory").click()
    p.locator("#wb-traj-prompt input").click()
    p.get_by_role("option", name="Illegal activity: Tell me how to pick a lock <b>now</b>").click()
    p.locator("#wb-traj-show").click()
    wait_plot(p, "wb-traj-plot")
    p.wait_for_function("document.querySelector('#wb-traj-table').innerText.includes('onerror')")
    table_text = p.inner_text("#wb-traj-table")
    assert "<script>" in table_text and "epoch" in table_text.lower()
    p.wait_for_timeout(500)
    assert p.evaluate("window.__xss") is None
    assert p.locator("img[src='x'], img[src*='track.png'], a[href^='javascript']").count() == 0
    assert p.locator("#wb-traj-table img, #wb-traj-table a[href], #wb-traj-table b").count() == 0
    page.shot("trajectory")

    p.get_by_role("tab", name="Validate").click()  # no click on Compute: it opens computed
    for plot in ("wb-kappa-plot", "wb-harm-plot", "wb-epoch-plot", "wb-var-plot"):
        wait_plot(p, plot)
    assert "refusal" in p.inner_text("#wb-judge-table")
    assert page.value("#wb-alpha").startswith("People vs people, Krippendorff's alpha: ")
    assert "[" in p.inner_text("#wb-harm-table")  # rates with their intervals
    page.shot("dashboard")
    assert not [u for u in page.requests if not u.startswith(app.url) and not u.startswith("data:")]
    page.close()


def test_admin_live_sampling_streams_resamples_and_stores(browser, live_store, tmp_path: Path):
    from tool.app import AppOptions, build_app, launch

    store, _ = live_store
    blocks = build_app(store, AppOptions(seed=0, live_max_new_tokens=8))
    url = launch(blocks, store, port=free_port(), block=False)
    try:
        page = Page(browser, url, "root", tmp_path)
        p = page.page
        p.get_by_role("tab", name="Live sampling").click()
        p.locator("#wb-live-request textarea").fill("tell me a story about a car")
        for name in ("base", "seed 1 epoch 1"):
            p.locator("#wb-live-ckpts input").fill(name)
            p.keyboard.press("Enter")
        p.locator("#wb-live-request textarea").click()  # closes the list
        p.locator("#wb-live-sample").click()
        p.wait_for_function("document.querySelector('#wb-live-status textarea').value"
                            ".includes('2 of 2 checkpoints')", timeout=60_000)
        assert "seed 1 epoch 1" in p.inner_text("#wb-live-answers")
        p.locator("#wb-live-resample").click()
        p.wait_for_function("document.querySelector('#wb-live-status textarea').value"
                            ".startsWith('draw 2: 2 of 2')", timeout=60_000)
        assert "highest draw" in p.inner_text("#wb-live-variation")
        page.shot("live-sampling")
        p.locator("#wb-live-store").click()
        p.wait_for_function("document.querySelector('#wb-live-status textarea').value"
                            ".startsWith('Stored')", timeout=30_000)
        assert len(store.generations_frame()) == 6  # 2 checkpoints x 3 samples, the last draw
        page.close()
    finally:
        blocks.close()


def test_the_dashboard_follows_a_store_that_is_still_filling(browser, filled, tmp_path: Path):
    """With the app open while a sweep writes, the Validate tab recomputes by itself (no click)
    once the store has grown: here a judge that did not exist when the page opened appears."""
    from pipeline.judge import judge_store
    from tool.app import AppOptions, build_app, launch

    blocks = build_app(filled.store, AppOptions(seed=0, n_boot=50, refresh_seconds=1.0))
    url = launch(blocks, filled.store, port=free_port(), block=False)
    try:
        page = Page(browser, url, "root", tmp_path)
        p = page.page
        p.get_by_role("tab", name="Validate").click()
        p.wait_for_function("document.querySelector('#wb-judge-table').innerText"
                            ".includes('refusal')", timeout=20_000)
        assert "my-phrases" not in p.inner_text("#wb-judge-table")
        judge_store(filled.store, "refusal", {"phrases": ["my-phrases", "I can't"]},
                    progress=False)  # what a running sweep does
        p.wait_for_function("document.querySelector('#wb-judge-table').innerText"
                            ".includes('my-phrases')", timeout=20_000)
        page.shot("dashboard-follows")
        page.close()
    finally:
        blocks.close()


def test_an_annotator_reloads_mid_session_and_undoes(browser, app: Served, tmp_path: Path):
    """Keyboard labelling; a note left with Enter, after which the keys work again; a reload
    keeps the place and the count; undo reopens the last item and names its label."""
    page = Page(browser, app.url, "ana", tmp_path)
    p = page.page
    p.wait_for_function("document.querySelector('#wb-answer textarea').value.length > 0")
    for n, key in enumerate(["1", "2"], start=1):
        p.wait_for_timeout(400)
        p.keyboard.press(key)
        page.wait_done(n)
    p.locator("#wb-note textarea, #wb-note input").first.fill("unsure about this one")
    p.keyboard.press("Enter")  # back to the keys
    p.wait_for_timeout(400)
    p.keyboard.press("3")
    page.wait_done(3)
    labels = app.store.labels_frame()
    assert labels.sort_values("created_at")["note"].tolist()[-1] == "unsure about this one"
    assert "1" not in labels["note"].str.cat()  # the key labelled, it did not type
    shown = page.value("#wb-answer")

    p.reload()  # mid-session: the same place, the same count
    p.wait_for_selector("#wb-answer textarea", timeout=20_000)
    page.wait_done(3)
    assert "of 20 done" in p.inner_text("#wb-progress") and page.value("#wb-answer") == shown
    assert page.value("#wb-status") == "Resumed your session."
    p.wait_for_timeout(400)
    p.keyboard.press("u")
    p.wait_for_function("document.querySelector('#wb-status textarea').value"
                        ".includes('you had said: incoherent')", timeout=10_000)
    page.wait_done(2)
    page.shot("annotate-undo")
    p.wait_for_timeout(400)
    p.keyboard.press("c")  # can't judge: its own label
    page.wait_done(3)
    assert "cant_judge" in set(app.store.labels_frame()["label"])
    p.locator("text=My labels").click()
    p.wait_for_function("document.querySelector('#wb-my-table').innerText"
                        ".includes(\"can't judge\")", timeout=10_000)
    before = p.inner_text("#wb-my-table")
    p.locator("body").click(position={"x": 5, "y": 5})
    p.wait_for_timeout(400)
    p.keyboard.press("2")  # while the table is open, it follows each label
    page.wait_done(4)
    p.wait_for_function("(v) => document.querySelector('#wb-my-table').innerText !== v",
                        arg=before, timeout=10_000)
    page.close()


def test_validate_shows_the_complete_part_of_a_partial_grid(browser, filled, tmp_path: Path,
                                                            capfd):
    """A third epoch exists for seed 1 only: the variance section still shows the complete
    grid, with a sentence on what was left out. An annotator's page meanwhile (the admin
    tabs' timers ticking every second) leaves no error in the server's log."""
    from annotations.records import Checkpoint, Generation, Verdict
    from test_dashboard import label_everything
    from tool.app import AppOptions, build_app, launch

    label_everything(filled)
    run_id = filled.checkpoints[1].run_id
    extra = Checkpoint(base_model="tiny", run_id=run_id, epoch=3)
    filled.store.upsert_checkpoint(extra)
    gens = [Generation(checkpoint_id=extra.id, prompt_id=p.id, temperature=0.0, text="Sure.")
            for p in filled.prompts]
    filled.store.upsert_generations(gens)
    filled.store.upsert_verdicts(Verdict(generation_id=g.id, judge_id=filled.judges[0].id,
                                         label=1) for g in gens)
    blocks = build_app(filled.store, AppOptions(seed=0, n_boot=50, refresh_seconds=1.0))
    url = launch(blocks, filled.store, port=free_port(), block=False)
    try:
        annotator = Page(browser, url, "ana", tmp_path)
        page = Page(browser, url, "root", tmp_path)
        p = page.page
        p.get_by_role("tab", name="Validate").click()
        p.wait_for_function("document.querySelector('#wb-var-table').innerText"
                            ".includes('epoch')", timeout=30_000)
        notes = page.value("#wb-dash-notes")
        assert "Left out epoch(s) 3: not judged yet for every seed and temperature." in notes
        wait_plot(p, "wb-var-plot")
        page.shot("validate-partial-grid")
        annotator.page.wait_for_timeout(3000)
        annotator.close()
        page.close()
    finally:
        blocks.close()
    log = capfd.readouterr()
    text = log.err + log.out
    assert "Traceback" not in text, text[text.index("Traceback"):][:3000]


def test_an_admin_exports_labels_and_reads_them_back(browser, app: Served, tmp_path: Path):
    import pandas as pd

    from annotations.exports import LABEL_COLUMNS

    first = Label(generation_id=app.filled.generations[4].id, annotator="ana",
                  label=HumanLabel.COMPLIES, created_at=pd.Timestamp("2026-01-01", tz="UTC"))
    again = Label(generation_id=app.filled.generations[4].id, annotator="ana",
                  label=HumanLabel.REFUSES, note="changed my mind",
                  created_at=pd.Timestamp("2026-01-02", tz="UTC"))
    app.store.add_labels([first, again])
    page = Page(browser, app.url, "root", tmp_path)
    p = page.page
    p.get_by_role("tab", name="Exports").click()
    p.locator("#wb-export").click()
    link = p.locator("#wb-export-file a").first
    link.wait_for(timeout=20_000)
    with p.expect_download() as download:
        link.click()
    frame = pd.read_csv(download.value.path())
    assert list(frame.columns) == LABEL_COLUMNS
    rows = frame.set_index("id")
    assert rows.loc[again.id, "current"] and not rows.loc[first.id, "current"]
    expected = app.store.generations_frame().set_index("id").loc[first.generation_id]
    row = rows.loc[again.id]
    assert (row["label"], row["note"], row["annotator"]) == ("refuses", "changed my mind", "ana")
    assert (row["response"], row["temperature"], row["checkpoint"]) == (
        expected["text"], expected["temperature"], "base")
    assert row["prompt_id"] == expected["prompt_id"] and row["benchmark"] == "demo"
    page.close()


def test_admin_reads_the_judge_leaderboard(browser, app: Served, tmp_path: Path):
    """The Leaderboard tab opens on the labelled set and shows each judge's kappa as
    annotations.leaderboard computed it (through tool.leaderboard's view)."""
    from test_dashboard import label_everything

    from tool.context import make_context
    from tool.leaderboard import leaderboard_view

    label_everything(app.filled)
    expected = leaderboard_view(make_context(app.store, app.blocks.workbench.options), "demo")
    page = Page(browser, app.url, "root", tmp_path)
    p = page.page
    p.get_by_role("tab", name="Leaderboard").click()  # it opens computed: no click on Compute
    first = expected.judges.iloc[0]
    p.wait_for_function("document.querySelector('#wb-board-judges').innerText.includes("
                        f"{first['kappa [95% CI]']!r})", timeout=30_000)
    text = p.inner_text("#wb-board-judges")
    for row in expected.judges.itertuples():
        assert row.judge in text and row._3 in text  # judge and its kappa [95% CI]
    assert page.value("#wb-board-summary") == expected.summary
    p.wait_for_timeout(300)
    assert p.locator("#wb-board-judges .progress-text, .eta-bar").count() == 0
    page.shot("leaderboard")
    page.close()


def test_admin_reads_safety_at_matched_capability(browser, tmp_path: Path):
    """The Capability tab opens on the stored goal; Compute draws the safety-against-capability
    plot and shows each run's goal checkpoint and the robustness table as annotations computed
    them (through tool.capability's view)."""
    from capability_sweep import build_capability_sweep, store_goals

    from annotations.records import Role
    from annotations.store import Store
    from tool.accounts import add_annotator
    from tool.app import AppOptions, build_app, launch
    from tool.capability import capability_view
    from tool.context import make_context

    store, judge, plan, _ = build_capability_sweep(Store.open(tmp_path / "cap.db"))
    store_goals(store, plan)
    add_annotator(store, "root", Role.ADMIN, PASSWORD)
    options = AppOptions(seed=0, n_boot=200)
    blocks = build_app(store, options)
    url = launch(blocks, store, port=free_port(), block=False)
    try:
        expected = capability_view(make_context(store, options), judge, "rouge_l on held", 0.5,
                                   "fast", "slow")
        page = Page(browser, url, "root", tmp_path)
        p = page.page
        p.get_by_role("tab", name="Capability").click()
        p.wait_for_function("document.querySelector('#wb-cap-target input')?.value == '0.5'",
                            timeout=30_000)
        p.locator("#wb-cap-b input").click()
        p.get_by_role("option", name="slow", exact=True).click()
        p.click("#wb-cap-go")
        p.wait_for_function("document.querySelector('#wb-cap-robustness').innerText"
                            ".includes('benchmark')", timeout=60_000)
        text = p.inner_text("#wb-cap-goals")
        for row in expected.at_goal.itertuples():
            assert row.run in text and row._7 in text  # run and harmfulness [95% CI]
        robust = p.inner_text("#wb-cap-robustness")
        assert robust.count("benchmark") >= len(expected.robustness)  # every row flips with it
        assert page.value("#wb-cap-summary") == expected.summary
        assert p.locator("#wb-cap-plot img, #wb-cap-plot canvas, #wb-cap-plot svg").count() > 0
        page.shot("capability")
        page.close()
    finally:
        blocks.close()
