"""Merge windows with an injected clock (issue 16 item 4): no sleeping through real time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promote import config
from promote.promotion import windows

WORKDAYS = config.WindowRule(
    rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH",
    start=datetime(2026, 1, 5, 9, 0),
    duration=timedelta(hours=8),
    time_zone="Europe/Berlin",
)
CHRISTMAS = config.WindowRule(
    rrule="FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24",
    start=datetime(2026, 12, 24, 0, 0),
    duration=timedelta(days=3),
    time_zone="Europe/Berlin",
)
BOTH = config.WindowsConfig(allow=[WORKDAYS], deny=[CHRISTMAS])


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "is_open", "next_opening"),
    [
        (_utc(2026, 11, 30, 8, 30), True, None),  # Monday 09:30 Berlin (UTC+1)
        (_utc(2026, 11, 30, 7, 59), False, _utc(2026, 11, 30, 8, 0)),  # 08:59 Berlin
        (_utc(2026, 11, 30, 16, 0), False, _utc(2026, 12, 1, 8, 0)),  # 17:00: closed
        (_utc(2026, 12, 4, 12, 0), False, _utc(2026, 12, 7, 8, 0)),  # Friday: next Monday
        (_utc(2026, 7, 6, 7, 30), True, None),  # summer: 09:30 Berlin is 07:30 UTC
        (_utc(2026, 7, 6, 6, 30), False, _utc(2026, 7, 6, 7, 0)),
        # Thursday 24 December: an allow day inside the deny window; opens Monday 28th
        (_utc(2026, 12, 24, 10, 0), False, _utc(2026, 12, 28, 8, 0)),
    ],
)
def test_merges_open_inside_allow_windows_outside_deny_windows(
    now: datetime, is_open: bool, next_opening: datetime | None
) -> None:
    got = windows.state(BOTH, now)
    assert got.open is is_open, got.describe()
    assert got.next_opening == next_opening


def test_the_reason_names_the_window() -> None:
    got = windows.state(BOTH, _utc(2026, 12, 24, 10, 0))
    assert "inside the deny window" in got.reason and "Europe/Berlin" in got.reason
    assert "next opening 2026-12-28 08:00 UTC" in got.describe()


def test_deny_only_and_no_windows() -> None:
    assert windows.state(config.WindowsConfig(), _utc(2026, 12, 24, 10, 0)).open
    deny = config.WindowsConfig(deny=[CHRISTMAS])
    assert windows.state(deny, _utc(2026, 12, 1, 10, 0)).open
    inside = windows.state(deny, _utc(2026, 12, 25, 10, 0))
    assert not inside.open and inside.next_opening == _utc(2026, 12, 26, 23, 0)


def test_a_deny_window_covering_every_day_has_no_next_opening() -> None:
    always = config.WindowRule(
        rrule="FREQ=DAILY", start=datetime(2026, 1, 1), duration=timedelta(hours=25)
    )
    got = windows.state(config.WindowsConfig(deny=[always]), _utc(2026, 6, 1, 12, 0))
    assert not got.open and got.next_opening is None and "no opening" in got.describe()


def _env(required: int = 2, break_glass: int | None = None) -> config.EnvironmentConfig:
    return config.EnvironmentConfig(
        approvals=config.ApprovalsConfig(required=required, approvers=["rm1", "rm2", "rm3"]),
        windows=config.WindowsConfig(
            allow=[WORKDAYS], break_glass=config.BreakGlassConfig(required=break_glass)
        ),
    )


FRIDAY = _utc(2026, 12, 4, 12, 0)


def test_a_merge_outside_the_window_names_the_next_opening() -> None:
    got = windows.check_merge({"prod": _env(), "dev": config.EnvironmentConfig()}, FRIDAY)
    assert not got.ok and len(got.problems) == 1
    assert got.problems[0].startswith("prod: merges are closed (outside every allow window")
    assert "next opening 2026-12-07 08:00 UTC" in got.problems[0]


@pytest.mark.parametrize(
    ("break_glass", "signed", "ok"),
    [(None, {"rm1", "rm2"}, True), (None, {"rm1"}, False), (1, {"rm1"}, True), (0, set(), True)],
)
def test_break_glass_needs_its_signed_approvals(
    break_glass: int | None, signed: set[str], ok: bool
) -> None:
    got = windows.check_merge(
        {"prod": _env(break_glass=break_glass)}, FRIDAY, reason="outage", signed=signed
    )
    assert got.ok is ok and got.broken == (("prod",) if ok else ())
    if not ok:
        assert (
            "break-glass needs 2 approval(s)" in got.problems[0]
            and "has 1 (rm1)" in got.problems[0]
        )


def test_break_glass_without_a_reason_opens_nothing() -> None:
    assert not windows.check_merge({"prod": _env()}, FRIDAY, signed={"rm1", "rm2"}).ok
