"""The HTTP check of verification after deploy against a real HTTP server on 127.0.0.1 (the
standard library's), judged through the agent's postdeploy step with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promote import config
from promote.reconcile import postdeploy
from promote.reconcile import status as status_mod
from promote.reconcile.metrics import Metrics

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the standard library names it
        code, body = {"/ok": (200, b"ready: web-app"), "/down": (503, b"SECRET-PAGE")}.get(
            self.path, (404, b"")
        )
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _judge(check: config.HttpCheck) -> status_mod.EnvStatus:
    st = status_mod.EnvStatus(env="dev", health="Healthy", images={"web-app": "v2"})
    st.healthy_since = (NOW - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events: list[dict[str, Any]] = []
    postdeploy.update(
        st,
        config.VerificationConfig(healthy_for=timedelta(minutes=5), http=check),
        now=NOW,
        metrics=Metrics(),
        cluster=None,  # type: ignore[arg-type]  (only the Event uses it: captured below)
        namespace="dev",
        event=lambda _cluster, **kw: events.append(kw),
    )
    assert len(events) == 1 and events[0]["reason"] == f"Verification{st.verification['state']}"
    return st


@pytest.mark.parametrize(
    ("path", "contains", "state", "says"),
    [
        ("/ok", "ready", "Verified", "HTTP check passed"),
        ("/down", None, "Failed", "answered 503, expected 200"),
        ("/ok", "web-api", "Failed", "does not contain 'web-api'"),
    ],
)
def test_the_http_check_decides_once_healthy_long_enough(
    server: str, path: str, contains: str | None, state: str, says: str
) -> None:
    st = _judge(config.HttpCheck(url=server + path, body_contains=contains))
    assert st.verification is not None and st.verification["state"] == state
    assert says in st.verification["reason"] and "SECRET-PAGE" not in str(st.verification)


def test_an_unreachable_check_fails_naming_the_error() -> None:
    st = _judge(config.HttpCheck(url="http://127.0.0.1:9/", timeout=timedelta(seconds=2)))
    assert st.verification is not None and st.verification["state"] == "Failed"
    assert "ConnectError" in st.verification["reason"]
