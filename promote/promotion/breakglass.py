"""Merge windows at merge time, and break-glass merges (DESIGN.md §6, issue 16 item 4).

``promote merge`` asks :func:`check` after the approval policy holds: every environment the PR
affects must have its windows open now (the pure ``windows`` module decides), unless the merge
breaks glass with a reason that enough counted approvers signed in their approvals. The merge
commit then carries a ``Promote-Break-Glass`` trailer, so history shows it. The clock is a
parameter. (Kept apart from ``review`` so that module stays one screenful per verb.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from promote.errors import PolicyBlocked
from promote.forge import base as forge_base
from promote.promotion import approvals, engine, windows


def check(
    s: engine.Session,
    pr: forge_base.PullRequest,
    verdict: approvals.Verdict,
    *,
    now: datetime | None,
    reason: str | None,
) -> windows.MergeCheck:
    """The merge windows of every affected environment; exit 3 naming the next opening."""
    envs = {e: s.project.env(e).config for e in verdict.scope or (pr.env,)}
    signed: set[str] = set()
    if reason:
        signed = {
            a.approver
            for a in s.forge.approvals(pr.number)
            if a.break_glass == reason and a.head_sha == pr.head_sha
        } & set(verdict.counted)  # counted: their signatures verified under main's keys
    found = windows.check_merge(envs, now or datetime.now(UTC), reason=reason, signed=signed)
    if not found.ok:
        hint = (
            f"Wait for the opening, or break glass: approvers run `promote approve {pr.number} "
            f"--as NAME --break-glass --reason R`, then `promote merge {pr.number} --break-glass "
            "--reason R` with the same reason."
        )
        raise PolicyBlocked(
            f"PR #{pr.number}: " + "; ".join(found.problems),
            problems=list(found.problems),
            hint=hint,
        )
    return found


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())
