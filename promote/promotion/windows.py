"""Merge windows (pure; DESIGN.md §6, issue 16 item 4): is an environment open at a time?

An environment with ``windows:`` accepts merges only inside one of its ``allow`` windows (when
it lists any) and never inside a ``deny`` window. Each window is an RFC 5545 recurrence
evaluated with python-dateutil's ``rrule``: occurrences start at ``start``'s wall-clock time in
the rule's IANA zone (so 09:00 stays 09:00 across daylight-saving changes) and last
``duration``. The clock is a parameter: callers pass ``now``, tests pass any instant.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dateutil import rrule as du

from promote import config

LOOKAHEAD = 500  # occurrences of each rule searched for the next opening


@dataclass(frozen=True, slots=True)
class WindowState:
    open: bool
    reason: str  # why, for people: which window holds or is missing
    next_opening: datetime | None = None  # UTC; None when open, or none found ahead

    def describe(self) -> str:
        if self.open:
            return self.reason
        after = (
            f"next opening {self.next_opening:%Y-%m-%d %H:%M} UTC"
            if self.next_opening
            else f"no opening within the next {LOOKAHEAD} occurrences of its rules"
        )
        return f"{self.reason}; {after}"


@dataclass(frozen=True, slots=True)
class _Rule:
    recurrence: du.rrule
    duration: timedelta
    label: str

    def active_until(self, t: datetime) -> datetime | None:
        """The end of an occurrence running at ``t`` (the latest, if several overlap)."""
        starts = self.recurrence.between(t - self.duration, t, inc=True)
        ends = [s + self.duration for s in starts if s + self.duration > t]
        return max(ends) if ends else None

    def ahead(self, t: datetime) -> list[datetime]:
        return list(self.recurrence.xafter(t - self.duration, count=LOOKAHEAD, inc=True))


def _compile(rule: config.WindowRule, kind: str) -> _Rule:
    tz = zoneinfo.ZoneInfo(rule.time_zone)
    recurrence = du.rrulestr(rule.rrule, dtstart=rule.start.replace(tzinfo=tz))
    assert isinstance(recurrence, du.rrule)  # one RRULE, not an rruleset (config checked it)
    label = (
        f"{kind} {rule.rrule} from {rule.start:%H:%M} {rule.time_zone} for "
        f"{config.format_duration(rule.duration)}"
    )
    return _Rule(recurrence, rule.duration, label)


def _is_open(allow: Sequence[_Rule], deny: Sequence[_Rule], t: datetime) -> bool:
    if any(d.active_until(t) for d in deny):
        return False
    return not allow or any(a.active_until(t) for a in allow)


def state(windows: config.WindowsConfig, now: datetime) -> WindowState:
    """Whether merges are open at ``now`` (an aware time) and, if not, when they next open."""
    now = now.astimezone(UTC)
    if not windows.any:
        return WindowState(True, "no windows: merges are always open")
    allow = [_compile(r, "allow") for r in windows.allow]
    deny = [_compile(r, "deny") for r in windows.deny]
    for d in deny:
        if d.active_until(now):
            return WindowState(False, f"inside the deny window {d.label}", _next(allow, deny, now))
    for a in allow:
        if a.active_until(now):
            return WindowState(True, f"inside the allow window {a.label}")
    if not allow:
        return WindowState(True, "outside every deny window")
    return WindowState(False, "outside every allow window", _next(allow, deny, now))


def _next(allow: Sequence[_Rule], deny: Sequence[_Rule], now: datetime) -> datetime | None:
    """The first instant after ``now`` when merges open: an allow window's start or a deny
    window's end, whichever comes first and is open."""
    candidates = {s for a in allow for s in a.ahead(now)}
    candidates |= {s + d.duration for d in deny for s in d.ahead(now)}
    for t in sorted(c.astimezone(UTC) for c in candidates):
        if t > now and _is_open(allow, deny, t):
            return t
    return None


@dataclass(frozen=True, slots=True)
class MergeCheck:
    """Whether a merge may happen now under the windows of the environments it affects."""

    problems: tuple[str, ...] = ()  # one per closed environment the break-glass cannot open
    broken: tuple[str, ...] = ()  # closed environments a break-glass merge opens
    restored: tuple[str, ...] = ()  # closed environments a rollback may enter (exempt)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_merge(
    envs: Mapping[str, config.EnvironmentConfig],
    now: datetime,
    *,
    reason: str | None = None,
    signed: Collection[str] = (),
) -> MergeCheck:
    """The windows of every affected environment (``envs``) at ``now``. A closed one opens
    only for a break-glass merge (``reason``) that ``signed`` (the counted approvers whose
    approval is signed as break-glass with that reason) meets its ``breakGlass.required``."""
    problems: list[str] = []
    broken: list[str] = []
    for env, cfg in envs.items():
        found = state(cfg.windows, now)
        if found.open:
            continue
        need = cfg.break_glass_required
        if reason and len(signed) >= need:
            broken.append(env)
            continue
        why = f"{env}: merges are closed ({found.describe()})"
        if reason:
            who = ", ".join(sorted(signed)) or "nobody"
            why += (
                f"; break-glass needs {need} approval(s) signed as break-glass with the reason "
                f"{reason!r}, has {len(signed)} ({who})"
            )
        problems.append(why)
    return MergeCheck(tuple(problems), tuple(broken))
