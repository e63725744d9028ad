"""``promote.reconcile.webhook``: signatures, payloads and refusals, without a server.

The HTTP side (the agent's real server, the real Gitea) is tested in
tests/integration/test_agent_webhook.py.
"""

from __future__ import annotations

import json

import pytest

from promote.reconcile import webhook

SECRET = b"unit-secret"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
GOOD = webhook.sign(SECRET, BODY)


@pytest.mark.parametrize(
    ("headers", "valid"),
    [
        ({"x-hub-signature-256": f"sha256={GOOD}"}, True),
        ({"x-gitea-signature": GOOD}, True),
        ({"x-gitea-signature": GOOD.upper()}, False),  # hex as Gitea sends it: lower case
        ({"x-hub-signature-256": GOOD}, False),  # GitHub's needs its sha256= prefix
        ({"x-hub-signature-256": f"sha1={GOOD}"}, False),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, False),
        # a wrong GitHub header is not rescued by a right Gitea one
        ({"x-hub-signature-256": "sha256=00", "x-gitea-signature": GOOD}, False),
        ({}, False),
    ],
)
def test_signature_valid(headers: dict[str, str], valid: bool) -> None:
    assert webhook.signature_valid(SECRET, BODY, headers) is valid


@pytest.mark.parametrize(
    ("body", "ref"),
    [
        (BODY, "refs/heads/main"),
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"ref": 3}', None),
        (b"\xff\xfe", None),
    ],
)
def test_pushed_ref(body: bytes, ref: str | None) -> None:
    assert webhook.pushed_ref(body) == ref


def _receiver(wakes: list[int], **settings: float) -> webhook.WebhookReceiver:
    return webhook.WebhookReceiver(
        branch="main",
        wake=lambda: wakes.append(1),
        secret=SECRET,
        settings=webhook.WebhookSettings(**settings),  # type: ignore[arg-type]
    )


def _send(r: webhook.WebhookReceiver, body: bytes, headers: dict[str, str]) -> int:
    reads: list[int] = []

    def read(n: int) -> bytes:
        reads.append(n)
        return body[:n]

    reply = r.receive(headers, len(body), read)
    if reply.code in (413, 429):
        assert not reads  # refused before the body is read
    return reply.code


def test_only_a_signed_push_to_the_branch_wakes() -> None:
    wakes: list[int] = []
    r = _receiver(wakes)
    assert _send(r, BODY, {"x-gitea-signature": "00"}) == 401
    other = json.dumps({"ref": "refs/heads/feature"}).encode()
    assert _send(r, other, {"x-gitea-signature": webhook.sign(SECRET, other)}) == 202
    ping = {"x-hub-signature-256": f"sha256={GOOD}", "x-github-event": "ping"}
    assert _send(r, BODY, ping) == 200
    issues = {"x-gitea-signature": GOOD, "x-gitea-event": "issues"}
    assert _send(r, BODY, issues) == 202
    assert not wakes
    assert _send(r, BODY, {"x-gitea-signature": GOOD}) == 202
    assert wakes == [1] and r.accepted == 1 and r.refused == {401: 1}


def test_oversized_and_flooding_requests_are_refused_unread() -> None:
    wakes: list[int] = []
    r = _receiver(wakes, max_body=64, rate_per_s=0.001, burst=3)
    big = b"x" * 65
    assert _send(r, big, {"x-gitea-signature": webhook.sign(SECRET, big)}) == 413
    assert r.receive({}, None, lambda n: b"").code == 411
    assert _send(r, BODY[:64], {"x-gitea-signature": "00"}) == 401
    assert _send(r, BODY, {"x-gitea-signature": GOOD}) == 429  # the bucket is empty
    assert not wakes and r.refused == {413: 1, 411: 1, 401: 1, 429: 1}


def test_without_a_secret_nothing_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webhook.SECRET_ENV, raising=False)
    r = webhook.WebhookReceiver(branch="main", wake=lambda: None)
    assert not r.enabled
    assert r.receive({"x-gitea-signature": GOOD}, len(BODY), lambda n: BODY).code == 404


def test_token_bucket_refills() -> None:
    bucket = webhook.TokenBucket(rate_per_s=1000.0, burst=2)
    assert bucket.take() and bucket.take()
    # 1,000 tokens a second: one is back within a few milliseconds (bounded wait, no sleep)
    assert any(bucket.take() for _ in range(100_000))


def test_a_signed_push_to_another_branch_is_rendered_ahead_never_deployed() -> None:
    wakes: list[int] = []
    ahead: list[str] = []
    r = webhook.WebhookReceiver(
        branch="main", wake=lambda: wakes.append(1), ahead=ahead.append, secret=SECRET
    )

    def signed(doc: dict[str, object]) -> int:
        body = json.dumps(doc).encode()
        return _send(r, body, {"x-gitea-signature": webhook.sign(SECRET, body)})

    assert signed({"ref": "refs/heads/promote/prod/ab12", "after": "b" * 40}) == 202
    assert signed({"ref": "refs/heads/gone", "after": "0" * 40}) == 202  # a deletion
    assert signed({"ref": "refs/heads/gone", "after": "c" * 40, "deleted": True}) == 202
    assert signed({"ref": "refs/tags/v1", "after": "d" * 40}) == 202  # not a branch
    body = json.dumps({"ref": "refs/heads/evil", "after": "e" * 40}).encode()
    assert _send(r, body, {"x-gitea-signature": "00" * 32}) == 401  # unsigned: nothing
    assert ahead == ["refs/heads/promote/prod/ab12"] and r.ahead == 1 and not wakes
