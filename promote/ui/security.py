"""What keeps the dashboard safe to open: headers, the host check and the token gate.

Pure ASGI middleware (no framework import), so each piece is tested alone:

- :class:`SecurityHeaders` sets a Content-Security-Policy that allows only this server's own
  scripts and styles (no inline script, no ``eval``), ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` on every response.
- :class:`HostCheck` answers only requests whose ``Host`` is the address it listens on (or a
  loopback name): a web page elsewhere cannot reach a loopback dashboard by DNS rebinding.
- :class:`TokenGate` requires the token when one is configured: ``Authorization: Bearer T``
  (scripts) or the cookie ``/login`` sets (a browser). Both compare in constant time
  (:func:`hmac.compare_digest`); the cookie holds an HMAC of the token, never the token.

Must not: log or echo a token, or anything a request sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
COOKIE = "promote-ui"
LOGIN_PATH = "/login"
OPEN_PATHS = ("/login", "/static/", "/healthz")  # what a browser needs to show the login form
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def cookie_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token (stealing it gives no token)."""
    return hmac.new(token.encode(), b"promote-ui session", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k, v) for k, v in HEADERS if k not in names
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _plain(
    send: Send, status: int, text: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return str(v.decode("latin-1"))
    return ""


def _host_name(value: str) -> str:
    """``Host`` without its port: ``127.0.0.1:8080`` -> ``127.0.0.1``, ``[::1]:80`` -> ``[::1]``."""
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0]


class HostCheck:
    def __init__(self, app: ASGIApp, *, listen_host: str) -> None:
        self.app = app
        wildcard = listen_host in ("0.0.0.0", "::", "")
        self.any_host = wildcard  # behind a proxy the public name is not known here
        self.allowed = {listen_host, *LOOPBACK_NAMES, f"[{listen_host}]", "[::1]"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = _host_name(_header(scope, b"host"))
        if scope["type"] == "http" and not self.any_host and host not in self.allowed:
            await _plain(send, 421, "This dashboard answers only to the address it listens on.")
            return
        await self.app(scope, receive, send)


class TokenGate:
    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self._token = token
        self._cookie = cookie_value(token)

    def __repr__(self) -> str:
        return "TokenGate(token=[secure])"

    def _authorised(self, scope: Scope) -> bool:
        auth = _header(scope, b"authorization")
        if auth.lower().startswith("bearer "):
            return token_matches(auth[7:].strip(), self._token)
        for part in _header(scope, b"cookie").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return hmac.compare_digest(value.encode(), self._cookie.encode())
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        accepts_html = "text/html" in _header(scope, b"accept")
        if scope.get("method") == "GET" and accepts_html:
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", LOGIN_PATH.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await _plain(
            send,
            401,
            "A token is required: send 'Authorization: Bearer TOKEN' or sign in at /login.",
            [(b"www-authenticate", b"Bearer")],
        )
