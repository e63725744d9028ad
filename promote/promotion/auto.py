"""Auto-promotion (DESIGN.md §6, issue 16 item 5): move versions verified upstream onward.

For each environment with ``autoPromote: true``, one pass of ``promote auto``:

- stops at a hold (``releases/holds/ENV.yaml``: ``promote hold``, or a manual rollback);
- promotes only what the upstream's agent verified after deploy: every image the plan would
  change must be, in the upstream's status, ``Verified`` at exactly that version (what main's
  upstream overlay says is not enough: it may not have been deployed, or may have failed);
- plans as ``promote to`` does, so every gate applies and a rejected version is refused;
- opens one PR per version (an open PR already proposing those images is reused, and one a
  person closed is never opened again) signed by the registered key of whoever runs it, and
  closes its older auto-promotion PRs into the environment (merged later, one would move it
  back);
- merges it at once when the environment requires no approvals (windows and policies still
  apply: ``review.merge``), otherwise leaves it for the release managers.

It never approves. The upstream's status comes from a ``plan.StatusReader`` the caller gives
(the agents' status ConfigMaps, or a status file); the clock is a parameter.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from promote.errors import PolicyBlocked, PromoteError, UsageError
from promote.forge import base as forge_base
from promote.promotion import engine, plan, propose, releases, review


class Outcome(enum.StrEnum):
    UP_TO_DATE = "up-to-date"  # nothing verified upstream differs from the environment
    HELD = "held"  # a hold pauses auto-promotion into it
    WAITING = "waiting"  # the upstream has not verified what main would promote
    REFUSED = "refused"  # a gate blocks the plan (a rejected version, parity, policy...)
    CLOSED = "closed"  # a person closed the PR for these images: not opened again
    OPENED = "opened"  # a PR awaits approvals (opened now, or already open)
    MERGED = "merged"  # no approvals required: merged
    FAILED = "failed"  # an error (Git, forge, a key): the next pass tries again


TITLE = "Auto-promote"  # the title's start marks the PRs this loop opened


@dataclass(frozen=True, slots=True)
class Result:
    env: str
    outcome: Outcome
    message: str
    plan: plan.Plan | None = None
    pull_request: forge_base.PullRequest | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def blocked(self) -> bool:
        return self.outcome is Outcome.REFUSED


def auto_targets(repo_dir: Path, only: Sequence[str] = ()) -> list[str]:
    """The environments with ``autoPromote: true``, in pipeline order (``only``: a subset)."""
    with engine.session(repo_dir, offline=True) as s:
        for name in only:
            # an unknown name is a usage error naming the known environments
            if not s.project.env(name).config.auto_promote:
                raise UsageError(
                    f"--env {name}: environments/{name}.yaml does not set autoPromote: true, "
                    "so `promote auto` never promotes into it.",
                    hint=f"Set `autoPromote: true` in environments/{name}.yaml, or use "
                    f"`promote to {name}` to promote by hand.",
                )
        return [
            e
            for e in s.project.pipeline()
            if s.project.env(e).config.auto_promote and (not only or e in only)
        ]


def promote_all(
    repo_dir: Path,
    envs: Sequence[str],
    *,
    status_reader: plan.StatusReader,
    now: datetime,
    opener: str | None = None,
) -> list[Result]:
    """One pass over ``envs``; one environment's error is its result, not the others' end."""
    out = []
    for env in envs:
        try:
            found = promote_once(repo_dir, env, status_reader=status_reader, now=now, opener=opener)
        except PromoteError as exc:
            found = Result(env, Outcome.FAILED, str(exc), problems=(str(exc),))
        out.append(found)
    return out


def promote_once(
    repo_dir: Path,
    env: str,
    *,
    status_reader: plan.StatusReader,
    now: datetime,
    opener: str | None = None,
) -> Result:
    """One look at ``env`` (its own session: a merge into one environment moves main)."""
    with engine.session(repo_dir) as s:
        cfg = s.project.env(env).config
        if not cfg.auto_promote:
            return Result(env, Outcome.UP_TO_DATE, f"{env} does not set autoPromote: true")
        held = s.hold(env)
        if held is not None:
            return Result(env, Outcome.HELD, f"{held.describe()} (`promote resume {env}`)")
        p = propose.plan_promotion(s, env, status_reader=status_reader, now=now)
        if p.empty:
            return Result(env, Outcome.UP_TO_DATE, f"{env} already runs what {p.source} has")
        upstream = str(p.source)
        missing = _unverified(p, status_reader(upstream), upstream)
        rejected = any(g.blocks and g.name == "rejected versions" for g in p.gates)
        if missing and not rejected:  # a rejection says more than "not verified (yet)"
            return Result(env, Outcome.WAITING, "; ".join(missing), p)
        if p.blocked:
            why = f"cannot promote into {env}: " + "; ".join(p.problems())
            return Result(env, Outcome.REFUSED, why, p, problems=tuple(p.problems()))
        closed = propose.same_images(s, p, forge_base.PRState.CLOSED)
        if closed is not None:
            why = (
                f"PR #{closed.number} proposed these images and was closed without merging; "
                f"not opened again (promote them by hand with `promote to {env}`)"
            )
            return Result(env, Outcome.CLOSED, why, p, closed)
        pr = propose.open_duplicate(s, p)
        if pr is None:
            pr = propose.open_pull_request(
                s, p, title=f"{TITLE} {upstream} -> {env}", opener=opener
            )
            _close_superseded(s, env, pr, by=s.user(opener))
        if cfg.approvals.required:
            why = f"PR #{pr.number} waits for {cfg.approvals.required} approval(s)"
            return Result(env, Outcome.OPENED, why, p, pr)
        try:
            pr, merged, _ = review.merge(s, pr.number, by=opener, now=now)
        except PolicyBlocked as exc:  # a closed window, a policy on the head: it stays open
            return Result(env, Outcome.OPENED, f"PR #{pr.number} not merged: {exc}", p, pr)
        return Result(env, Outcome.MERGED, f"PR #{pr.number} merged ({merged.sha[:12]})", p, pr)


def _unverified(p: plan.Plan, upstream: plan.EnvStatus | None, name: str) -> list[str]:
    """Each change whose version the upstream's agent has not verified."""
    verified = (upstream.verified if upstream else None) or {}
    out = []
    for c in p.changes:
        got = verified.get(c.new.app) or verified.get(c.name)
        if got != c.new_version:
            now = f"it verified {got}" if got else "it has verified no version of it"
            out.append(f"waiting for {name}'s agent to verify {c.name} {c.new_version} ({now})")
    return out


def _close_superseded(
    s: engine.Session, env: str, newer: forge_base.PullRequest, *, by: str
) -> None:
    """Close the older auto-promotion PRs into ``env``: merged after the newer one, an older
    PR would move the environment back."""
    for pr in s.forge.list(env=env, state=forge_base.PRState.OPEN):
        mine = pr.title.startswith(TITLE) and pr.author == newer.author  # not a person's
        if pr.number != newer.number and mine:
            s.forge.comment(pr.number, author=by, text=f"Superseded by #{newer.number}.")
            s.forge.close(pr.number, by=by)


def hold_after_rollback(
    repo_dir: Path, env: str, pr: forge_base.PullRequest, *, now: datetime, who: str | None
) -> releases.Held | None:
    """A manual rollback pauses auto-promotion into ``env`` (Kargo's hold semantics), or it
    would promote the rolled-back version again; None when ``env`` does not auto-promote."""
    with engine.session(repo_dir, offline=True) as s:
        if not s.project.env(env).config.auto_promote:
            return None
    reason = f"manual rollback (PR #{pr.number}); `promote resume {env}` re-enables auto-promotion"
    return releases.hold(repo_dir, env, reason=reason, now=now, who=who)
