"""What reached an environment, read from Git alone; and where a rollback goes back to.

An environment's history is the first-parent log of main restricted to its overlay file:
every commit there that changed an ``images:`` value is an entry (a merged PR, a ``set-image``
push, or a hand edit). Each is joined with the PR record that merged it (local forge: the
``refs/promote/prs/*`` copies fetched earlier), whose approvals are verified again now. It
works offline on the last fetched state.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promote.errors import UsageError
from promote.forge import base as forge_base
from promote.kustomize import overlay
from promote.promotion import approvals, engine, holds, people, plan, rejections, review, scope


class Judged(enum.StrEnum):
    """How a change reached the environment, by the agent's rules (``reconcile/audit.py``)."""

    APPROVED = "approved"  # a verified step: an approved head, a trusted signer, no policy
    RESTORED = "restored"  # not approved, but its inputs equal a verified revision's (a revert)
    UNAPPROVED = "unapproved"  # reached the environment's inputs without approval


@dataclass(frozen=True, slots=True)
class Entry:
    commit: str  # the commit on main that changed the overlay
    parent: str | None  # main before it (what a rollback of this entry returns to)
    at: datetime  # when it landed on main
    kind: str  # promotion | rollback | set-image | edit (by hand) | initial
    source: str | None
    source_revision: str | None
    changes: tuple[plan.ImageChange, ...]
    pr: forge_base.PullRequest | None
    approvals: tuple[approvals.CheckedApproval, ...] = ()
    judged: Judged | None = None  # None: not judged (the repository's first commit)
    why: str = ""  # the proof, or why it is not approved
    files: tuple[str, ...] = ()  # the environment's inputs it changed (when judged)

    @property
    def break_glass(self) -> str | None:
        """The break-glass reason signed in an approval counted at merge (verified now)."""
        counted = set(self.pr.merge.approvals) if self.pr and self.pr.merge else set()
        for c in self.approvals:
            valid = c.signature is approvals.SignatureStatus.VALID
            if c.approval.break_glass and c.approval.approver in counted and valid:
                return c.approval.break_glass
        return None

    @property
    def merged_by(self) -> str | None:
        if self.pr and self.pr.merge:
            return self.pr.merge.by
        return None


def history(
    s: engine.Session, env_name: str, *, limit: int | None = None, verify: bool = True
) -> list[Entry]:
    """Entries newest first; approvals checked now against the keys on main (unless
    ``verify`` is false: a rollback only needs the revisions)."""
    with review.registry(s) as rings:
        return _history(s, env_name, limit=limit, rings=rings if verify else None)


def _history(
    s: engine.Session, env_name: str, *, limit: int | None, rings: people.Registry | None
) -> list[Entry]:
    env = s.project.env(env_name)
    path = s.overlay_file(env)
    merged = {
        pr.merge.sha: pr
        for pr in s.forge.list(env=env_name, state=forge_base.PRState.MERGED)
        if pr.merge
    }
    images: dict[str, list[overlay.Image]] = {}  # by revision: each one is read once

    def at(rev: str) -> list[overlay.Image]:
        if rev not in images:
            images[rev] = _images(s, rev, path)
        return images[rev]

    entries: list[Entry] = []
    for commit in s.repo.log(s.sha, paths=[path], first_parent=True):
        parent = commit.parents[0] if commit.parents else None
        changes = plan.image_changes(at(parent) if parent else [], at(commit.sha))
        if not changes:
            continue
        pr = merged.get(commit.sha)
        trailers = commit.trailers
        if pr is not None:
            kind, source, rev = str(pr.kind), pr.source, pr.source_revision
            checked = (
                review.check_approvals(s, s.forge.approvals(pr.number), rings=rings)
                if rings is not None
                else []
            )
        else:
            kind = trailers.get("Promote-Kind", "edit" if parent else "initial")
            source = trailers.get("Promote-From")
            rev = trailers.get("Promote-Source-Revision")
            checked = []
        entries.append(
            Entry(
                commit=commit.sha,
                parent=parent,
                at=commit.committed_at,
                kind=kind,
                source=source,
                source_revision=rev,
                changes=tuple(changes),
                pr=pr,
                approvals=tuple(checked),
            )
        )
        if limit and len(entries) >= limit:
            break
    return entries


def _images(s: engine.Session, rev: str, path: str) -> list[overlay.Image]:
    raw = s.repo.read_file(rev, path)
    if raw is None:
        return []
    return overlay.parse_images(raw.decode("utf-8"), f"{path}@{rev[:12]}")


