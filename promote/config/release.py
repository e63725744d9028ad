"""Release-control settings of ``environments/<env>.yaml`` (DESIGN.md §6, issue 16):
verification after deploy and merge windows. Declared here, loaded by ``model`` (which checks
what spans fields); kept apart so each module stays small. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpCheck:
    """An HTTP GET the agent makes once the new images have been healthy for ``healthyFor``:
    Verified only if it answers ``expect_status`` (and ``body_contains``, when set)."""

    url: str
    expect_status: int = 200
    body_contains: str | None = None
    timeout: timedelta = timedelta(seconds=5)  # the agent waits no longer for an answer


@dataclass(frozen=True, slots=True, kw_only=True)
class JobMetadata:
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCheck:
    """A Kubernetes Job the agent creates once the new images have been healthy for
    ``healthyFor``: Verified only if it succeeds. Written as Argo Rollouts' and Kargo's job
    provider is: a Job's ``metadata`` (labels, annotations) and ``spec``, inline."""

    spec: dict[str, Any]  # a batch/v1 JobSpec (template.spec.containers at least)
    metadata: JobMetadata = field(default_factory=JobMetadata)
    # The Job's activeDeadlineSeconds unless its spec sets one: the Job controller fails it
    # then (a Job whose Pods never schedule would otherwise keep the verdict Running).
    timeout: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationConfig:
    """Verification after deploy: new images are Verified once Synced and Healthy for
    ``healthy_for``, Failed if they turn Degraded first (the agent judges it after each pass)."""

    healthy_for: timedelta = timedelta(minutes=5)
    http: HttpCheck | None = None  # checked once, when healthy_for has passed
    job: JobCheck | None = None  # created once healthy_for has passed (after the HTTP check)


# What the agent does when a verification fails: open a rollback PR to the last verified
# version (``pr``: it waits for approvals like any PR) or open and merge it (``auto``).
RollbackMode = Literal["pr", "auto"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowRule:
    """A recurring window: an RFC 5545 ``RRULE`` whose occurrences start at ``start``'s
    wall-clock time in ``timeZone`` (an IANA name) and last ``duration`` each."""

    rrule: str  # e.g. FREQ=WEEKLY;BYDAY=MO,TU,WE,TH
    start: datetime  # DTSTART, local to time_zone (no offset)
    duration: timedelta
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakGlassConfig:
    # break-glass approvals a merge outside the windows needs; default: approvals.required.
    # Never more than the listed approvers (load refuses a setting nobody could satisfy).
    required: int | None = field(default=None, metadata={"ge": 0})


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowsConfig:
    """When ``promote merge`` may merge into the environment (none listed: always)."""

    allow: list[WindowRule] = field(default_factory=list)  # merges only inside one of these
    deny: list[WindowRule] = field(default_factory=list)  # never inside one of these
    break_glass: BreakGlassConfig = field(default_factory=BreakGlassConfig)

    @property
    def any(self) -> bool:
        return bool(self.allow or self.deny)


def window_problem(rule: WindowRule) -> str | None:
    """Why ``rule`` cannot be evaluated, with the fix, or None."""
    import zoneinfo

    from dateutil import rrule as du

    try:
        tz = zoneinfo.ZoneInfo(rule.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"timeZone {rule.time_zone!r} is not an IANA time zone; write e.g. Europe/Berlin."
    if rule.duration <= timedelta(0):
        return "duration must be positive; write e.g. 8h."
    problem = rrule_problem(rule.rrule)
    if problem:
        return f"rrule {rule.rrule!r} is not an RFC 5545 RRULE: {problem}"
    try:
        du.rrulestr(rule.rrule, dtstart=rule.start.replace(tzinfo=tz))
    except (ValueError, TypeError):  # dateutil's wording is Python's ("not enough values…")
        return f"rrule {rule.rrule!r} is not an RFC 5545 RRULE; {_RRULE_EXAMPLE}"
    return None


_RRULE_EXAMPLE = "write NAME=VALUE parts joined by ';', e.g. FREQ=WEEKLY;BYDAY=MO,TU,WE,TH."
_FREQS = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_RRULE_INTS = ("COUNT", "INTERVAL", "BYSECOND", "BYMINUTE", "BYHOUR", "BYMONTHDAY",
               "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS")  # fmt: skip
_RRULE_PARTS = ("FREQ", "UNTIL", "BYDAY", "WKST", *_RRULE_INTS)
_WEEKDAY = re.compile(r"[+-]?\d{0,2}(MO|TU|WE|TH|FR|SA|SU)")


def rrule_problem(text: str) -> str | None:
    """What is wrong with an RRULE in RFC 5545's own terms (parts, FREQ, BYDAY), or None;
    dateutil checks the rest."""
    parts = text.strip().removeprefix("RRULE:").split(";")
    named: dict[str, str] = {}
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip().upper()
        if not eq or not name or not value.strip():
            return f"{part.strip()!r} is not a NAME=VALUE part; {_RRULE_EXAMPLE}"
        if name not in _RRULE_PARTS:
            return f"{name} is not an RRULE part (RFC 5545 has {', '.join(_RRULE_PARTS)})."
        named[name] = value.strip().upper()
    if "FREQ" not in named:
        return f"FREQ is missing (one of {', '.join(_FREQS)}); {_RRULE_EXAMPLE}"
    if named["FREQ"] not in _FREQS:
        return f"FREQ={named['FREQ']} is not one of {', '.join(_FREQS)}."
    for day in filter(None, named.get("BYDAY", "").split(",")):
        if not _WEEKDAY.fullmatch(day):
            return f"BYDAY={day} is not a weekday: write MO, TU, WE, TH, FR, SA or SU."
    for name in _RRULE_INTS:
        if name in named and not all(re.fullmatch(r"[+-]?\d+", v) for v in named[name].split(",")):
            return f"{name}={named[name]} is not a number (or comma-separated numbers)."
    return None


def http_problem(check: HttpCheck) -> str | None:
    if not check.url.startswith(("http://", "https://")):
        return f"url {check.url!r} is not an http:// or https:// URL."
    if check.timeout <= timedelta(0):
        return "timeout must be positive; write e.g. 5s."
    return None


def job_problem(check: JobCheck) -> str | None:
    """Why ``check``'s spec cannot make a Job, with the fix, or None (the API server checks
    the rest when the agent creates it)."""
    template = check.spec.get("template")
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers:
        return "spec.template.spec.containers is missing; write the Job's Pod template there."
    if any(not isinstance(c, dict) or not c.get("image") for c in containers):
        return "every container in spec.template.spec.containers needs an image."
    if check.timeout <= timedelta(0):
        return "timeout must be positive; write e.g. 10m."
    return None
