"""Checkpoints behind an OpenAI-compatible endpoint: a `vllm serve --enable-lora` server on a
cluster (each adapter under its `--lora-modules` name), SGLang, Ollama, or a hosted fine-tuning
API. They are generated, judged and analysed like local checkpoints:

    endpoints:
      - name: llama-3.2-1b@cluster          # the base model's name in the store
        base_url: http://gpu-node:8000/v1
        api_key_env: CLUSTER_KEY            # optional: the variable holding the key
        concurrency: 16
        checkpoints:
          - {model: meta-llama/Llama-3.2-1B-Instruct}                       # epoch 0, the base
          - {model: dolly-s1-e1, dataset: dolly, seed: 1, epoch: 1}         # a LoRA it serves
          - {model: dolly-s1-e2, dataset: dolly, seed: 1, epoch: 2}

- Records: the base is `Checkpoint(base_model=name)`; each (dataset, seed) is a `Run` of that
  base, each epoch a checkpoint of it whose `adapter_path` says where it is served
  (`endpoint:<base_url>#<model>`). The ids do not depend on the URL, so a server that moved
  still finds its answers.
- Generation: every missing checkpoint x temperature x sample goes out as one chat request (the
  server applies the model's chat template) with the sweep's temperature and max_new_tokens and
  the request's own seed from its generation id (`pipeline.engine.request_seed`, as the local
  engine), `concurrency` at a time, answers written as they arrive, 32 to a transaction. What is
  stored is never asked again (the store is the cache); a killed run resumes.
- Failures: retries, Retry-After and the breaker of `pipeline.http_client`; a request whose
  retries ran out, or whose answer has no text, stores nothing (asked again on the next run) and
  is counted by kind in the stage's result and the log. 401/403/404 stop the stage with a
  one-line `EndpointUnavailable`, keeping what was written; so does a model the endpoint's
  `/models` list lacks, before any request.
- Capability: ROUGE-L of greedy answers to the hold-out only; the reference answers' loss needs
  token logprobs of a given text, which chat endpoints do not return.
- Sampling: temperature and top_p 1 are sent; a server's own default top_k (vLLM: none) applies.
  A hosted API may ignore the seed: its answers are then not reproducible, and a resumed run
  draws new ones only for what was not stored.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx
from tqdm.auto import tqdm

from annotations.records import (CapabilityScore, Checkpoint, FinishReason, Generation, Prompt,
                                 Run)
from annotations.store import Store
from pipeline.config import EndpointSpec, ServedCheckpoint
from pipeline.engine import Completion, request_seed
from pipeline.generate import generation_row, work_list
from pipeline.http_client import (Breaker, Reply, RetryPolicy, api_headers, chat_content, post)
from pipeline.models import ModelUnavailable

log = logging.getLogger(__name__)

WRITE_EVERY = 32  # answers per transaction
MAX_ANSWER_CHARS = 64_000  # what a generation keeps of an endpoint's answer
NOT_SENT_ERROR = "not sent: the endpoint kept failing"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not \t \n \r


class EndpointUnavailable(ModelUnavailable):
    """The endpoint refuses this sweep (key, URL, a model it does not serve): one line."""


@dataclass(frozen=True)
class Served:
    checkpoint: Checkpoint
    model: str  # the endpoint's name for it


@dataclass(frozen=True)
class ChatRequest:
    id: str
    message: str  # the user's request; the server applies the chat template
    model: str
    temperature: float
    max_tokens: int
    seed: int


@dataclass
class EndpointResult:
    added: int = 0
    failed: Counter = field(default_factory=Counter)  # Failure -> requests
    first_error: str = ""

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


def register(store: Store, spec: EndpointSpec) -> list[Served]:
    """The endpoint's checkpoints (and their runs) in the store, in the config's order."""
    served = []
    for item in spec.checkpoints:
        checkpoint = _checkpoint(spec, item)
        if checkpoint.run_id is not None:
            store.upsert_run(_run(spec, item))
        store.upsert_checkpoint(checkpoint)
        served.append(Served(checkpoint, item.model))
    return served


def _run(spec: EndpointSpec, item: ServedCheckpoint) -> Run:
    return Run(base_model=spec.name, dataset=str(item.dataset), seed=int(item.seed or 0))


def _checkpoint(spec: EndpointSpec, item: ServedCheckpoint) -> Checkpoint:
    if item.dataset is None:
        return Checkpoint(base_model=spec.name)
    return Checkpoint(base_model=spec.name, run_id=_run(spec, item).id, epoch=item.epoch,
                      adapter_path=f"endpoint:{spec.base_url.rstrip('/')}#{item.model}")


class EndpointClient:
    """Chat completions at one endpoint, `concurrency` in flight, retried by its policy."""

    def __init__(self, spec: EndpointSpec):
        self.spec = spec
        self.url = spec.base_url.rstrip("/")
        self.policy = RetryPolicy(spec.max_retries, spec.backoff, spec.max_backoff)
        headers = api_headers(spec.api_key_env, f"endpoint {spec.name}", EndpointUnavailable)
        limits = httpx.Limits(max_connections=spec.concurrency,
                              max_keepalive_connections=spec.concurrency)
        self.client = httpx.Client(timeout=spec.timeout, headers=headers, limits=limits)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "EndpointClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_models(self, models: Sequence[str]) -> None:
        """Every model is in the endpoint's `/models` list, when it has one (else unchecked:
        the requests will say)."""
        try:
            response = self.client.get(f"{self.url}/models")
        except httpx.HTTPError:
            return
        if response.status_code in (401, 403):
            raise EndpointUnavailable(f"HTTP {response.status_code} from {self.url}/models: "
                                      "check the endpoint's api_key_env and its key")
        try:
            listed = {m["id"] for m in response.json()["data"]}
        except (ValueError, KeyError, TypeError):
            return
        missing = sorted(set(models) - listed)
        if missing and response.is_success:
            raise EndpointUnavailable(
                f"endpoint {self.spec.name} ({self.url}) does not serve {', '.join(missing)} "
                f"(it serves: {', '.join(sorted(listed)) or 'nothing'})")

    def complete(self, requests: Sequence[ChatRequest]
                 ) -> Iterator[tuple[ChatRequest, Completion | None, Reply]]:
        """Each request's completion (None with the reply's error when there is none), in the
        order they finish. A misconfiguration raises EndpointUnavailable; what finished before
        was already yielded."""
        breaker = Breaker(self.spec.concurrency)

        def one(request: ChatRequest) -> tuple[Completion | None, Reply]:
            if breaker.open:
                return None, Reply(None, NOT_SENT_ERROR, transient=True)
            reply = post(self.client, f"{self.url}/chat/completions", _body(request),
                         self.policy, EndpointUnavailable)
            breaker.record(reply.transient)
            return _completion(request, reply), reply

        pool = ThreadPoolExecutor(max_workers=self.spec.concurrency)
        try:
            pending = {pool.submit(one, r): r for r in requests}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    request = pending.pop(future)
                    completion, reply = future.result()
                    yield request, completion, reply
        finally:  # on EndpointUnavailable, or a consumer that stops: drop what has not started
            pool.shutdown(wait=True, cancel_futures=True)


def _body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens,
                            "messages": [{"role": "user", "content": request.message}],
                            "temperature": request.temperature, "seed": request.seed}
    if request.temperature > 0:
        body["top_p"] = 1.0
    return body


def _completion(request: ChatRequest, reply: Reply) -> Completion | None:
    text = chat_content(reply) if reply.body is not None else None
    if text is None:
        return None
    choice = reply.body["choices"][0]  # type: ignore[index]
    usage = reply.body.get("usage") or {}  # type: ignore[union-attr]
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    clipped = len(text) > MAX_ANSWER_CHARS
    reason = (FinishReason.LENGTH if clipped or choice.get("finish_reason") == "length"
              else FinishReason.STOP)
    kept = _CONTROL.sub("\ufffd", text[:MAX_ANSWER_CHARS]).strip()
    return Completion(request.id, kept, tokens if isinstance(tokens, int) else 0, reason)


class Failure(str, enum.Enum):
    """Why a request stored nothing (counted per kind; asked again on the next run)."""

    RETRIES = "retries ran out"
    NOT_SENT = "not sent"  # the breaker was open: the endpoint kept failing
    MALFORMED = "malformed answer"
    REFUSED = "refused by the endpoint"  # another 4xx: the request's own



def _failure(reply: Reply) -> Failure:
    if reply.transient:
        return Failure.NOT_SENT if reply.error == NOT_SENT_ERROR else Failure.RETRIES
    if reply.body is not None or reply.error.startswith("malformed"):
        return Failure.MALFORMED
    return Failure.REFUSED


def generate_endpoint(store: Store, spec: EndpointSpec, served: Sequence[Served],
                      prompts: Sequence[Prompt], settings: Any, progress: bool = True
                      ) -> EndpointResult:
    """Every served checkpoint's missing answers; what failed is counted, not stored."""
    todo: dict[str, tuple[Checkpoint, Any, float]] = {}
    requests: list[ChatRequest] = []
    for item in served:
        for temperature in settings.temperatures:
            items = work_list(item.checkpoint, prompts, temperature, settings)
            done = store.existing_ids("generations", [i.id for i in items])
            for work in items:
                if work.id in done:
                    continue
                todo[work.id] = (item.checkpoint, work, temperature)
                requests.append(ChatRequest(work.id, work.prompt.text, item.model, temperature,
                                            settings.max_new_tokens, request_seed(work.id)))
    result = EndpointResult()
    if not requests:
        return result
    rows: list[Generation] = []

    def flush() -> None:
        store.upsert_generations(rows)
        result.added += len(rows)
        rows.clear()

    with EndpointClient(spec) as client, tqdm(total=len(requests), disable=not progress,
                                              leave=False, desc=f"generate {spec.name}") as bar:
        client.check_models(sorted({s.model for s in served}))
        try:
            for request, completion, reply in client.complete(requests):
                bar.update(1)
                if completion is None:
                    result.failed[_failure(reply)] += 1
                    result.first_error = result.first_error or reply.error[:300]
                    continue
                rows.append(generation_row(*todo[request.id], completion, settings))
                if len(rows) >= WRITE_EVERY:
                    flush()
        finally:  # what arrived is kept, even when the endpoint refuses the rest
            flush()
    if result.failures:
        log.warning("endpoint %s: %d of %d answers not stored (%s), asked again on the next "
                    "run; first error: %s", spec.name, result.failures, len(requests),
                    ", ".join(f"{k.value}: {n}" for k, n in result.failed.items()),
                    result.first_error)
    return result


def measure_endpoint_capability(store: Store, spec: EndpointSpec, served: Served,
                                prompts: Sequence[Prompt], benchmark: str,
                                max_new_tokens: int) -> list[CapabilityScore]:
    """ROUGE-L of the served checkpoint's greedy answers on the hold-out, unless stored; none
    when an answer failed (asked again on the next run)."""
    from pipeline.capability import rouge_l

    score = CapabilityScore(checkpoint_id=served.checkpoint.id, metric="rouge_l",
                            benchmark=benchmark, value=0.0, n=len(prompts))
    if not prompts or store.existing_ids("capability", [score.id]):
        return []
    requests = [ChatRequest(p.id, p.text, served.model, 0.0, max_new_tokens, 0) for p in prompts]
    with EndpointClient(spec) as client:
        answers = {r.id: c.text for r, c, _ in client.complete(requests) if c is not None}
    if len(answers) < len(prompts):
        log.warning("endpoint %s: capability of %s not measured (%d of %d answers failed)",
                    spec.name, served.model, len(prompts) - len(answers), len(prompts))
        return []
    measured = score.model_copy(update={"value": rouge_l(
        [answers[p.id] for p in prompts], [p.reference or "" for p in prompts])})
    store.upsert_capability([measured])
    return [measured]
