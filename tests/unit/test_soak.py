"""Verification after deploy (issue 16 item 1): Running, Verified, Failed with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promote.cluster import soak

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("health", "since", "state", "says"),
    [
        ("Progressing", None, soak.Verification.RUNNING, "waiting for Synced and Healthy"),
        ("Healthy", NOW - timedelta(minutes=2), soak.Verification.RUNNING, "3m00s to go"),
        ("Healthy", NOW - FIVE, soak.Verification.VERIFIED, "Healthy for 5m00s"),
        ("Degraded", None, soak.Verification.FAILED, "Degraded before verified"),
        ("Missing", None, soak.Verification.RUNNING, "now Missing"),
    ],
)
def test_new_images_are_verified_after_healthy_for_or_failed_when_degraded(
    health: str, since: datetime | None, state: soak.Verification, says: str
) -> None:
    got = soak.judge(FIVE, health=health, healthy_since=since, now=NOW)
    assert got.state is state and says in got.reason
    assert got.final is (state is not soak.Verification.RUNNING)


def test_a_failure_names_the_degraded_objects() -> None:
    details = {"Deployment dev/web-app": "Degraded: ProgressDeadlineExceeded"}
    got = soak.judge(FIVE, health="Degraded", healthy_since=None, now=NOW, details=details)
    assert "Deployment dev/web-app: Degraded: ProgressDeadlineExceeded" in got.reason


def test_the_http_check_is_asked_only_once_healthy_long_enough() -> None:
    asked: list[int] = []

    def check() -> soak.CheckResult:
        asked.append(1)
        return soak.CheckResult(failed="GET http://x/ answered 503, expected 200")

    early = soak.judge(FIVE, health="Healthy", healthy_since=NOW, now=NOW, check=check)
    assert early.state is soak.Verification.RUNNING and not asked
    late = soak.judge(FIVE, health="Healthy", healthy_since=NOW - FIVE, now=NOW, check=check)
    assert late.state is soak.Verification.FAILED and "answered 503" in late.reason
    passed = soak.CheckResult(passed="the HTTP check passed")
    ok = soak.judge(FIVE, health="Healthy", healthy_since=NOW - FIVE, now=NOW, check=lambda: passed)
    assert ok.state is soak.Verification.VERIFIED and "HTTP check passed" in ok.reason


def test_a_pending_check_keeps_the_verdict_running() -> None:
    pending = soak.CheckResult(pending="Job dev/smoke running")
    got = soak.judge(
        FIVE, health="Healthy", healthy_since=NOW - FIVE, now=NOW, check=lambda: pending
    )
    assert got.state is soak.Verification.RUNNING and "Job dev/smoke running" in got.reason
