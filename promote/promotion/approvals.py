"""Approval policy: which approvals count, and whether a pull request may merge (pure).

Inputs are data: the ``approvals`` settings of EVERY environment the change affects (its scope,
computed from what the head changes: ``scope.py``), the PR's current head SHA, the people who
may not approve it (who opened it, who wrote or signed a commit of it: ``excluded``), problems
found before judging (unverified commits, broken key files: ``refused``), and approvals whose
signatures someone else already checked (:class:`CheckedApproval`: the engine verifies GnuPG
signatures on the local forge; a server forge vouches for its reviews). Output is a
:class:`Verdict`: what counts for each affected environment, what does not and why, and what is
missing. A PR may merge only when every affected environment's policy holds, so the strictest
decides; a change that affects no environment needs nothing. No I/O here.

The exact document an approver signs is :func:`promote.forge.base.approval_payload`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from promote.config import ApprovalsConfig
from promote.forge.base import Approval

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def valid_name(name: str) -> bool:
    """Person names are file names in keys/release-managers/ or keys/developers/."""
    return bool(_NAME.match(name))


class SignatureStatus(enum.StrEnum):
    VALID = "valid"  # verified against keys/release-managers/<approver>.asc
    FORGE = "forge"  # a server forge's review: the forge authenticated the reviewer
    BAD = "bad"  # does not verify: the record was forged or corrupted
    WRONG_KEY = "wrong-key"  # verifies, but with a key that is not the approver's
    NO_KEY = "no-key"  # the approver has no public key in keys/release-managers/
    BAD_KEY = "bad-key"  # the approver's key file is refused (shared, several keys, private)
    UNSIGNED = "unsigned"  # a local-forge record without a signature
    KEY_EXPIRED = "key-expired"  # made by the approver's key, which has expired since
    KEY_REVOKED = "key-revoked"  # made by the approver's key, which has been revoked


TAMPERED = (SignatureStatus.BAD, SignatureStatus.WRONG_KEY, SignatureStatus.UNSIGNED)
UNUSABLE_KEY = (SignatureStatus.NO_KEY, SignatureStatus.BAD_KEY)


@dataclass(frozen=True, slots=True)
class CheckedApproval:
    approval: Approval
    signature: SignatureStatus
    detail: str = ""  # e.g. the signing key's fingerprint, or why it failed


@dataclass(frozen=True, slots=True)
class EnvVerdict:
    """One affected environment's policy applied to the PR's approvals."""

    env: str
    required: int
    approvers: tuple[str, ...]
    allow_self: bool
    counted: tuple[str, ...]
    not_counted: tuple[tuple[str, str], ...]  # (approver, reason)

    @property
    def ok(self) -> bool:
        return len(self.counted) >= self.required

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.counted))

    def rule(self) -> str:
        who = ", ".join(self.approvers) or "nobody"
        return f"{self.required} approval(s) from {who}" if self.required else "no approvals"


@dataclass(frozen=True, slots=True)
class Verdict:
    pr: int
    scope: tuple[str, ...]  # the environments the change affects, pipeline order
    envs: tuple[EnvVerdict, ...]  # one per environment of the scope
    refused: tuple[tuple[str, str], ...] = ()  # (who or what, why): blocks the merge outright
    excluded: tuple[tuple[str, str], ...] = ()  # (person, why they may not approve)
    declared_env: str = ""  # what the PR record says (shown, never trusted)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.envs) and not self.refused

    @property
    def strictest(self) -> EnvVerdict | None:
        """The affected environment needing the most approvals (ties: later in the pipeline)."""
        best: EnvVerdict | None = None
        for e in self.envs:
            if best is None or e.required >= best.required:
                best = e
        return best

    @property
    def env(self) -> str:
        found = self.strictest
        return found.env if found else self.declared_env

    @property
    def required(self) -> int:
        return max((e.required for e in self.envs), default=0)

    @property
    def counted(self) -> tuple[str, ...]:
        """Approvers counted under at least one affected environment's policy."""
        return tuple(dict.fromkeys(n for e in self.envs for n in e.counted))

    @property
    def not_counted(self) -> tuple[tuple[str, str], ...]:
        return tuple(dict.fromkeys(item for e in self.envs for item in e.not_counted))

    @property
    def missing(self) -> int:
        return max((e.missing for e in self.envs), default=0)

    def candidates(self, env: EnvVerdict) -> list[str]:
        """Listed approvers of ``env`` who could still provide a counted approval."""
        barred = {n for n, _ in self.excluded} if not env.allow_self else set()
        return [a for a in env.approvers if a not in env.counted and a not in barred]

    def summary(self) -> str:
        if not self.envs:
            return f"PR #{self.pr} changes no environment; no approvals needed."
        parts = []
        for e in self.envs:
            if e.required == 0 and len(self.envs) > 1:
                continue
            has = ", ".join(e.counted) or "none"
            text = f"{e.env} needs {e.rule()}; counted: {len(e.counted)} ({has})."
            if e.missing:
                text += self._missing(e)
            parts.append(text)
        if len(self.envs) == 1:
            head = f"PR #{self.pr} into "
        else:
            head = f"PR #{self.pr} changes {', '.join(self.scope)}: "
        text = head + (" ".join(parts) or "no approvals needed.")
        if self.declared_env and self.scope and self.declared_env not in self.scope:
            text += f" (Its record says {self.declared_env}; what it changes decides.)"
        if self.refused:
            names = ", ".join(name for name, _ in self.refused)
            text += f" Refused: {names} failed verification."
        return text

    def _missing(self, e: EnvVerdict) -> str:
        """Who could still approve, or why nobody can: an excluded approver (the opener, a
        commit's signer) leaves fewer eligible approvers than ``e`` needs (issue 21)."""
        candidates = self.candidates(e)
        if len(candidates) >= e.missing:
            return f" Missing: {e.missing} more from {' or '.join(candidates)}."
        barred = "; ".join(f"{n} {why}" for n, why in self.excluded if n in e.approvers)
        return (
            f" This can no longer be met: {e.missing} more needed but only {len(candidates)} "
            f"listed approver(s) may still give one ({', '.join(candidates) or 'none'}): "
            f"{barred}, and {e.env} disallows self-approval. Close this PR and open it again "
            f"by someone who is not an approver of {e.env}, without commits by its approvers."
        )

    def problems(self) -> list[str]:
        return [f"{n}: REFUSED: {r}" for n, r in self.refused] + [
            f"{n}: not counted: {r}" for n, r in self.not_counted
        ]