def rollback_revision(
    s: engine.Session, env_name: str, *, to: str | None = None, steps: int | None = None
) -> str:
    """The main revision whose images ``promote rollback`` restores."""
    if to and steps:
        raise UsageError("use either --to REV or --steps N, not both.")
    if to:
        found = s.repo.try_resolve(to)
        if found is None:
            raise UsageError(f"--to {to}: no such revision (fetched from {s.remote}).")
        if not s.repo.is_ancestor(found, s.sha):
            raise UsageError(f"--to {to}: {found[:12]} is not on {s.main}; name a commit of it.")
        return found
    n = 1 if steps is None else steps
    if n < 1:
        raise UsageError("--steps must be 1 or more.")
    entries = history(s, env_name, limit=n, verify=False)
    if len(entries) < n or entries[n - 1].parent is None:
        raise UsageError(
            f"{env_name} has {len(entries)} change(s) in its history; cannot go back {n}."
        )
    parent = entries[n - 1].parent
    assert parent is not None
    return parent


def rejected_in(
    entries: Sequence[Entry], records: Sequence[rejections.Rejection]
) -> list[tuple[rejections.Rejection, tuple[str, ...]]]:
    """Each rejection of a version that reached the environment, with the commits that
    moved it in (``promote history`` shows them beside the changes)."""
    out = []
    for r in records:
        commits = tuple(
            dict.fromkeys(
                e.commit for e in entries for c in e.changes if rejections.matches(r, c.new)
            )
        )
        if commits:
            out.append((r, commits))
    return out


def rejection_to_dict(r: rejections.Rejection, commits: Sequence[str]) -> dict[str, Any]:
    return {**r.to_dict(), "commits": list(commits)}


def to_dict(entry: Entry) -> dict[str, Any]:
    verdict_names = set(entry.pr.merge.approvals) if entry.pr and entry.pr.merge else set()
    return {
        "commit": entry.commit,
        "at": entry.at.isoformat(),
        "kind": entry.kind,
        "from": entry.source,
        "sourceRevision": entry.source_revision,
        "changes": [
            {"app": c.app, "image": c.name, "from": c.old_version, "to": c.new_version}
            for c in entry.changes
        ],
        "pr": None
        if entry.pr is None
        else {"number": entry.pr.number, "title": entry.pr.title, "author": entry.pr.author},
        "mergedBy": entry.merged_by,
        "breakGlass": entry.break_glass,
        "judged": str(entry.judged) if entry.judged else None,
        "unapproved": entry.judged is Judged.UNAPPROVED,
        "why": entry.why or None,
        "files": list(entry.files),
        "approvals": [
            {
                "approver": c.approval.approver,
                "headSha": c.approval.head_sha,
                "at": c.approval.at.isoformat(),
                "signature": str(c.signature),
                "detail": c.detail,
                "countedAtMerge": c.approval.approver in verdict_names,
                "breakGlass": c.approval.break_glass,
            }
            for c in entry.approvals
        ],
    }


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """A release record placed or removed on main (DESIGN.md §6): not a change of the
    environment's inputs, but part of its story (a rejection holds in every environment)."""

    commit: str
    at: datetime
    kind: str  # reject | hold | resume | lift (a merged records PR, e.g. `promote unreject`)
    subject: str
    path: str | None  # the record written or removed
    by: str | None
    reason: str
    pr: int | None = None


def record_events(s: engine.Session, env_name: str) -> list[RecordEvent]:
    """Release records on main that concern ``env_name``, newest first: every rejection and
    its lifting, and the environment's own holds and resumes. Read from Git alone."""
    s.project.env(env_name)
    lifted = {
        pr.merge.sha: pr
        for pr in s.forge.list(state=forge_base.PRState.MERGED)
        if pr.merge and pr.kind is forge_base.PRKind.RECORDS
    }
    own_hold = holds.record_path(env_name)
    out = []
    for commit in s.repo.log(s.sha, paths=[scope.RECORDS_ROOT], first_parent=True):
        trailers = commit.trailers
        kind, path = trailers.get("Promote-Kind", ""), trailers.get("Promote-Record")
        pr = lifted.get(commit.sha)
        if pr is not None and pr.merge is not None:
            out.append(RecordEvent(commit.sha, commit.committed_at, "lift", pr.title, None,
                                   pr.merge.by, "", pr.number))  # fmt: skip
        elif kind == "reject" or (kind in ("hold", "resume") and path == own_hold):
            by, reason = _record_author(s, commit.sha, kind, path)
            out.append(RecordEvent(commit.sha, commit.committed_at, kind, commit.subject, path,
                                   by or commit.author.name, reason))  # fmt: skip
    return out


def _record_author(s: engine.Session, sha: str, kind: str, path: str | None) -> tuple[str, str]:
    """Who placed the record at ``sha`` and why, as the record itself says."""
    raw = s.repo.read_file(sha, path) if path and kind != "resume" else None
    if raw is None:
        return "", ""
    text = raw.decode("utf-8")
    found = (
        rejections.parse(text, path or "") if kind == "reject" else holds.parse(text, path or "")
    )
    return found.by, found.reason


def record_to_dict(e: RecordEvent) -> dict[str, Any]:
    return {
        "commit": e.commit,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "subject": e.subject,
        "record": e.path,
        "by": e.by,
        "reason": e.reason or None,
        "pr": e.pr,
    }
