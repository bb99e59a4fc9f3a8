"""Reliability against the running app: 20 annotators at once through gradio_client, repeated
submits, and a SIGKILL mid-session that must lose no acknowledged label; each on a SQLite store
and on a real PostgreSQL server (`store_url`, tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from annotations.records import Role
from annotations.store import Store
from conftest import PASSWORD, Filled, fill_store, free_port
from tool.accounts import add_annotator

ROOT = Path(__file__).resolve().parents[2]
TOKEN, STATUS = 6, 7  # positions in the annotate outputs: ..., note, token, status


@pytest.fixture
def filled(store_url: str) -> Filled:
    """The app's filled store (tests/tool/conftest.py's `served` serves it), on each backend."""
    return fill_store(Store.open(store_url))


class Annotator:
    """One person labelling through gradio_client; remembers every acknowledged label id."""

    def __init__(self, url: str, name: str):
        self.client = Client(url, auth=(name, PASSWORD), verbose=False, ssl_verify=False)
        self.acked: list[str] = []
        self.shown = self.client.predict(api_name="/start")

    def label(self, choice: str = "complies") -> None:
        if "Session finished" in self.shown[STATUS] or "Nothing is waiting" in self.shown[STATUS]:
            self.shown = self.client.predict(api_name="/start")
        token = self.shown[TOKEN]
        self.shown = self.client.predict(token, "", api_name=f"/label_{choice}")
        if self.shown[STATUS].startswith("Saved"):
            self.acked.append(token)


@pytest.mark.slow
def test_twenty_annotators_fifty_labels_each(store_url):
    store = Store.open(store_url)
    filled = fill_store(store)  # 60 generations
    names = [f"person{i:02d}" for i in range(20)]
    for name in names:
        add_annotator(store, name, Role.ANNOTATOR, PASSWORD)
    port = free_port()
    proc = start_app(store_url, port, "--k", "20", "--session-size", "25")
    try:
        def work(name: str) -> list[str]:
            person = Annotator(f"http://127.0.0.1:{port}/", name)
            while len(person.acked) < 50:
                person.label()
            return person.acked

        start = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            acked = list(pool.map(work, names))
        elapsed = time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()
    labels = store.labels_frame(current=False)
    assert len(labels) == 1000, f"{len(labels)} labels stored"
    assert sorted(labels["id"]) == sorted(t for person in acked for t in person)
    assert not labels.duplicated(["generation_id", "annotator"]).any()  # nobody labelled twice
    assert labels.groupby("annotator").size().eq(50).all()
    assert labels.groupby("generation_id")["annotator"].nunique().max() <= 20  # k respected
    assert set(labels["generation_id"]) <= {g.id for g in filled.generations}
    print(f"1000 labels from 20 annotators in {elapsed:.1f} s")


def test_repeated_and_concurrent_submits_store_one_label(served):
    person = Annotator(served.url, "ana")
    token = person.shown[TOKEN]
    jobs = [person.client.submit(token, "", api_name="/label_refuses") for _ in range(3)]
    results = [job.result(timeout=30) for job in jobs]
    assert sum(r[STATUS].startswith("Saved") for r in results) >= 1
    again = person.client.predict(token, "", api_name="/label_refuses")
    assert "already" in again[STATUS]
    labels = served.store.labels_frame(current=False)
    assert list(labels["id"]) == [token]
    assert len({r[TOKEN] for r in results} | {again[TOKEN]}) == 1  # one step forward, not three


def start_app(store_path: Path | str, port: int, *options: str) -> subprocess.Popen:
    """The app in its own process (as `python -m tool.app`), once it answers on `port`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tool.app", "--store", str(store_path), "--port", str(port),
         "--min-seconds", "0", *options],
        cwd=ROOT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the app did not start")


@pytest.mark.slow
def test_sigkill_mid_session_loses_no_acknowledged_label(store_url):
    fill_store(Store.open(store_url)).store.close()
    port = free_port()
    proc = start_app(store_url, port)
    people: list[Annotator] = []
    try:
        url = f"http://127.0.0.1:{port}/"
        people = [Annotator(url, name) for name in ("ana", "bob", "root")]
        stop = threading.Event()

        def work(person: Annotator) -> None:
            while not stop.is_set():
                try:
                    person.label("refuses")
                except Exception:  # the server died under us: that label was never acknowledged
                    return

        threads = [threading.Thread(target=work, args=(p,)) for p in people]
        for thread in threads:
            thread.start()
        while sum(len(p.acked) for p in people) < 30:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-session, with submits in flight
        proc.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        acked = {t for p in people for t in p.acked}
        proc = start_app(store_url, port)
        stored = set(Store.open(store_url).labels_frame(current=False)["id"])
        assert acked <= stored, f"{len(acked - stored)} acknowledged labels lost"
        again = Annotator(f"http://127.0.0.1:{port}/", "ana")  # the restarted app works on
        again.label()
        assert again.acked
    finally:
        proc.kill()
        proc.wait()
