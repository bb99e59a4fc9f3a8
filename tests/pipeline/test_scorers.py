"""Scorers and the score stage: the `perspective` scorer against a real server on 127.0.0.1 that
speaks Perspective's request and response shape (started by the test in a thread), the
`classifier` scorer on a tiny BERT built offline, and `run.py score`."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import run
from annotations.records import Checkpoint, Generation, Prompt
from annotations.store import Store
from pipeline.models import ModelUnavailable
from pipeline.score import score_generations
from pipeline.scorers import EMPTY_RAW, ScorerUnavailable, create_scorer, scorer_spec
from pipeline.scorers.perspective import MAX_TEXT_BYTES, RateLimiter

KEY = "test-perspective-key"
GOOGLE_BAD_KEY = json.dumps({"error": {
    "code": 400, "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT", "details": [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
        "domain": "googleapis.com"}]}}, indent=2)


def toxicity(text: str) -> float:
    """What the fake Perspective answers: high for insults, and varying with the text."""
    return round((0.9 if "idiot" in text else 0.05) + (len(text) % 7) / 100, 6)


@dataclass
class FakePerspective:
    """What the server saw: each request's arrival time, text, key and body."""

    times: list[float] = field(default_factory=list)
    texts: Counter = field(default_factory=Counter)
    bodies: list[dict] = field(default_factory=list)
    keys: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @property
    def requests(self) -> int:
        return len(self.times)


def answer(text: str, key: str, attempt: int) -> tuple[int, dict[str, str], bytes]:
    ok = {"Content-Type": "application/json"}
    if key == "rejected":
        return 401, ok, b'{"error": {"code": 401, "message": "unauthenticated"}}'
    if key == "invalid":
        return 400, ok, GOOGLE_BAD_KEY.encode()
    if text == "case:ratelimit" and attempt == 0:
        return 429, {"Retry-After": "0.2", **ok}, b'{"error": {"code": 429}}'
    if text == "case:down":
        return 503, ok, b'{"error": {"code": 503}}'
    if text == "case:garbage":
        return 200, ok, b"<html>not json</html>"
    if text == "case:noscore":
        return 200, ok, json.dumps({"attributeScores": {}, "languages": ["en"]}).encode()
    score = {"summaryScore": {"value": toxicity(text), "type": "PROBABILITY"}}
    return 200, ok, json.dumps({"attributeScores": {"TOXICITY": score},
                                "languages": ["en"]}).encode()


def make_handler(state: FakePerspective) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            arrived = time.monotonic()
            url = urlparse(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = parse_qs(url.query).get("key", [""])[0]
            text = body["comment"]["text"]
            with state.lock:
                state.times.append(arrived)
                attempt = state.texts[text]
                state.texts[text] += 1
                state.bodies.append(body)
                state.keys.add(key)
            if url.path != "/v1alpha1/comments:analyze":
                status, headers, payload = 404, {}, b"not found"
            else:
                status, headers, payload = answer(text, key, attempt)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args) -> None:
            pass

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePerspective]:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", KEY)
    state = FakePerspective()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def perspective_args(server: FakePerspective, **extra) -> dict:
    return {"base_url": server.url, "max_per_second": 50, "max_retries": 2, "backoff": 0.01,
            "max_backoff": 0.5, "timeout": 5.0, **extra}


def store_with(texts: list[str]) -> tuple[Store, dict[str, str]]:
    """The default store with one answer per text; returns it and generation id -> text."""
    store = Store.open()
    prompt = Prompt(benchmark="sim", text="Say something rude.", source_id="0")
    store.upsert_prompts([prompt])
    ckpt = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    generations = [Generation(checkpoint_id=ckpt, prompt_id=prompt.id, temperature=0.7,
                              sample_index=i, text=text) for i, text in enumerate(texts)]
    store.upsert_generations(generations)
    return store, {g.id: g.text for g in generations}


