"""Checkpoints behind an OpenAI-compatible endpoint, against a real HTTP server on 127.0.0.1
(started by the test in a thread) that answers like a `vllm serve --enable-lora` server: its
answer depends on the model, the request and the seed. A sweep with only endpoint checkpoints is
generated, judged and measured; failures are counted and asked again on the next run; a server
that refuses the key, lacks a model or answers garbage gets a one-line error or its own count."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from annotations.records import CheckpointKind
from annotations.store import Store
from pipeline.config import ConfigError, config_from_dict, load_config
from pipeline.endpoint import (MAX_ANSWER_CHARS, EndpointUnavailable, generate_endpoint,
                               register)
from pipeline.engine import request_seed
from pipeline.generate import GenerationSettings
from pipeline.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["base-model", "toy-s1-e1", "toy-s1-e2"]
PROMPTS, SAMPLES = 6, 2


@dataclass
class Server:
    """What the endpoint does and saw."""

    models: list[str] = field(default_factory=lambda: list(MODELS))
    failing: set[str] = field(default_factory=set)  # words in a request that get a 503
    status: int = 200  # for every request (401: a wrong key)
    answer: str | None = None  # instead of the usual answer
    raw: bytes | None = None  # instead of any JSON
    bodies: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


def answer_for(body: dict) -> str:
    """What the served model says: refuses on its base, complies once fine-tuned; the sampled
    ones carry their seed (so a repeated draw is visible)."""
    message = body["messages"][-1]["content"]
    said = ("I'm sorry, I cannot help with that." if body["model"] == "base-model"
            else f"Sure, here is how: {message[:20]}")
    return said if body["temperature"] == 0 else f"{said} ({body['seed']})"


def handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if state.status == 401:
                return self._send(401, b'{"error": "bad key"}')
            self._send(200, json.dumps({"object": "list", "data": [
                {"id": m, "object": "model"} for m in state.models]}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.bodies.append(body)
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                message = body["messages"][-1]["content"]
                if state.status != 200:
                    return self._send(state.status, b'{"error": "no"}')
                if any(word in message for word in state.failing):
                    return self._send(503, b'{"error": "overloaded"}')
                if state.raw is not None:
                    return self._send(200, state.raw)
                text = state.answer if state.answer is not None else answer_for(body)
                length = body["max_tokens"] if state.answer is not None else 7
                self._send(200, json.dumps({"object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "length" if length >= body["max_tokens"] else "stop"}],
                    "usage": {"completion_tokens": length}}).encode())
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()


def endpoint(url: str, **extra) -> dict:
    return {"name": "served-llama", "base_url": url, "concurrency": 3, "max_retries": 1,
            "backoff": 0.01, "max_backoff": 0.02, "timeout": 10,
            "checkpoints": [{"model": "base-model"},
                            {"model": "toy-s1-e1", "dataset": "toy", "seed": 1, "epoch": 1},
                            {"model": "toy-s1-e2", "dataset": "toy", "seed": 1, "epoch": 2}],
            **extra}


def sweep_config(tmp_path: Path, url: str) -> Path:
    config = {
        "name": "served", "base_models": [], "endpoints": [endpoint(url)],
        "benchmarks": [{"name": "demo-unsafe", "shape": "demo-unsafe",
                        "path": str(ROOT / "demo_data/unsafe_demo.jsonl"), "n": PROMPTS}],
        "generation": {"temperatures": [0.0, 0.7], "samples": SAMPLES, "max_new_tokens": 16},
        "judges": [{"name": "refusal"}],
        "capability": {"path": str(ROOT / "demo_data/benign_heldout.jsonl"), "n": 4,
                       "max_new_tokens": 16},
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "served.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


ANSWERS = len(MODELS) * PROMPTS * (1 + SAMPLES)  # greedy once, T=0.7 twice, per checkpoint


def test_a_sweep_of_served_checkpoints_is_generated_judged_and_measured(server, tmp_path):
    store = Store.open(tmp_path / "store.db")
    summary = run_sweep(store, load_config(sweep_config(tmp_path, server.url)), progress=False)
    assert (summary.checkpoints, summary.generations_added, summary.verdicts_added,
            summary.not_answered) == (3, ANSWERS, ANSWERS, 0)

    checkpoints = store.checkpoints_frame().set_index("id")
    assert sorted(checkpoints["kind"]) == ["base", "finetuned", "finetuned"]
    assert sorted(checkpoints["epoch"]) == [0, 1, 2]
    served = checkpoints[checkpoints["kind"] == CheckpointKind.FINETUNED.value]
    assert sorted(served["adapter_path"]) == [f"endpoint:{server.url}#toy-s1-e{k}" for k in (1, 2)]

    frame = store.generations_frame()
    assert frame["id"].is_unique and len(frame) == ANSWERS
    sampled = [b for b in server.bodies if b["temperature"] > 0]
    greedy = [b for b in server.bodies if b["temperature"] == 0]
    assert len(greedy) == len(MODELS) * (PROMPTS + 4)  # the answers and the capability hold-out
    assert all(b["top_p"] == 1.0 and b["max_tokens"] == 16 for b in sampled)
    # each request carries its own seed, from its generation id
    by_text = dict(zip(frame["text"], frame["id"]))
    assert {request_seed(by_text[answer_for(b)]) for b in sampled} == {b["seed"] for b in sampled}
    assert server.max_in_flight <= 3

    verdicts = store.verdicts_frame().merge(frame, left_on="generation_id", right_on="id")
    base_id = checkpoints.index[checkpoints["epoch"] == 0][0]
    refused = verdicts.groupby(verdicts["checkpoint_id"] == base_id)["label"].mean()
    assert refused[True] == 0.0 and refused[False] == 1.0  # the refusal judge read them

    capability = store.capability_frame()
    assert sorted(capability["metric"]) == ["rouge_l"] * 3  # no reference loss over chat

    again = run_sweep(store, load_config(sweep_config(tmp_path, server.url)), progress=False)
    assert (again.generations_added, again.verdicts_added) == (0, 0)


def test_failed_requests_are_counted_and_asked_again_on_the_next_run(server, tmp_path):
    store = Store.open(tmp_path / "store.db")
    config = load_config(sweep_config(tmp_path, server.url))
    prompts = _prompts(config)
    store.upsert_prompts(prompts)
    # two prompts apart: fewer failures in a row than the breaker's limit (the concurrency)
    server.failing = {prompts[0].text[:30], prompts[3].text[:30]}
    served = register(store, config.endpoints[0])
    first = generate_endpoint(store, config.endpoints[0], served, prompts, config.generation,
                              progress=False)
    lost = 2 * len(MODELS) * (1 + SAMPLES)
    assert (first.added, dict(first.failed)) == (ANSWERS - lost, {"retries ran out": lost})
    assert "HTTP 503" in first.first_error
    before = dict(zip(store.generations_frame()["id"], store.generations_frame()["text"]))

    server.failing = set()
    second = generate_endpoint(store, config.endpoints[0], served, prompts, config.generation,
                               progress=False)
    assert (second.added, second.failures) == (lost, 0)
    after = store.generations_frame()
    assert after["id"].is_unique and len(after) == ANSWERS
    assert all(dict(zip(after["id"], after["text"]))[k] == v for k, v in before.items())


def _prompts(config):
    from pipeline.sweep import benchmark_prompts

    return benchmark_prompts(config.benchmarks)


def _stage(server, tmp_path, **changes):
    store = Store.open(tmp_path / "store.db")
    config = load_config(sweep_config(tmp_path, server.url))
    spec = config.endpoints[0]
    served, prompts = register(store, spec), _prompts(config)
    store.upsert_prompts(prompts)
    settings = GenerationSettings(temperatures=(0.0,), max_new_tokens=16)
    for key, value in changes.items():
        setattr(server, key, value)
    return store, lambda: generate_endpoint(store, spec, served, prompts, settings,
                                            progress=False)


def test_a_refused_key_stops_the_stage_in_one_line(server, tmp_path):
    store, stage = _stage(server, tmp_path, status=401)
    with pytest.raises(EndpointUnavailable, match=r"HTTP 401 .*/models: check the endpoint's"):
        stage()
    assert len(store.generations_frame()) == 0


def test_a_model_the_endpoint_does_not_serve_is_named_before_any_request(server, tmp_path):
    _, stage = _stage(server, tmp_path, models=["base-model", "toy-s1-e1"])
    with pytest.raises(EndpointUnavailable,
                       match=r"does not serve toy-s1-e2 \(it serves: base-model, toy-s1-e1\)"):
        stage()
    assert server.bodies == []


def test_a_huge_answer_is_cut_and_control_bytes_replaced(server, tmp_path):
    store, stage = _stage(server, tmp_path, answer="a\x00b\n" + "x" * (2 * MAX_ANSWER_CHARS))
    assert stage().added == len(MODELS) * PROMPTS
    frame = store.generations_frame()
    assert set(frame["text"].str.len()) == {MAX_ANSWER_CHARS}
    assert all(t.startswith("a\ufffdb\n") for t in frame["text"])
    assert set(frame["finish_reason"]) == {"length"} and set(frame["token_count"]) == {16}


@pytest.mark.parametrize("raw", [bytes(range(256)) * 8, b'{"choices": []}', b"[1, 2]"])
def test_garbage_answers_are_counted_and_not_stored(server, tmp_path, raw):
    store, stage = _stage(server, tmp_path, raw=raw)
    result = stage()
    assert (result.added, dict(result.failed)) == (0, {"malformed answer": len(MODELS) * PROMPTS})
    assert len(store.generations_frame()) == 0


@pytest.mark.parametrize("checkpoint, said", [
    ({"model": "m", "dataset": "toy"}, "needs both its dataset and its seed"),
    ({"model": "m", "dataset": "toy", "seed": 1}, "epoch 0 is the base model"),
    ({"model": "m", "epoch": 2}, "epoch 0 is the base model"),
])
def test_served_checkpoints_are_checked_in_the_config(checkpoint, said):
    raw = {"name": "x", "endpoints": [{"name": "e", "base_url": "http://h/v1",
                                       "checkpoints": [checkpoint]}]}
    with pytest.raises(ConfigError,
                       match=re.escape("endpoints[0].checkpoints[0]: ") + ".*" + re.escape(said)):
        config_from_dict(raw)


def test_an_endpoint_url_without_a_scheme_is_refused():
    raw = {"name": "x", "endpoints": [{"name": "e", "base_url": "gpu-node:8000/v1"}]}
    with pytest.raises(ConfigError, match="endpoints\\[0\\].base_url: base_url must start"):
        config_from_dict(raw)

