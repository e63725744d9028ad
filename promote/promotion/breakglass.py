"""Merge windows at merge time, and break-glass merges (DESIGN.md §6, issue 16 item 4).

``promote merge`` asks :func:`check` after the approval policy holds: every environment the PR
affects must have its windows open now (the pure ``windows`` module decides), unless the merge
breaks glass with a reason that enough counted approvers signed in their approvals. The merge
commit then carries a ``Promote-Break-Glass`` trailer, so history shows it. The clock is a
parameter. (Kept apart from ``review`` so that module stays one screenful per verb.)

A rollback is exempt (DESIGN.md §6): when the head's inputs of a closed environment equal
those of an earlier revision of main (:func:`restored_from`), its windows do not apply.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from promote.errors import PolicyBlocked
from promote.forge import base as forge_base
from promote.git import history
from promote.kustomize import folder
from promote.promotion import approvals, engine, scope, windows


def check(
    s: engine.Session,
    pr: forge_base.PullRequest,
    verdict: approvals.Verdict,
    *,
    now: datetime | None,
    reason: str | None,
) -> windows.MergeCheck:
    """The merge windows of every affected environment; exit 3 naming the next opening. A
    rollback (the head's inputs equal an earlier state of main) is exempt."""
    when = now or datetime.now(UTC)
    envs = {e: s.project.env(e).config for e in verdict.scope or (pr.env,)}
    closed = [e for e, cfg in envs.items() if not windows.state(cfg.windows, when).open]
    restored = tuple(e for e in closed if restored_from(s, pr.head_sha, e) is not None)
    envs = {e: cfg for e, cfg in envs.items() if e not in restored}
    signed: set[str] = set()
    if reason:
        signed = {
            a.approver
            for a in s.forge.approvals(pr.number)
            if a.break_glass == reason and a.head_sha == pr.head_sha
        } & set(verdict.counted)  # counted: their signatures verified under main's keys
    found = windows.check_merge(envs, when, reason=reason, signed=signed)
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
    return dataclasses.replace(found, restored=restored)


RECENT = 20  # changes to an environment's overlay searched for a state a rollback restores


def restored_from(s: engine.Session, head: str, env: str) -> str | None:
    """An earlier revision of main whose inputs of ``env`` equal ``head``'s, from before the
    state ``env`` has now first appeared (a rollback goes back: re-promoting a version that
    was rolled back away from is not one), or None. The agent applies such a revision
    inside a window only if it verified that state after deploy (``reconcile/windowgate.py``)."""
    layout = folder.layout(s.project)
    mine = history.tree_blobs(s.repo, head)
    current = history.tree_blobs(s.repo, s.sha)
    if scope.inputs_equal(env, layout, mine, current):
        return None  # changes nothing in env
    path = s.overlay_file(s.project.env(env))
    earlier: list[tuple[str, dict[str, str]]] = []  # states before each change, newest first
    for commit in s.repo.log(s.sha, paths=[path], first_parent=True, max_count=RECENT):
        for rev in commit.parents[:1]:
            earlier.append((rev, history.tree_blobs(s.repo, rev)))
    seen_now = [
        i for i, (_, b) in enumerate(earlier) if scope.inputs_equal(env, layout, b, current)
    ]
    for rev, blobs in earlier[(seen_now[-1] + 1 if seen_now else 0) :]:
        if scope.inputs_equal(env, layout, mine, blobs):
            return rev
    return None


def announce(
    s: engine.Session, number: int, found: windows.MergeCheck, *, by: str, reason: str | None
) -> None:
    """Comment on the PR when it merged inside closed windows: as a rollback, or breaking
    glass (a fast-forward has no merge commit to carry the trailer)."""
    if found.restored:
        text = f"Rollback merged inside closed merge windows ({', '.join(found.restored)})"
        s.forge.comment(number, author=by, text=text)
    if found.broken:
        text = f"Break-glass merge ({', '.join(found.broken)}): {one_line(reason)}"
        s.forge.comment(number, author=by, text=text)


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())
