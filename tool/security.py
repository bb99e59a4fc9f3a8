"""The app's edges, as one ASGI middleware in front of Gradio (`Guard`, given to `launch`):

- security headers on every response: no framing (X-Frame-Options, CSP frame-ancestors), no MIME
  sniffing, no referrer, and a Content-Security-Policy that lets the page load only its own
  scripts, styles, images and connections (an image URL inside model output could not load even
  if some component rendered it);
- login throttling: after `max_failures` failed logins within `window_s` for one account, or from
  one address, further logins for it are refused (429) for `lockout_s`, whatever the password;
- no effect without a login: every POST to the Gradio API (cancel and reset included, which
  Gradio itself answers without checking) needs a logged-in session, else 401;
- an event number the app does not have is a 404, not Gradio's 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection

Scope = dict[str, Any]
ASGI = Callable[[Scope, Callable, Callable], Awaitable[None]]

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
       "connect-src 'self' ws: wss:; worker-src 'self' blob:; media-src 'self' blob:; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"content-security-policy", CSP.encode()),
           (b"cross-origin-opener-policy", b"same-origin")]
LOGIN_PATHS = ("/login", "/login/")


@dataclass
class Throttle:
    """Failed logins per key (an account or an address) in a sliding window; thread-safe."""

    max_failures: int = 20
    window_s: float = 900.0
    lockout_s: float = 300.0
    _failures: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    _locked_until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, keys: list[str]) -> float:
        """Seconds until the first of `keys` is allowed again (0: none is locked)."""
        now = time.monotonic()
        with self._lock:
            return max([self._locked_until.get(k, 0.0) - now for k in keys] + [0.0])

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                times = self._failures[key]
                times.append(now)
                while times and times[0] < now - self.window_s:
                    times.popleft()
                if len(times) >= self.max_failures:
                    self._locked_until[key] = now + self.lockout_s
                    times.clear()


class Guard:
    """The middleware (see the module docstring); `blocks` tells it which events exist."""

    def __init__(self, app: ASGI, blocks: Any = None, throttle: Throttle | None = None):
        self.app, self.blocks, self.throttle = app, blocks, throttle or Throttle()

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if method == "POST" and path in LOGIN_PATHS:
            await self._login(scope, receive, send)
        elif method == "POST" and "/gradio_api/" in path:
            await self._api(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Callable, send: Callable) -> None:
        body, replay = await _buffered(receive)
        form = parse_qs(body.decode("utf-8", "replace"))
        account = (form.get("username") or [""])[0].strip()
        keys = [f"account:{account}", f"address:{(scope.get('client') or ('?',))[0]}"]
        wait = self.throttle.blocked(keys)
        if wait > 0:
            await _answer(send, 429, f"Too many failed logins: try again in {int(wait) + 1} s.")
            return
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, watch)
        if status and status[0] in (400, 401):
            self.throttle.failed(keys)

    async def _api(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if not _logged_in(scope):
            await _answer(send, 401, "Not authenticated: log in first.")
            return
        if not scope["path"].endswith("/queue/join") or self.blocks is None:
            await self.app(scope, receive, send)
            return
        body, replay = await _buffered(receive)
        try:
            event = json.loads(body or b"{}").get("fn_index")
        except (ValueError, AttributeError):
            event = None
        if event is not None and event not in self.blocks.fns:
            await _answer(send, 404, f"No such event: {event!r}.")
            return
        await self.app(scope, replay, send)


def _logged_in(scope: Scope) -> bool:
    """Whether the request carries a session cookie Gradio issued (its own check, reused)."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or getattr(app, "auth", None) is None:
        return True  # no login configured: nothing to guard
    cookies = HTTPConnection(scope).cookies
    token = (cookies.get(f"access-token-{cookie_id}")
             or cookies.get(f"access-token-unsecure-{cookie_id}"))
    return token is not None and token in tokens


def _with_headers(send: Callable) -> Callable:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            have = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = list(message.get("headers", [])) + [
                (k, v) for k, v in HEADERS if k not in have]
        await send(message)
    return wrapped


async def _buffered(receive: Callable) -> tuple[bytes, Callable]:
    """The whole request body, and a `receive` that hands it to the app again."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return body, replay


async def _answer(send: Callable, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