def evaluate(
    policies: Mapping[str, ApprovalsConfig],
    *,
    pr: int,
    head_sha: str,
    approvals: Sequence[CheckedApproval],
    excluded: Mapping[str, str] | None = None,
    refused: Sequence[tuple[str, str]] = (),
    declared_env: str = "",
) -> Verdict:
    """Apply the policy of every affected environment (``policies``, pipeline order: the
    scope) to the checked approvals of PR ``pr`` at head ``head_sha``.

    ``excluded`` maps a person to why they may not approve (opened the PR, wrote or signed a
    commit of it); they count only where ``allowSelfApproval`` is set. ``refused`` are problems
    found before (an unverified commit, a broken key file): they block the merge.
    """
    scope = tuple(policies)
    barred = dict(excluded or {})
    blocked = list(refused)
    usable: list[CheckedApproval] = []
    for checked in sorted(approvals, key=lambda c: c.approval.at):
        a, status = checked.approval, checked.signature
        if status in TAMPERED:
            blocked.append((a.approver, _tamper_reason(status, checked.detail)))
        elif a.pr != pr:
            blocked.append((a.approver, f"the signed approval is for PR #{a.pr}, not this PR"))
        else:
            usable.append(checked)
    envs = tuple(
        _evaluate_env(env, policy, usable, head_sha=head_sha, scope=scope, excluded=barred)
        for env, policy in policies.items()
    )
    return Verdict(
        pr=pr,
        scope=scope,
        envs=envs,
        refused=tuple(blocked),
        excluded=tuple(barred.items()),
        declared_env=declared_env,
    )


