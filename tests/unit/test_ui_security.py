"""The dashboard's safety pieces alone: headers, host check, token gate, listen rules."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from promote.cli import common
from promote.errors import UsageError
from promote.ui import app, security

TOKEN = "s3cret-token-0123456789"


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"inner"})


def call(asgi: Any, *, path: str = "/", method: str = "GET", **headers: str) -> dict[str, Any]:
    """Run one request through ``asgi``; its status, headers and body."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asgi(scope, receive, send))
    return {
        "status": sent[0]["status"],
        "headers": {k.decode(): v.decode() for k, v in sent[0]["headers"]},
        "body": b"".join(m.get("body", b"") for m in sent[1:]),
    }


def test_every_response_gets_the_security_headers_once() -> None:
    got = call(security.SecurityHeaders(_ok))["headers"]
    assert got["x-frame-options"] == "DENY"
    assert got["x-content-type-options"] == "nosniff"
    assert got["referrer-policy"] == "no-referrer"
    csp = got["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "eval" not in csp


@pytest.mark.parametrize(
    ("listen", "host", "status"),
    [
        ("127.0.0.1", "127.0.0.1:8080", 200),
        ("127.0.0.1", "localhost:8080", 200),
        ("127.0.0.1", "[::1]:8080", 200),
        ("127.0.0.1", "evil.example:8080", 421),
        ("127.0.0.1", "", 421),
        ("10.0.0.5", "10.0.0.5:8080", 200),
        ("10.0.0.5", "attacker.example", 421),
        ("0.0.0.0", "dashboard.example.com", 200),  # behind a proxy: the token guards it
    ],
)
def test_host_check_answers_only_its_own_address(listen: str, host: str, status: int) -> None:
    assert call(security.HostCheck(_ok, listen_host=listen), host=host)["status"] == status


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": f"Bearer {TOKEN}"}, 200),
        ({"authorization": "Bearer wrong"}, 401),
        ({"authorization": f"Bearer {TOKEN}x"}, 401),
        ({"cookie": f"{security.COOKIE}={security.cookie_value(TOKEN)}"}, 200),
        ({"cookie": f"{security.COOKIE}={TOKEN}"}, 401),  # the cookie holds an HMAC, not it
        ({"cookie": "other=1"}, 401),
    ],
)
def test_token_gate(headers: dict[str, str], status: int) -> None:
    got = call(security.TokenGate(_ok, token=TOKEN), path="/api/matrix", **headers)
    assert got["status"] == status
    assert TOKEN.encode() not in got["body"]


def test_token_gate_sends_browsers_to_login_and_lets_login_and_static_through() -> None:
    gate = security.TokenGate(_ok, token=TOKEN)
    assert call(gate, accept="text/html")["headers"]["location"] == "/login"
    for path in ("/login", "/static/ui.css", "/healthz"):
        assert call(gate, path=path)["status"] == 200
    assert TOKEN not in repr(gate)


def test_cookie_value_is_not_the_token_and_compares_in_constant_time() -> None:
    assert security.cookie_value(TOKEN) != TOKEN and TOKEN not in security.cookie_value(TOKEN)
    assert security.token_matches(TOKEN, TOKEN)
    assert not security.token_matches(TOKEN[:-1], TOKEN)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9000", ("::1", 9000)),
     ("0.0.0.0:80", ("0.0.0.0", 80))],
)  # fmt: skip
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert common.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", ":8080", "host:port"])
def test_parse_listen_refuses_what_is_not_host_port(text: str) -> None:
    with pytest.raises(UsageError, match="HOST:PORT"):
        common.parse_listen(text)


def test_listening_beyond_loopback_needs_a_long_enough_token() -> None:
    here = Path(".")
    app.check_exposure(app.Settings(repo_dir=here))  # loopback: fine without a token
    app.check_exposure(app.Settings(repo_dir=here, host="::1"))
    with pytest.raises(UsageError, match="--token-env"):
        app.check_exposure(app.Settings(repo_dir=here, host="0.0.0.0"))
    with pytest.raises(UsageError, match="16 characters"):
        app.check_exposure(app.Settings(repo_dir=here, host="0.0.0.0", token="short"))
    app.check_exposure(app.Settings(repo_dir=here, host="0.0.0.0", token=TOKEN))
    assert TOKEN not in repr(app.Settings(repo_dir=here, token=TOKEN))
