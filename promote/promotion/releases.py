"""Placing and lifting release records: rejected versions (DESIGN.md §6, issue 16 item 3).

``reject`` pushes its record straight to main: a record is no render input, so it needs no
approval and no agent goes Unverified, and a brake that waited for review would leave the bad
version promotable meanwhile. The push is compare-and-swap on main, retried when main moved.
``unreject`` removes the record through a pull request (``governance.propose``): a removal
lifts a restriction on every environment, so it needs the strictest one's approvals.
What a record says and whether a change hits one is the pure ``rejections`` module's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from promote import config
from promote.errors import UsageError
from promote.forge import base as forge_base
from promote.promotion import engine, governance, holds, rejections


@dataclass(frozen=True, slots=True)
class Placed:
    record: rejections.Rejection
    commit: str | None  # None: that version was already rejected (nothing pushed)
    not_recorded: str | None = None  # the reason given, when it differs from the one kept


def reject(
    repo_dir: Path,
    app: str,
    version: str,
    *,
    reason: str,
    now: datetime,
    evidence: str | None = None,
    who: str | None = None,
) -> Placed:
    """Write ``releases/rejected/APP/VERSION.yaml`` on main (no approval: see the module)."""
    rejections.check_version(app, version)
    if not reason.strip():
        raise UsageError("--reason: say why the version is rejected (it is shown in every plan).")
    with engine.session(repo_dir) as s:
        _check_app(s, app)
        record = rejections.Rejection(app, version, reason.strip(), now, s.user(who), evidence)
        message = (
            f"Reject {app} {version}\n\n{record.reason}\n\n"
            f"Promote-Kind: reject\nPromote-Record: {record.path}\n"
        )
        content = rejections.dump(record).encode("utf-8")
        commit, old = _push_record(s, record.path, content, message)
        if old is not None:
            kept = rejections.parse(old.decode("utf-8"), record.path)
            return Placed(kept, None, _unless_same(record.reason, kept.reason))
        return Placed(record, commit)


def _push_record(
    s: engine.Session, path: str, content: bytes | None, message: str
) -> tuple[str | None, bytes | None]:
    """Write (``content``) or remove (None) one record on main, compare-and-swap, retried when
    main moved: (the commit pushed, None), or (None, what is there) when writing finds the
    record already placed, or (None, None) when removing finds it gone."""
    parent = s.sha
    for attempt in range(engine.MAX_PUSH_ATTEMPTS):
        there = s.repo.read_file(parent, path)
        if (content is not None and there is not None) or (content is None and there is None):
            return None, there
        tree = s.repo.write_tree({path: content}, base=parent)
        commit = s.repo.commit(tree, [parent], message, author=s.repo.identity())
        moved = s.push_main(commit, parent, attempt)
        if moved is None:
            return commit, None
        parent = moved
    raise AssertionError("push_main gives up first")


def _unless_same(given: str, kept: str) -> str | None:
    """A record is never overwritten (the first reason is the one plans showed), so a second
    placing with another reason reports it as not recorded rather than dropping it silently."""
    return None if given == kept else given


@dataclass(frozen=True, slots=True)
class Held:
    hold: holds.Hold | None  # the hold placed or found (None: resume found none)
    commit: str | None  # None: nothing pushed (already held, or not held)
    not_recorded: str | None = None  # the reason given, when it differs from the one kept


def hold(repo_dir: Path, env: str, *, reason: str, now: datetime, who: str | None = None) -> Held:
    """Place ``releases/holds/ENV.yaml`` on main (no approval: a record, no render input)."""
    if not reason.strip():
        raise UsageError("--reason: say why the environment is held (it is shown in plans).")
    with engine.session(repo_dir) as s:
        s.project.env(env)  # a usage error naming the known environments
        record = holds.Hold(env, reason.strip(), now, s.user(who))
        message = (
            f"Hold {env}\n\n{record.reason}\n\nPromote-Kind: hold\nPromote-Record: {record.path}\n"
        )
        commit, old = _push_record(s, record.path, holds.dump(record).encode("utf-8"), message)
        if old is not None:
            kept = holds.parse(old.decode("utf-8"), record.path)
            return Held(kept, None, _unless_same(record.reason, kept.reason))
        return Held(record, commit)


def resume(repo_dir: Path, env: str, *, who: str | None = None) -> Held:
    """Remove ENV's hold from main. A hold pauses only auto-promotion, whose PRs still need the
    environment's approvals, so resuming lifts no safeguard and is pushed like the hold."""
    with engine.session(repo_dir) as s:
        s.project.env(env)
        path = holds.record_path(env)
        raw = s.repo.read_file(s.sha, path)
        found = holds.parse(raw.decode("utf-8"), path) if raw is not None else None
        message = (
            f"Resume {env}\n\nby {s.user(who)}\n\nPromote-Kind: resume\nPromote-Record: {path}\n"
        )
        commit, _ = _push_record(s, path, None, message)
        return Held(found, commit)


def unreject(
    repo_dir: Path, app: str, version: str, *, opener: str | None = None
) -> governance.Proposal[rejections.Rejection]:
    """Open the PR removing the rejection of ``app`` ``version`` (the strictest approvals)."""
    rejections.check_version(app, version)
    path = rejections.record_path(app, version)

    def make(project: config.Project) -> rejections.Rejection:
        file = project.root / path
        if not file.is_file():
            raise UsageError(f"{app} {version} is not rejected on main (no {path}).")
        record = rejections.parse(file.read_text(encoding="utf-8"), path)
        file.unlink()
        return record

    return governance.propose(
        repo_dir,
        kind=forge_base.PRKind.RECORDS,
        make=make,
        title=lambda r: f"Lift the rejection of {r.app} {r.version}",
        summary=lambda r: f"Lifts: {r.describe()}. Every environment may receive it again.",
        opener=opener,
        signed=True,
    )


def _check_app(s: engine.Session, app: str) -> None:
    known = {
        n for e in s.project.pipeline() for i in s.read_overlay(s.project.env(e))[1]
        for n in (i.app, i.name)
    }  # fmt: skip
    if app not in known:
        raise UsageError(
            f"{app!r}: no environment has that app (known: {', '.join(sorted(known))})."
        )
