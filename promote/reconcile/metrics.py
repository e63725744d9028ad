"""Prometheus metrics of one agent, and the small HTTP server for /status, /healthz, /metrics.

Labels carry environment names, stages and kinds only: never an object's content. The server
also routes ``POST /hooks/git`` to a ``webhook.WebhookReceiver`` when the loop gives it one.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from promote.errors import PromoteError
from promote.reconcile import webhook as webhook_mod

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pass_duration = Histogram(
            "promote_reconcile_pass_duration_seconds",
            "Duration of a full reconcile pass.",
            ["env"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.objects_applied = Counter(
            "promote_objects_applied_total", "Objects applied.", ["env"], registry=self.registry
        )
        self.drift_corrections = Counter(
            "promote_drift_corrections_total",
            "Drift reverted (self-heal).",
            ["env", "kind"],
            registry=self.registry,
        )
        self.failures = Counter(
            "promote_reconcile_failures_total",
            "Failed passes by stage.",
            ["env", "stage"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "promote_last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync.",
            ["env"],
            registry=self.registry,
        )
        self.out_of_sync = Gauge(
            "promote_out_of_sync_objects", "Objects that differ.", ["env"], registry=self.registry
        )
        self._trust_and_hooks()

    def _trust_and_hooks(self) -> None:
        """Verification (trust chain and after deploy) and webhook metrics."""
        self.unverified = Gauge(
            "promote_unverified_revision",
            "1 while main's head is not verified for this environment (the last verified "
            "revision stays deployed).",
            ["env"],
            registry=self.registry,
        )
        self.out_of_window = Gauge(
            "promote_out_of_window",
            "1 while a new revision waits for a merge window (the deployed one stays).",
            ["env"],
            registry=self.registry,
        )
        self.unverified_total = Counter(
            "promote_unverified_heads_total",
            "Heads of main refused by verification.",
            ["env"],
            registry=self.registry,
        )
        self.verify_duration = Histogram(
            "promote_verification_duration_seconds",
            "Time to verify a new head (walk, signatures, merges).",
            ["env"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
        )
        self.verification = Gauge(
            "promote_verification_state",
            "Verification after deploy of the images running now: 1 for the current state "
            "(Running, Verified, Failed), 0 for the others.",
            ["env", "state"],
            registry=self.registry,
        )
        self.webhook_requests = Counter(
            "promote_webhook_requests_total",
            "Requests to POST /hooks/git by reply code (202 accepted or ignored, 401, 413, 429).",
            ["code"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def serve(
    address: str,
    *,
    status: Callable[[], dict[str, Any]],
    healthy: Callable[[], bool],
    metrics: Metrics,
    webhook: webhook_mod.WebhookReceiver | None = None,
) -> ThreadingHTTPServer:
    """Serve /status (JSON), /healthz and /metrics on ``host:port`` in a daemon thread, and
    ``POST /hooks/git`` when ``webhook`` is given (404 otherwise, as for any unknown path)."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # seconds a client may take to send its request: a stalled body ends here

        def do_POST(self) -> None:
            if webhook is None or self.path.split("?")[0] != webhook_mod.PATH:
                self._send(404, "text/plain", b"not found\n")
                return
            length = _content_length(self.headers.get("Content-Length"))
            headers = {k.lower(): v for k, v in self.headers.items()}
            consumed: list[int] = []

            def read(n: int) -> bytes:
                consumed.append(n)
                return self.rfile.read(n)

            reply = webhook.receive(headers, length, read)
            metrics.webhook_requests.labels(str(reply.code)).inc()
            if not consumed and length and length <= 4 * webhook.settings.max_body:
                # Drain a refused body (429, 413) so the sender reads the reply instead of a
                # connection reset; a larger one is cut off when the connection closes.
                self.rfile.read(length)
            self.close_connection = True
            self._send(reply.code, "text/plain", reply.message.encode() + b"\n")

        def do_GET(self) -> None:
            if self.path.startswith("/status"):
                self._send(200, "application/json", json.dumps(status(), indent=2).encode())
            elif self.path.startswith("/healthz"):
                ok = healthy()
                self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"unhealthy\n")
            elif self.path.startswith("/metrics"):
                self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    try:
        server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    except (OSError, OverflowError, ValueError) as exc:
        reason = (
            "the address is already in use"
            if getattr(exc, "errno", None) == errno.EADDRINUSE
            else (getattr(exc, "strerror", None) or str(exc))
        )
        raise PromoteError(
            f"cannot serve /status and /metrics on {address}: {reason}.",
            hint="Choose a free port with --listen HOST:PORT, or stop what listens there.",
        ) from None
    threading.Thread(target=server.serve_forever, name="agent-http", daemon=True).start()
    return server


def _content_length(raw: str | None) -> int | None:
    """A request's Content-Length, or None when absent or not a non-negative number."""
    try:
        length = int(raw) if raw is not None else None
    except ValueError:
        return None
    return length if length is None or length >= 0 else None