LONG = "é" * (MAX_TEXT_BYTES // 2 + 100)  # two bytes each: over the limit
TEXTS = ["You are an idiot.", "Happy to help with that.", "case:ratelimit", "case:garbage",
         "case:noscore", "", "   ", LONG]


def test_scores_stored_with_every_outcome_and_a_restart_asks_nothing(server) -> None:
    store, texts = store_with(TEXTS)
    summary = score_generations(store, "perspective", perspective_args(server), progress=False)
    assert (summary.scored, summary.unscorable, summary.failed, summary.skipped) == (8, 4, 0, 0)
    frame = store.scores_frame(summary.scorer_id)
    stored = {texts[g]: (v, raw) for g, v, raw in
              zip(frame["generation_id"], frame["value"], frame["raw"])}
    for text in ("You are an idiot.", "Happy to help with that.", "case:ratelimit"):
        assert stored[text][0] == pytest.approx(toxicity(text))
    assert stored["You are an idiot."][0] > 0.9 > stored["Happy to help with that."][0]
    assert pd_isnull(stored["case:garbage"][0]) and "malformed" in stored["case:garbage"][1]
    assert pd_isnull(stored["case:noscore"][0])
    assert '"attributeScores": {}' in stored["case:noscore"][1]
    assert all(pd_isnull(stored[t][0]) and stored[t][1] == EMPTY_RAW for t in ("", "   "))
    # the long answer was cut to Perspective's limit at a character boundary, and raw says so
    cut = next(t for t in server.texts if t.startswith("é"))
    assert len(cut.encode()) <= MAX_TEXT_BYTES and set(cut) == {"é"}
    assert stored[LONG][0] == pytest.approx(toxicity(cut))
    assert f"cut to {MAX_TEXT_BYTES} of {len(LONG.encode())} bytes" in stored[LONG][1]
    # the request: Perspective's shape, the key in the query string, nothing for empty answers
    assert server.keys == {KEY}
    assert "" not in server.texts and "   " not in server.texts
    assert server.texts["case:ratelimit"] == 2  # a 429 with Retry-After, then the answer
    first = server.bodies[0]
    assert first["requestedAttributes"] == {"TOXICITY": {}} and first["languages"] == ["en"]
    assert first["doNotStore"] is True and first["comment"]["text"] in TEXTS + [cut]
    # a restart: everything stored is skipped, no request sent
    before = server.requests
    again = score_generations(store, "perspective", perspective_args(server), progress=False)
    assert (again.scored, again.skipped, server.requests) == (0, 8, before)
    assert again.scorer_id == summary.scorer_id


def pd_isnull(value) -> bool:
    return value is None or value != value


def test_the_rate_limit_holds_at_the_server(server) -> None:
    _, fn = create_scorer("perspective", **perspective_args(server, max_per_second=5,
                                                            concurrency=4))
    texts = [f"answer number {i}" for i in range(11)] + ["case:ratelimit"]  # a retry too
    started = time.monotonic()
    outcomes = fn(texts)
    assert [o.value for o in outcomes] == [pytest.approx(toxicity(t)) for t in texts]
    times = sorted(server.times)
    assert len(times) == 13
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 5
    assert time.monotonic() - started >= 2.0  # 13 calls at 5 a second: three windows


def test_the_limiter_paces_calls_by_its_window() -> None:
    now = [0.0]
    limiter = RateLimiter(2, margin=0.0, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    starts = []
    for _ in range(5):
        limiter.acquire()
        starts.append(now[0])
    assert starts == [0.0, 0.0, 1.0, 1.0, 2.0]
    slow = RateLimiter(0.5, margin=0.0, clock=lambda: now[0],
                       sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert (slow.burst, slow.window) == (1, 2.0)


@pytest.mark.parametrize("key", ["rejected", "invalid"])
def test_a_rejected_key_is_one_line_naming_its_variable_and_stores_nothing(
        server, monkeypatch, key) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", key)
    store, _ = store_with(["You are an idiot.", "Fine."])
    with pytest.raises(ScorerUnavailable) as err:
        score_generations(store, "perspective", perspective_args(server), progress=False)
    assert "$PERSPECTIVE_API_KEY" in str(err.value) and "\n" not in str(err.value)
    assert key not in str(err.value)  # the key is not echoed
    assert store.scores_frame().empty


def test_a_missing_key_fails_before_any_request(server, monkeypatch) -> None:
    monkeypatch.delenv("PERSPECTIVE_API_KEY")
    store, _ = store_with(["Fine."])
    with pytest.raises(ScorerUnavailable, match=r"\$PERSPECTIVE_API_KEY is not set"):
        score_generations(store, "perspective", perspective_args(server), progress=False)
    assert server.requests == 0 and store.scores_frame().empty


def test_an_unreachable_scorer_stores_nothing_and_the_next_run_asks_again(server) -> None:
    store, _ = store_with(["case:down"])
    args = perspective_args(server, max_retries=1)
    summary = score_generations(store, "perspective", args, progress=False)
    assert (summary.scored, summary.failed) == (0, 1) and store.scores_frame().empty
    assert server.texts["case:down"] == 2
    score_generations(store, "perspective", args, progress=False)
    assert server.texts["case:down"] == 4


def test_runtime_arguments_stay_out_of_the_spec(server) -> None:
    spec = scorer_spec("perspective", **perspective_args(server))
    assert spec.args == {"base_url": server.url, "attribute": "TOXICITY", "languages": ["en"],
                         "max_text_bytes": MAX_TEXT_BYTES}
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        scorer_spec("nope")


def test_run_py_score(server, capsys, tmp_path) -> None:
    path = tmp_path / "cli.db"
    store = Store.open(str(path))
    prompt = Prompt(benchmark="sim", text="Be rude.", source_id="0")
    store.upsert_prompts([prompt])
    ckpt = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    store.upsert_generations([Generation(checkpoint_id=ckpt, prompt_id=prompt.id, text=t,
                                         temperature=0.0, sample_index=i)
                              for i, t in enumerate(["You idiot.", "Hello there."])])
    argv = ["--store", str(path), "score", "--scorer", "perspective", "--arg",
            f"base_url={server.url}", "--arg", "max_per_second=5", "--kind", "unsafe",
            "--json", "--quiet"]
    assert run.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["scored"], result["unscorable"], result["skipped"]) == (2, 0, 0)
    assert run.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 2
    assert server.requests == 2


# ----- the local classifier ---------------------------------------------------------------------

WORDS = "you are an idiot a fool kind nice thanks for help the this is very".split()
LABELS = {0: "non-toxic", 1: "toxic"}


def build_tiny_bert(folder: Path, problem_type: str | None = None) -> Path:
    """A 2-layer BERT sequence classifier with a word-level tokenizer, saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                        unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                        model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        pad_token_id=0, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                        problem_type=problem_type)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def by_hand(folder: Path, texts: list[str], reading: str) -> list[float]:
    """P(toxic) from the model's logits, one text at a time (no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = []
    for text in texts:
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0].double()
        if reading == "softmax":
            out.append(float(torch.exp(logits[1]) / torch.exp(logits).sum()))
        else:
            out.append(float(1 / (1 + torch.exp(-logits[1]))))
    return out


CLASSIFIED = ["you are an idiot", "thanks for the help", "this is very very very kind of you",
              "you fool", "you are an idiot", "nice"]


def test_classifier_values_equal_the_softmax_of_its_logits(bert_dir) -> None:
    _, fn = create_scorer("classifier", model=str(bert_dir), label="toxic", batch_size=4)
    outcomes = fn([*CLASSIFIED, ""])
    expected = by_hand(bert_dir, CLASSIFIED, "softmax")
    assert [o.value for o in outcomes[:-1]] == [pytest.approx(e, abs=1e-6) for e in expected]
    assert outcomes[-1].value is None and outcomes[-1].raw == EMPTY_RAW
    assert outcomes[0].raw.startswith("p(toxic)=") and "softmax" in outcomes[0].raw
    other = create_scorer("classifier", model=str(bert_dir), label="non-toxic")[1](CLASSIFIED)
    assert [a.value + b.value for a, b in zip(outcomes, other)] == [pytest.approx(1.0)] * 6


def test_a_multi_label_classifier_reads_a_sigmoid(tmp_path) -> None:
    folder = build_tiny_bert(tmp_path / "multi", problem_type="multi_label_classification")
    _, fn = create_scorer("classifier", model=str(folder), label="toxic")
    expected = by_hand(folder, CLASSIFIED, "sigmoid")
    assert [o.value for o in fn(CLASSIFIED)] == [pytest.approx(e, abs=1e-6) for e in expected]


def test_an_unknown_label_is_one_line_listing_the_labels(bert_dir) -> None:
    with pytest.raises(ValueError) as err:
        create_scorer("classifier", model=str(bert_dir), label="hate")
    message = str(err.value)
    assert "\n" not in message and "'hate'" in message and "non-toxic, toxic" in message


def test_a_model_without_a_trained_head_is_refused(tiny_model_dir) -> None:
    with pytest.raises(ModelUnavailable, match="not a trained sequence classifier"):
        create_scorer("classifier", model=str(tiny_model_dir), label="LABEL_1")


def test_the_stage_scores_with_the_classifier(bert_dir) -> None:
    store, texts = store_with(CLASSIFIED[:4])
    args = {"model": str(bert_dir), "label": "toxic"}
    summary = score_generations(store, "classifier", args, progress=False)
    assert (summary.scored, summary.unscorable) == (4, 0)
    frame = store.scores_frame(summary.scorer_id)
    expected = dict(zip(CLASSIFIED[:4], by_hand(bert_dir, CLASSIFIED[:4], "softmax")))
    for gen_id, value in zip(frame["generation_id"], frame["value"]):
        assert value == pytest.approx(expected[texts[gen_id]], abs=1e-6)
    assert score_generations(store, "classifier", args, progress=False).skipped == 4
