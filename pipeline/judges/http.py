"""The HTTP judge: any OpenAI-compatible chat-completions endpoint (a hosted model, vLLM, Ollama).

Each item's template is filled in and sent as one user message at `temperature` (0 by default);
the answer text is read as the template says, by the same reader as the LLM judge's (first answer
word, named fields, or StrongREJECT's rubric score; None when it does not read). Requests run on a pool of `concurrency` threads sharing one httpx client, so no more than
`concurrency` are ever in flight.

Failures, by kind:
- 429, 408, 5xx, timeouts and connection errors are retried (by tenacity) up to `max_retries`
  times with exponential backoff and jitter (a Retry-After header is honoured), each wait capped
  at `max_backoff`. When the retries run out the outcome is marked `retry`: the stage stores
  nothing, so the next run asks again. Once `concurrency` items in a row have run out of
  retries, the rest of the batch is not sent (the endpoint is down; no point waiting on each).
- 401, 403, 404, 405 and 407 say the judge is misconfigured (key, URL, model name): they raise
  JudgeUnavailable at once rather than store a wrong None for every item.
- Any other 4xx (e.g. the request is too long, or a content filter rejects it) is the item's
  own: not retried, label None, the error kept in raw.
- A 2xx whose body is not chat-completions JSON gives None with the body (cut) in raw.
A verdict keeps at most MAX_RAW_CHARS of the answer, control bytes replaced, and its label is the
parse of exactly what it keeps.

Outcomes are cached when a `cache` is given (the stage passes one backed by the store, see
`pipeline.judges.cache`): an item whose outcome is cached is not sent again. Only outcomes of
well-formed 2xx answers are cached, including ones whose text does not parse (the model said
that; asking again at temperature 0 would not change it); errors never are.

    python run.py judge --judge http --arg base_url=http://127.0.0.1:8000/v1 --arg model=judge \\
        --arg template=harmbench --arg api_key_env=JUDGE_API_KEY
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.http_client import (Breaker, Reply, RetryPolicy, api_headers, chat_content,
                                  check_base_url, parse_retry_after, post)
from pipeline.judges import (ANSWER_TOKENS, MAX_RAW_CHARS, JudgeCache, JudgeFn, JudgeItem,
                             JudgeOutcome, JudgeUnavailable, Template, clip_raw, judge,
                             load_template, read_answer)

__all__ = ["RetryPolicy", "parse_retry_after", "http_judge"]

DEFAULT_TEMPLATE = "sorry_bench"


def ask(client: httpx.Client, url: str, body: dict[str, Any], policy: RetryPolicy
        ) -> tuple[str | None, Reply]:
    """One chat completion, retried as `policy` says: (its answer text or None, the reply)."""
    reply = post(client, url, body, policy, JudgeUnavailable)
    if reply.body is None:
        return None, reply
    text = chat_content(reply)
    if text is None:
        return None, Reply(None, f"malformed response (no answer text): {json.dumps(reply.body)}")
    return text, reply


def cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


@dataclass(frozen=True)
class Request:
    message: str
    note: str  # what was cut from the item before sending, for raw


def build_request(template: Template, item: JudgeItem, max_text_chars: int) -> Request:
    prompt, prompt_cut = cut(item.prompt, max_text_chars)
    response, response_cut = cut(item.response, max_text_chars)
    parts = [name for name, was in (("prompt", prompt_cut), ("response", response_cut)) if was]
    note = f"; {' and '.join(parts)} truncated to {max_text_chars} chars" if parts else ""
    return Request(template.fill(prompt, response), note)


def answer_outcome(raw: str, template: Template, note: str) -> JudgeOutcome:
    """The verdict from a kept answer, read as the template says (answer word, named fields or
    rubric score): the reading of exactly what raw keeps (no cut-off note)."""
    reading = read_answer(raw[:MAX_RAW_CHARS], template)
    return JudgeOutcome(label=reading.label, raw=raw + note, score=reading.score,
                        details=reading.details or None)


def error_outcome(reply: Reply, note: str) -> JudgeOutcome:
    return JudgeOutcome(label=None, raw=clip_raw(reply.error) + note, retry=reply.transient)


@judge("http", runtime=("api_key_env", "concurrency", "max_retries", "timeout", "backoff",
                        "max_backoff"))
def http_judge(base_url: str, model: str, template: str = DEFAULT_TEMPLATE,
               api_key_env: str | None = None, temperature: float = 0.0,
               max_tokens: int = 16,
               max_text_chars: int = 8000, concurrency: int = 8, max_retries: int = 5,
               timeout: float = 60.0, backoff: float = 1.0, max_backoff: float = 30.0,
               cache: JudgeCache | None = None) -> JudgeFn:
    """A judge behind `{base_url}/chat/completions`; `api_key_env` names the key's variable.
    `max_tokens` is at least what the template's reading needs (64 for named fields, 1024 for
    a rubric's reasoning)."""
    if (problem := check_base_url(base_url)) is not None:
        raise ValueError(problem)
    if concurrency < 1 or max_retries < 0 or timeout <= 0:
        raise ValueError("concurrency must be at least 1, max_retries at least 0, timeout > 0")
    chosen = load_template(template)
    max_tokens = max(max_tokens, ANSWER_TOKENS[chosen.reading])
    url = base_url.rstrip("/") + "/chat/completions"
    headers = api_headers(api_key_env, "the HTTP judge", JudgeUnavailable)
    policy = RetryPolicy(max_retries, backoff, max_backoff)

    def body(request: Request) -> dict[str, Any]:
        return {"model": model, "temperature": temperature, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": request.message}]}

    def send(requests: dict[JudgeItem, Request]) -> dict[JudgeItem, tuple[str | None, Reply]]:
        breaker = Breaker(concurrency)

        def one(request: Request) -> tuple[str | None, Reply]:
            if breaker.open:
                return None, Reply(None, "not sent: the endpoint kept failing", transient=True)
            text, reply = ask(client, url, body(request), policy)
            breaker.record(reply.transient)
            return text, reply

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        with httpx.Client(timeout=timeout, headers=headers, limits=limits) as client:
            pool = ThreadPoolExecutor(max_workers=concurrency)
            try:
                futures = {item: pool.submit(one, request) for item, request in requests.items()}
                return {item: future.result() for item, future in futures.items()}
            finally:  # on JudgeUnavailable: drop what has not started
                pool.shutdown(wait=True, cancel_futures=True)

    def run(items: Sequence[JudgeItem]) -> list[JudgeOutcome]:
        requests = {item: build_request(chosen, item, max_text_chars) for item in items}
        kept = cache.get(list(requests)) if cache is not None else {}
        replies = send({item: r for item, r in requests.items() if item not in kept})
        answered = {item: answer_outcome(clip_raw(text), chosen, requests[item].note)
                    for item, (text, _) in replies.items() if text is not None}
        if cache is not None and answered:
            cache.put(answered)
        failed = {item: error_outcome(reply, requests[item].note)
                  for item, (text, reply) in replies.items() if text is None}
        outcomes = {**kept, **answered, **failed}
        return [outcomes[item] for item in items]

    return run