def _evaluate_env(
    env: str,
    policy: ApprovalsConfig,
    approvals: Sequence[CheckedApproval],
    *,
    head_sha: str,
    scope: tuple[str, ...],
    excluded: Mapping[str, str],
) -> EnvVerdict:
    counted: list[str] = []
    not_counted: list[tuple[str, str]] = []
    for checked in approvals:
        name = checked.approval.approver
        reason = _why_not(env, policy, checked, head_sha=head_sha, scope=scope, excluded=excluded)
        if reason is None and name in counted:
            reason = "already counted (one approval per approver)"
        if reason is None:
            counted.append(name)
        else:
            not_counted.append((name, reason))
    return EnvVerdict(
        env=env,
        required=policy.required,
        approvers=tuple(policy.approvers),
        allow_self=policy.allow_self_approval,
        counted=tuple(counted),
        not_counted=tuple(not_counted),
    )


def _why_not(
    env: str,
    policy: ApprovalsConfig,
    checked: CheckedApproval,
    *,
    head_sha: str,
    scope: tuple[str, ...],
    excluded: Mapping[str, str],
) -> str | None:
    """Why ``checked`` does not count for ``env`` (None: it counts)."""
    a, status = checked.approval, checked.signature
    if a.approver not in policy.approvers:
        approvers = ", ".join(policy.approvers) or "none"
        return f"not a listed approver of {env} (approvers: {approvers})"
    if status in UNUSABLE_KEY:
        return checked.detail or "no public key to verify the signature"
    if status in (SignatureStatus.KEY_EXPIRED, SignatureStatus.KEY_REVOKED):
        return _key_state_reason(a.approver, status, checked.detail)
    if a.approver in excluded and not policy.allow_self_approval:
        return f"{excluded[a.approver]}, and {env} disallows self-approval"
    if a.head_sha != head_sha:
        return f"stale: approved {a.head_sha[:12]} but the PR head is now {head_sha[:12]}"
    uncovered = [e for e in scope if e not in a.scope]
    if status is not SignatureStatus.FORGE and uncovered:
        signed = ", ".join(a.scope) or "nothing"
        return (
            f"signed for {signed}, but the change affects {', '.join(scope)} "
            f"({', '.join(uncovered)} not approved); approve again"
        )
    return None


def unmeetable(policies: Mapping[str, ApprovalsConfig], excluded: Iterable[str]) -> list[str]:
    """Each policy of ``policies`` that ``excluded`` people (e.g. whoever would open the PR)
    leave with fewer eligible approvers than it requires: no approvals could ever merge it."""
    barred = set(excluded)
    out = []
    for env, policy in policies.items():
        if policy.allow_self_approval or not policy.required:
            continue
        eligible = [a for a in policy.approvers if a not in barred]
        if len(eligible) < policy.required:
            others = f" ({', '.join(eligible)})" if eligible else ""
            out.append(
                f"{env} needs {policy.required} approval(s) from {', '.join(policy.approvers)} "
                f"and disallows self-approval; without {', '.join(sorted(barred))} only "
                f"{len(eligible)} other approver{'' if len(eligible) == 1 else 's'}{others} "
                "could approve"
            )
    return out


def exclusions(opener: str | None, writers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Who may not approve: the opener, then each commit writer (first reason kept)."""
    out = {opener: "opened the PR"} if opener else {}
    for name, why in (writers or {}).items():
        out.setdefault(name, why)
    return out


def _key_state_reason(name: str, status: SignatureStatus, detail: str) -> str:
    state = "has expired" if status is SignatureStatus.KEY_EXPIRED else "was revoked"
    return (
        f"{name}'s key {state}{f' ({detail})' if detail else ''}; the signature is genuine but "
        f"no longer counts: {name} registers a current key in keys/release-managers/{name}.asc "
        "(through a PR) and approves again"
    )


def _tamper_reason(status: SignatureStatus, detail: str) -> str:
    reason = {
        SignatureStatus.BAD: "the signature does not verify (forged or corrupted record)",
        SignatureStatus.WRONG_KEY: "signed with a key that is not the approver's",
        SignatureStatus.UNSIGNED: "the record carries no signature",
    }[status]
    return f"{reason}{f' ({detail})' if detail else ''}"
