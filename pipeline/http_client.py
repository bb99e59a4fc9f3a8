"""The client side of OpenAI-compatible endpoints, shared by the HTTP judge and by checkpoints
served at an endpoint (`pipeline.endpoint`): retries, Retry-After, a breaker, the API key.

- 429, 408, 5xx, timeouts and connection errors are retried (by tenacity) up to `max_retries`
  times with exponential backoff and jitter (a Retry-After header is honoured), each wait capped
  at `max_backoff`. When the retries run out the reply is marked `transient`: the caller stores
  nothing, so the next run asks again.
- 401, 403, 404, 405 and 407 say the caller is misconfigured (key, URL, model name): `post`
  raises the caller's own "unavailable" error at once rather than store a wrong answer per item.
- Any other 4xx is the item's own: not retried, no answer, the error kept.
- A 2xx whose body is not a JSON object gives no answer, with the body (cut) as the error.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import (RetryCallState, Retrying, retry_if_exception_type, retry_if_result,
                      stop_after_attempt, wait_exponential, wait_random_exponential)

FATAL_STATUS = {401, 403, 404, 405, 407}


def transient(response: httpx.Response) -> bool:
    return response.status_code in (408, 429) or response.status_code >= 500


# timeouts, refused connections and broken streams, and 408, 429 and 5xx answers
RETRIED = retry_if_exception_type(httpx.RequestError) | retry_if_result(transient)


@dataclass(frozen=True)
class Reply:
    body: dict[str, Any] | None  # the JSON object of a 2xx answer
    error: str = ""
    transient: bool = False  # retries ran out: ask again on the next run


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_backoff: float = 30.0

    def wait(self, state: RetryCallState) -> float:
        given = None if state.outcome.failed else state.outcome.result().headers.get("retry-after")
        if (seconds := parse_retry_after(given)) is not None:
            return min(seconds, self.max_backoff)
        half = {"multiplier": self.backoff / 2, "max": self.max_backoff / 2}
        # half of each step fixed, half random (jitter: parallel clients spread out)
        return (wait_exponential(**half) + wait_random_exponential(**half))(state)

    def retrying(self) -> Retrying:  # once out of attempts: the last response, or its error
        return Retrying(stop=stop_after_attempt(self.max_retries + 1), wait=self.wait,
                        retry=RETRIED, retry_error_callback=lambda state: state.outcome.result())

    def gave_up(self, error: str) -> Reply:
        attempts = self.max_retries + 1
        return Reply(None, f"gave up after {attempts} attempts: {error}", transient=True)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), None if unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def post(client: httpx.Client, url: str, body: dict[str, Any], policy: RetryPolicy,
         unavailable: type[Exception]) -> Reply:
    """One POST, retried as `policy` says; `unavailable` is raised on a misconfiguration."""
    try:
        response = policy.retrying()(client.post, url, json=body)
    except httpx.RequestError as err:  # timeouts, refused connections, broken streams
        return policy.gave_up(f"{type(err).__name__}: {err}")
    status = response.status_code
    if transient(response):
        return policy.gave_up(f"HTTP {status}: {response.text[:500]}")
    if status in FATAL_STATUS:
        raise unavailable(f"HTTP {status} from {url}: {response.text[:500]}")
    if status >= 400:
        return Reply(None, f"HTTP {status}: {response.text}")
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return Reply(None, f"malformed response (HTTP {status}): {response.text}")
    return Reply(parsed)


def chat_content(reply: Reply) -> str | None:
    """The first choice's message text of a chat-completions answer, None when there is none."""
    try:
        content = reply.body["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


class Breaker:
    """Counts items in a row whose retries ran out; open once there are `limit` of them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.failures = 0
        self._lock = threading.Lock()

    def record(self, transient: bool) -> None:
        with self._lock:
            self.failures = self.failures + 1 if transient else 0

    @property
    def open(self) -> bool:
        return self.failures >= self.limit


def api_headers(api_key_env: str | None, who: str, unavailable: type[Exception]
                ) -> dict[str, str]:
    if not api_key_env:
        return {}
    key = os.environ.get(api_key_env)
    if not key:
        raise unavailable(f"{who}'s API key variable ${api_key_env} is not set")
    return {"Authorization": f"Bearer {key}"}


def check_base_url(base_url: str) -> str | None:
    if base_url.startswith(("http://", "https://")):
        return None
    return f"base_url must start with http:// or https://, not {base_url!r}"
