"""Push notifications for an agent: ``POST /hooks/git`` on its ``--listen`` server.

A verified push to the agent's branch only wakes the loop (``AgentLoop.notify``): the loop then
fetches, verifies and deploys exactly as a poll would, so a notification carries no trust and
nothing in its body is deployed. Polling stays the fallback when notifications are lost.
A verified push to any other branch (a PR's) hands its ref to ``ahead``: the loop fetches that
branch and renders it into the render cache, deploying nothing (``DesiredState.prerender``).

Accepted signatures, both HMAC-SHA256 of the raw body with the shared secret
(``$PROMOTE_WEBHOOK_SECRET``), compared in constant time:

- Gitea (and Forgejo): ``X-Gitea-Signature: <hex>``;
- GitHub, and the ``post-receive`` hook ``promote hooks install`` writes for a bare remote:
  ``X-Hub-Signature-256: sha256=<hex>``.

Refusals are cheap and never wake the loop: no secret configured → 404 (the endpoint does not
exist); over the token bucket → 429, before the body is read; a body over ``max_body`` bytes →
413, unread; a missing or wrong signature → 401. This module must not import the loop or
anything that deploys: it only decides whether to call ``wake``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

PATH = "/hooks/git"
SECRET_ENV = "PROMOTE_WEBHOOK_SECRET"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    max_body: int = 1 << 20  # bytes; GitHub caps payloads at 25 MB, a push's is a few KB
    rate_per_s: float = 5.0  # sustained requests per second, all senders together
    burst: int = 20  # requests accepted at once before the rate applies


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    message: str


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; ``take`` is thread-safe and never blocks."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def sign(secret: bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body``: Gitea's header value; GitHub's after ``sha256=``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes, headers: Mapping[str, str]) -> bool:
    expected = sign(secret, body)
    github = headers.get("x-hub-signature-256", "")
    if github:
        scheme, _, value = github.partition("=")
        return scheme == "sha256" and hmac.compare_digest(value.strip(), expected)
    gitea = headers.get("x-gitea-signature", "")
    return bool(gitea) and hmac.compare_digest(gitea.strip(), expected)


def pushed_ref(body: bytes) -> str | None:
    """The ``ref`` of a push payload (Gitea's and GitHub's share it), else None."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    ref = doc.get("ref") if isinstance(doc, dict) else None
    return ref if isinstance(ref, str) else None


def _deleted(body: bytes) -> bool:
    """Whether a push payload deletes its ref (``after`` all zeros, or ``deleted: true``)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(doc, dict):
        return False
    return doc.get("deleted") is True or str(doc.get("after", "")).strip("0") == ""


class WebhookReceiver:
    """Decides, for one request, whether to wake the loop; see the module docstring."""

    def __init__(
        self,
        *,
        branch: str,
        wake: Callable[[], None],
        ahead: Callable[[str], None] | None = None,
        secret: bytes | None = None,
        settings: WebhookSettings | None = None,
    ) -> None:
        if secret is None:
            raw = os.environ.get(SECRET_ENV, "")
            secret = raw.encode() if raw else None
        self._secret = secret
        self._ref = f"refs/heads/{branch}"
        self._wake = wake
        self._ahead = ahead
        self.settings = settings or WebhookSettings()
        self._bucket = TokenBucket(self.settings.rate_per_s, self.settings.burst)
        self.accepted = 0  # notifications that woke the loop
        self.ahead = 0  # pushes to other branches handed on to render ahead
        self.refused: dict[int, int] = {}  # status code → count

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    def receive(
        self, headers: Mapping[str, str], length: int | None, read: Callable[[int], bytes]
    ) -> Reply:
        """``headers`` with lower-case names; ``length`` the Content-Length (None: absent);
        ``read(n)`` reads the body. The body is read only once the request passed the bucket
        and the size check."""
        reply = self._check(headers, length, read)
        if reply.code >= 400:
            self.refused[reply.code] = self.refused.get(reply.code, 0) + 1
            log.info("webhook refused: %d %s", reply.code, reply.message)
        return reply

    def _check(
        self, headers: Mapping[str, str], length: int | None, read: Callable[[int], bytes]
    ) -> Reply:
        if self._secret is None:
            return Reply(404, f"not found (set {SECRET_ENV} to enable {PATH})")
        if not self._bucket.take():
            return Reply(429, "too many requests")
        if length is None:
            return Reply(411, "Content-Length required")
        if length > self.settings.max_body:
            return Reply(413, f"body over {self.settings.max_body} bytes")
        body = read(length)
        if not signature_valid(self._secret, body, headers):
            return Reply(401, "missing or wrong signature")
        event = headers.get("x-github-event") or headers.get("x-gitea-event") or "push"
        if event == "ping":
            return Reply(200, "pong")
        if event != "push":
            return Reply(202, f"ignored: {event} event")
        ref, deleted = pushed_ref(body), _deleted(body)
        if ref == self._ref:
            self.accepted += 1
            self._wake()
            return Reply(202, "pass scheduled")
        if ref and ref.startswith("refs/heads/") and not deleted and self._ahead is not None:
            self.ahead += 1
            self._ahead(ref)
            return Reply(202, f"render ahead scheduled for {ref}; no pass")
        return Reply(202, f"ignored: push to {ref or 'no ref'}, not {self._ref}")
