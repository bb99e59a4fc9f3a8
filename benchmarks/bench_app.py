"""Benchmark: the annotation app under 20 annotators, through gradio_client on 127.0.0.1.

Run: .venv/bin/python benchmarks/bench_app.py [--paced-seconds 30] [--burst-seconds 15]

A fresh store in a temporary folder (40 requests x 5 checkpoints x 2 temperatures = 400 answers
with two judges' verdicts) and 20 annotator accounts; the app runs in its own process
(`python -m tool.app`, as `run.py serve` would), the 20 annotators are threads here, each with its
own gradio_client session. Two phases:
- paced: every annotator submits one label every 2 s (starts spread over the first 2 s); timed is
  each submit until the next item is back on the client (when a session ends, the call that opens
  the next session is added to it). Target: p95 <= 150 ms.
- flat out: every annotator submits again as soon as the next item is back; reported: labels per
  second the app stored, and the app's CPU use.
At the end the store must hold exactly the labels the app acknowledged.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
from annotations.records import (Checkpoint, Generation, JudgeSpec, Prompt, Role, Run,  # noqa: E402
                                 Verdict)
from annotations.store import Store  # noqa: E402
from tool.accounts import add_annotator  # noqa: E402

PASSWORD = "benchmark password"
TARGET_P95_MS = 150
TOKEN, STATUS = 6, 7  # positions in the annotate outputs


def make_store(path: Path, n_people: int, n_prompts: int = 40) -> None:
    store = Store.open(path)
    prompts = [Prompt(benchmark="bench", text=f"Unsafe request {i}", category=f"cat {i % 8}")
               for i in range(n_prompts)]
    store.upsert_prompts(prompts)
    ckpts = [Checkpoint(base_model="bench")]
    for seed in (1, 2):
        run = store.upsert_run(Run(base_model="bench", dataset="bench", seed=seed))
        ckpts += [Checkpoint(base_model="bench", run_id=run, epoch=e) for e in (1, 2)]
    for ckpt in ckpts:
        store.upsert_checkpoint(ckpt)
    gens = [Generation(checkpoint_id=c.id, prompt_id=p.id, temperature=t,
                       text=f"Answer {i}-{j} at T={t}: " + "words " * 40)
            for i, c in enumerate(ckpts) for j, p in enumerate(prompts) for t in (0.0, 0.7)]
    store.upsert_generations(gens)
    judges = [JudgeSpec(name="refusal"), JudgeSpec(name="llm")]
    for spec in judges:
        store.upsert_judge(spec)
    store.upsert_verdicts([Verdict(generation_id=g.id, judge_id=j.id, label=(k + n) % 2)
                           for k, g in enumerate(gens) for n, j in enumerate(judges)])
    for i in range(n_people):
        add_annotator(store, f"bench{i:02d}", Role.ANNOTATOR, PASSWORD)
    store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(path: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tool.app", "--store", str(path), "--port",
                             str(port), "--k", "50", "--min-seconds", "0"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the app did not start")


class Person:
    """One annotator: a gradio_client session that labels and times each step."""

    def __init__(self, url: str, name: str):
        from gradio_client import Client

        # ssl_verify=False: gradio_client builds a new httpx client per call, and loading the CA
        # bundle each time costs ~30 ms of client CPU (the URL is plain http anyway).
        self.client = Client(url, auth=(name, PASSWORD), verbose=False, ssl_verify=False)
        self.shown = self.client.predict(api_name="/start")
        self.acked: list[str] = []

    def label(self) -> float:
        """Submit one label; seconds until the next item is on the client."""
        start = time.perf_counter()
        token = self.shown[TOKEN]
        self.shown = self.client.predict(token, "", api_name=random.choice(
            ["/label_complies", "/label_refuses", "/label_incoherent"]))
        if self.shown[STATUS].startswith("Saved"):
            self.acked.append(token)
        if "Session finished" in self.shown[STATUS]:
            self.shown = self.client.predict(api_name="/start")
        return time.perf_counter() - start


def paced(people: list[Person], seconds: float, every: float = 2.0) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()

    def run(person: Person) -> None:
        due = time.perf_counter() + random.uniform(0, every)
        end = due + seconds
        while due < end:
            time.sleep(max(0.0, due - time.perf_counter()))
            took = person.label()
            with lock:
                times.append(took)
            due += every

    threads = [threading.Thread(target=run, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def flat_out(people: list[Person], seconds: float) -> tuple[int, float]:
    counts = [0] * len(people)
    end = time.perf_counter() + seconds

    def run(i: int) -> None:
        while time.perf_counter() < end:
            people[i].label()
            counts[i] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(people))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--paced-seconds", type=float, default=30)
    parser.add_argument("--burst-seconds", type=float, default=15)
    args = parser.parse_args()
    random.seed(0)
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    path = folder / "bench.db"
    make_store(path, args.people)
    port = free_port()
    proc = start_app(path, port)
    try:
        url = f"http://127.0.0.1:{port}/"
        people = [Person(url, f"bench{i:02d}") for i in range(args.people)]
        times = np.array(paced(people, args.paced_seconds)) * 1000
        cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
        labels, took = flat_out(people, args.burst_seconds)
        app_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - wall0)
    finally:
        proc.kill()
        proc.wait()
    stored = len(Store.open(path).labels_frame(current=False))
    acked = sum(len(p.acked) for p in people)
    p50, p95 = np.percentile(times, [50, 95])
    print(f"app benchmark: {args.people} annotators via gradio_client on 127.0.0.1, "
          f"{os.cpu_count()} CPU cores (app and clients share them)")
    print(f"paced (1 label / 2 s each, {args.paced_seconds:.0f} s): {len(times)} labels, "
          f"submit -> next item p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {times.max():.0f} ms "
          f"(target p95 <= {TARGET_P95_MS} ms: {'met' if p95 <= TARGET_P95_MS else 'NOT met'})")
    print(f"flat out (no pause, {args.burst_seconds:.0f} s): {labels} labels, "
          f"{labels / took:.1f} labels/s, app process CPU {app_cpu:.0%} of one core")
    print(f"stored labels: {stored}, acknowledged: {acked} "
          f"({'equal' if stored == acked else 'MISMATCH'})")


if __name__ == "__main__":
    main()
