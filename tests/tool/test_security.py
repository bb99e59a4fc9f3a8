"""The app's edges over real HTTP on 127.0.0.1: login throttling per account and per address,
security headers on every response, no API effect without a login, no 500 for an unknown event."""

from __future__ import annotations

import httpx
import pytest

from conftest import PASSWORD


def login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": user, "password": password})


def test_twenty_failed_logins_lock_the_account_and_the_address(served):
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(20):
            assert login(client, "ana", "wrong").status_code == 400
        refused = login(client, "ana", PASSWORD)  # the right password, but locked for a while
        assert refused.status_code == 429 and "try again in" in refused.json()["detail"]
        other = login(client, "bob", PASSWORD)  # same address: locked too
        assert other.status_code == 429
    lockout = served.blocks.workbench.options.login_lockout_s
    assert lockout >= 60


def test_a_few_failures_do_not_lock_anyone_out(served):
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(5):
            assert login(client, "bob", "wrong").status_code == 400
        assert login(client, "bob", PASSWORD).status_code == 200


def test_every_response_carries_the_security_headers(served):
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for response in (client.get("/"), client.get("/config"), login(client, "ana", "x"),
                         client.post("/gradio_api/cancel", json={})):
            headers = response.headers
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "img-src 'self' data: blob:" in headers["content-security-policy"]
            assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/gradio_api/cancel", "/gradio_api/reset",
                                  "/gradio_api/queue/join", "/gradio_api/upload"])
def test_no_api_call_has_an_effect_without_a_login(served, path):
    with httpx.Client(base_url=served.url, timeout=30) as client:
        response = client.post(path, json={"session_hash": "x", "fn_index": 0, "event_id": "e"})
        assert response.status_code == 401, response.text
        assert login(client, "ana", PASSWORD).status_code == 200
        if path.endswith("/cancel"):  # logged in, the same call is Gradio's own again
            assert client.post(path, json={"session_hash": "x", "fn_index": 0,
                                           "event_id": "e"}).status_code != 401


def test_an_unknown_event_number_is_a_404_not_a_500(served):
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert login(client, "ana", PASSWORD).status_code == 200
        response = client.post("/gradio_api/queue/join",
                               json={"data": [], "fn_index": 99999, "session_hash": "abc"})
        assert response.status_code == 404 and "No such event" in response.text
