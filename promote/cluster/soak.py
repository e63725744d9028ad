"""Verification after deploy (pure; DESIGN.md §6, issue 16 item 1): Verified, Failed, Running.

After each pass the agent hands the environment's published health here. New images start
``Running``; they become ``Verified`` once the environment has been Synced and Healthy with
them for ``verification.healthyFor`` (and the checks, a callable the caller supplies, pass
then: an HTTP GET answers at once, a Job may still run, which keeps the verdict Running), and
``Failed`` if it turns Degraded before that or a check fails. Either
verdict is final for those images (a later Degraded is drift or an outage, reported by health;
a later recovery does not un-fail a version). The clock is a parameter. No I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from promote.cluster import health as health_mod


class Verification(enum.StrEnum):
    RUNNING = "Running"
    VERIFIED = "Verified"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    state: Verification
    reason: str

    @property
    def final(self) -> bool:
        return self.state is not Verification.RUNNING


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the optional checks said: ``failed`` (why), else ``pending`` (what they still
    wait for, e.g. a Job running), else passed (``passed`` says which)."""

    failed: str | None = None
    pending: str | None = None
    passed: str = ""


def judge(
    healthy_for: timedelta,
    *,
    health: str,
    healthy_since: datetime | None,
    now: datetime,
    details: dict[str, str] | None = None,
    check: Callable[[], CheckResult] | None = None,
) -> Verdict:
    """The verdict for the images deployed now (``health``: the published health label).

    ``check``: the optional checks, asked once healthy_for has passed (they do the I/O the
    caller supplies), and again at each judgement while one is pending."""
    if health_mod.Health.from_label(health) is health_mod.Health.DEGRADED:
        failing = "; ".join(f"{k}: {v}" for k, v in sorted((details or {}).items())[:3])
        return Verdict(Verification.FAILED, f"Degraded before verified ({failing or health})")
    if healthy_since is None:
        return Verdict(Verification.RUNNING, f"waiting for Synced and Healthy (now {health})")
    ran = now - healthy_since
    if ran >= healthy_for:
        result = check() if check is not None else CheckResult()
        if result.failed:
            return Verdict(Verification.FAILED, f"check failed: {result.failed}")
        if result.pending:
            return Verdict(Verification.RUNNING, f"Healthy for {_fmt(ran)}; {result.pending}")
        passed = f"; {result.passed}" if result.passed else ""
        return Verdict(Verification.VERIFIED, f"Healthy for {_fmt(healthy_for)}{passed}")
    left = healthy_for - ran
    return Verdict(Verification.RUNNING, f"Healthy for {_fmt(ran)}; {_fmt(left)} to go")


def _fmt(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
