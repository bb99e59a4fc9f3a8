"""Screenshots of every tab of the app, for the README: what a maintainer runs to refresh them.

    .venv/bin/python scripts/screenshots.py --store workbench.db --out docs/screenshots

It copies the store, a SQLite file (the original is never written), adds two throw-away accounts to the copy
(an admin and an annotator), serves the app on a free local port, logs in with Debian's chromium
(Playwright, /usr/bin/chromium) and saves one full-page PNG per tab: the annotator's Annotate
and Compare, the admin's Live sampling, Trajectory, Validate and Exports. Use the store a
`run.py demo` left behind for the README's pictures.
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ANNOTATOR_TABS = ["Annotate", "Compare"]
ADMIN_TABS = ["Live sampling", "Trajectory", "Validate", "Exports"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_copy(store_path: Path, work: Path):
    """The app over a copy of the store, with accounts shot-admin and shot-annotator."""
    from annotations.records import Role
    from annotations.store import Store
    from tool.accounts import add_annotator
    from tool.app import AppOptions, build_app, launch

    copy = work / "store.db"
    with sqlite3.connect(store_path) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # the write-ahead log too, which a plain file copy would miss
    store = Store.open(copy)
    password = secrets.token_urlsafe(12)
    add_annotator(store, "shot-admin", Role.ADMIN, password)
    add_annotator(store, "shot-annotator", Role.ANNOTATOR, password)
    blocks = build_app(store, AppOptions(seed=0, n_boot=300))
    url = launch(blocks, store, port=free_port(), block=False)
    return blocks, url, password


def shoot(browser, url: str, user: str, password: str, tabs: list[str], out: Path) -> None:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    page.fill("input[type=text]", user)
    page.fill("input[type=password]", password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#wb-answer textarea", timeout=60_000)
    for tab in tabs:
        page.get_by_role("tab", name=tab).click()
        if tab == "Compare":
            page.locator("#wb-new-pair").click()
        if tab == "Validate":  # it computes as it opens: wait for its first chart
            page.wait_for_selector("#wb-harm-plot img", timeout=300_000)
        page.wait_for_timeout(2000)
        path = out / f"{tab.lower().replace(' ', '-')}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"wrote {path}")
    page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="workbench.db")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        blocks, url, password = serve_copy(Path(args.store), Path(work))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                shoot(browser, url, "shot-annotator", password, ANNOTATOR_TABS, out)
                shoot(browser, url, "shot-admin", password, ADMIN_TABS, out)
                browser.close()
        finally:
            blocks.close()


if __name__ == "__main__":
    main()
