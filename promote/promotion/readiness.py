"""What stands between an open pull request and its merge, now: the gates ``promote show``
prints and the dashboard's PR page shows.

Each part is the core function ``promote merge`` or the plan decides with, asked again for
the PR as it stands: the approval verdict (``review.evaluate``), ``policies/`` on the head
(``policies.check_head``), the merge windows of every affected environment
(``windows.state``, ``windows.check_merge``), versions rejected on main
(``rejections.gate``), holds on the affected environments (``Session.hold``: shown, never
blocking a merge), and the target's supply-chain gates (``supply.pinned_gate``,
``supply.verify_signatures``). Nothing is merged or written; the clock is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promote import config
from promote.forge import base as forge_base
from promote.policy.findings import Finding
from promote.promotion import (
    approvals,
    change,
    engine,
    holds,
    plan,
    policies,
    rejections,
    review,
    supply,
    windows,
)


@dataclass(frozen=True, slots=True)
class Readiness:
    verdict: approvals.Verdict
    policy: tuple[Finding, ...]  # policies/ (main's and the head's) on the head's renders
    window_states: tuple[tuple[str, windows.WindowState], ...]  # affected environments with windows
    merge_windows: windows.MergeCheck  # as a merge without break-glass would find them now
    rejected: plan.GateResult  # does the PR move a version rejected on main?
    holds: tuple[holds.Hold, ...]  # holds on affected environments (auto-promotion paused)
    supply: tuple[plan.GateResult, ...]  # the target's pinDigests / signedImages gates

    def blocking(self) -> list[str]:
        """What blocks the merge besides approvals (``verdict`` says what approvals miss)."""
        out = [f"policy: {f}" for f in self.policy if f.blocks]
        out += list(self.merge_windows.problems)
        out += [f"rejected versions: {self.rejected.reason}"] if self.rejected.blocks else []
        out += [f"gate {g.name}: {g.reason}" for g in self.supply if g.blocks]
        return out

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.blocking()


@dataclass(frozen=True, slots=True)
class Gates:
    """The part of :class:`Readiness` that does not depend on the clock (kept while main and
    the PR stay as they are); :meth:`at` adds the merge windows at a time."""

    verdict: approvals.Verdict
    policy: tuple[Finding, ...]
    rejected: plan.GateResult
    holds: tuple[holds.Hold, ...]
    supply: tuple[plan.GateResult, ...]
    configs: Mapping[str, config.EnvironmentConfig]  # the affected environments'

    def at(self, now: datetime) -> Readiness:
        states = tuple(
            (e, windows.state(c.windows, now)) for e, c in self.configs.items() if c.windows.any
        )
        return Readiness(
            verdict=self.verdict,
            policy=self.policy,
            window_states=states,
            merge_windows=windows.check_merge(self.configs, now),
            rejected=self.rejected,
            holds=self.holds,
            supply=self.supply,
        )


def gates(
    s: engine.Session, pr: forge_base.PullRequest, *, seen: change.Inspection | None = None
) -> Gates:
    """``pr``'s gates under main's policy, but the windows (``seen``: its inspection)."""
    verdict = review.evaluate(s, pr, seen)
    envs = verdict.scope or (pr.env,)
    changes = review.pr_changes(s, pr)
    target = s.project.env(pr.env).config.gates
    supplied = [supply.pinned_gate(changes)] if target.pin_digests and changes else []
    if target.signed_images:
        supplied += supply.verify_signatures(s.root, changes)
    return Gates(
        verdict=verdict,
        policy=tuple(policies.check_head(s, pr.head_sha)),
        rejected=rejections.gate(changes, s.rejections()),
        holds=tuple(h for e in envs if (h := s.hold(e)) is not None),
        supply=tuple(supplied),
        configs={e: s.project.env(e).config for e in envs},
    )


def assess(
    s: engine.Session,
    pr: forge_base.PullRequest,
    *,
    now: datetime,
    seen: change.Inspection | None = None,
) -> Readiness:
    """``pr``'s gates at ``now`` under main's policy (``seen``: its inspection, if made)."""
    return gates(s, pr, seen=seen).at(now)


def _gate(g: plan.GateResult) -> dict[str, Any]:
    return {"name": g.name, "status": str(g.status), "reason": g.reason}


def to_dict(r: Readiness) -> dict[str, Any]:
    """The ``gates`` document of ``promote show -o json`` and ``/api/prs/N``."""
    return {
        "mergeable": r.ok,
        "blocking": r.blocking(),
        "policy": [f.to_dict() for f in r.policy],
        "windows": [
            {
                "env": env,
                "open": w.open,
                "reason": w.reason,
                "nextOpening": w.next_opening.isoformat() if w.next_opening else None,
                "text": w.describe(),
            }
            for env, w in r.window_states
        ],
        "rejected": _gate(r.rejected),
        "holds": [
            {
                "env": h.env,
                "reason": h.reason,
                "at": h.at.isoformat(),
                "by": h.by,
                "text": h.describe(),
            }
            for h in r.holds
        ],
        "supply": [_gate(g) for g in r.supply],
    }
