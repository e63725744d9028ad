"""Approval policy: which approvals count, and whether a pull request may merge (pure).

Inputs are data: the target environment's ``approvals`` settings, the PR's author and current
head SHA, and approvals whose signatures someone else already checked (:class:`CheckedApproval`:
the engine verifies GnuPG signatures on the local forge; a server forge vouches for its
reviews). Output is a :class:`Verdict` that says what counts, what does not and why, and what is
missing. No I/O here, so the Gitea and GitHub forges reuse it unchanged.

The exact document an approver signs is :func:`promote.forge.base.approval_payload`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from promote.config import ApprovalsConfig
from promote.forge.base import Approval

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EPOCH = datetime.fromtimestamp(0, UTC)


def valid_name(name: str) -> bool:
    """Approver names are file names in keys/release-managers/: no paths, no spaces."""
    return bool(_NAME.match(name))


class SignatureStatus(enum.StrEnum):
    VALID = "valid"  # verified against keys/release-managers/<approver>.asc
    FORGE = "forge"  # a server forge's review: the forge authenticated the reviewer
    BAD = "bad"  # does not verify: the record was forged or corrupted
    WRONG_KEY = "wrong-key"  # verifies, but with a key that is not the approver's
    NO_KEY = "no-key"  # the approver has no public key in keys/release-managers/
    UNSIGNED = "unsigned"  # a local-forge record without a signature
    KEY_EXPIRED = "key-expired"  # made by the approver's key, which has expired since
    KEY_REVOKED = "key-revoked"  # made by the approver's key, which has been revoked


TAMPERED = (SignatureStatus.BAD, SignatureStatus.WRONG_KEY, SignatureStatus.UNSIGNED)


@dataclass(frozen=True, slots=True)
class CheckedApproval:
    approval: Approval
    signature: SignatureStatus
    detail: str = ""  # e.g. the signing key's fingerprint, or why it failed


@dataclass(frozen=True, slots=True)
class Verdict:
    pr: int
    env: str
    required: int
    approvers: tuple[str, ...]
    allow_self: bool
    author: str
    counted: tuple[str, ...]
    not_counted: tuple[tuple[str, str], ...]  # (approver, reason)
    refused: tuple[tuple[str, str], ...]  # tampered records: block the merge outright

    @property
    def ok(self) -> bool:
        return len(self.counted) >= self.required and not self.refused

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.counted))

    def candidates(self) -> list[str]:
        """Listed approvers who could still provide a counted approval."""
        return [
            a
            for a in self.approvers
            if a not in self.counted and (self.allow_self or a != self.author)
        ]

    def summary(self) -> str:
        who = ", ".join(self.approvers) or "nobody"
        rule = f"{self.required} approval(s) from {who}" if self.required else "no approvals"
        has = ", ".join(self.counted) or "none"
        text = f"PR #{self.pr} into {self.env} needs {rule}; counted: {len(self.counted)} ({has})."
        if self.missing:
            text += f" Missing: {self.missing} more from {' or '.join(self.candidates()) or '-'}."
        if self.refused:
            names = ", ".join(name for name, _ in self.refused)
            text += f" Refused: the approval record(s) of {names} failed verification."
        return text

    def problems(self) -> list[str]:
        return [f"{n}: REFUSED: {r}" for n, r in self.refused] + [
            f"{n}: not counted: {r}" for n, r in self.not_counted
        ]


def evaluate(
    policy: ApprovalsConfig,
    *,
    pr: int,
    env: str,
    author: str,
    head_sha: str,
    approvals: Sequence[CheckedApproval],
) -> Verdict:
    """Apply ``policy`` to the checked approvals of PR ``pr`` (into ``env``, head ``head_sha``)."""
    counted: list[str] = []
    not_counted: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for checked in sorted(approvals, key=lambda c: c.approval.at):
        a, status = checked.approval, checked.signature
        name = a.approver
        if status in TAMPERED:
            refused.append((name, _tamper_reason(status, checked.detail)))
        elif a.pr != pr or a.env != env:
            refused.append(
                (name, f"the signed approval is for PR #{a.pr} into {a.env!r}, not this PR")
            )
        elif name not in policy.approvers:
            approvers = ", ".join(policy.approvers) or "none"
            not_counted.append((name, f"not a listed approver of {env} (approvers: {approvers})"))
        elif status in (SignatureStatus.KEY_EXPIRED, SignatureStatus.KEY_REVOKED):
            not_counted.append((name, _key_state_reason(name, status, checked.detail)))
        elif status is SignatureStatus.NO_KEY:
            not_counted.append((name, checked.detail or "no public key to verify the signature"))
        elif name == author and not policy.allow_self_approval:
            not_counted.append((name, f"is the PR's author and {env} disallows self-approval"))
        elif a.head_sha != head_sha:
            not_counted.append(
                (name, f"stale: approved {a.head_sha[:12]} but the PR head is now {head_sha[:12]}")
            )
        elif name in counted:
            not_counted.append((name, "already counted (one approval per approver)"))
        else:
            counted.append(name)
    return Verdict(
        pr=pr,
        env=env,
        required=policy.required,
        approvers=tuple(policy.approvers),
        allow_self=policy.allow_self_approval,
        author=author,
        counted=tuple(counted),
        not_counted=tuple(not_counted),
        refused=tuple(refused),
    )


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
