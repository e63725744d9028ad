"""The forge protocol: the few pull-request verbs the promotion engine needs, and their values.

A forge keeps pull requests: the local forge (``forge/local.py``) in the Git remote itself,
Gitea and GitHub on their servers. The engine receives a :class:`Forge` as an argument and
never knows which one it has. This module holds only the protocol, frozen values and the
signed documents (:func:`approval_payload`: it binds the PR number, the environments the
change affects, the head SHA, the approver and the time, so a signature cannot be replayed
elsewhere; :func:`opened_payload`, the opener's over the PR it opened); no
forge imports another, and policy (who may approve, what counts) lives in
``promotion/approvals.py``, not here: a forge stores and returns approvals, it does not judge.
"""

from __future__ import annotations

import builtins
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


class PRState(enum.StrEnum):
    OPEN = "open"
    MERGED = "merged"
    CLOSED = "closed"


class PRKind(enum.StrEnum):
    PROMOTION = "promotion"  # images from an upstream environment
    ROLLBACK = "rollback"  # images from an earlier state of the same environment
    SET_IMAGE = "set-image"  # images named on the command line (CI)
    SECRETS = "secrets"  # `secrets set|rotate`: an environment's encrypted Secrets
    KEYS = "keys"  # `keys add|remove|sync`: recipients and .sops.yaml (governance)
    RECORDS = "records"  # `unreject`: lifting a record under releases/ (every environment)


@dataclass(frozen=True, slots=True)
class Comment:
    author: str
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class Approval:
    """One approval (a review on a server forge), bound to the head commit it approved.

    On the local forge ``payload`` is the exact JSON document the approver signed and
    ``signature`` its ASCII-armoured detached GnuPG signature; the other fields are read from
    the payload. A server forge leaves both None: the forge vouches for the reviewer.
    """

    approver: str
    pr: int
    env: str
    head_sha: str
    at: datetime
    comment: str = ""
    payload: str | None = None
    signature: str | None = None
    scope: tuple[str, ...] = ()  # the environments the approver was shown (signed), sorted
    break_glass: str | None = None  # signed: consent to merge outside windows, for this reason


@dataclass(frozen=True, slots=True)
class Opened:
    """The opener's signature over the PR they opened (:func:`opened_payload`; local forge).

    Who opened a PR is the registered person whose key verifies it, never the record's
    ``author`` field (anyone with push access can edit that)."""

    payload: str
    signature: str


@dataclass(frozen=True, slots=True)
class MergeResult:
    sha: str  # main's new tip
    method: str  # "fast-forward" | "merge-commit" | "already-in-main"
    at: datetime
    by: str
    head_sha: str  # the PR head that was merged (what the approvals are bound to)
    approvals: tuple[str, ...] = ()  # approvers counted by the policy


@dataclass(frozen=True, slots=True)
class PullRequestDraft:
    """What the engine asks a forge to open (the branch is already pushed)."""

    title: str
    body: str  # Markdown; never holds a secret value (redacted plan)
    env: str  # target environment
    source: str | None  # source environment (None for set-image)
    kind: PRKind
    branch: str  # e.g. promote/staging/1a2b3c4d
    base: str  # e.g. main
    head_sha: str
    author: str  # name compared with approvers for self-approval
    author_identity: str = ""  # "Name <email>" from git config
    source_revision: str | None = None
    images: tuple[str, ...] = ()  # "name=version" after the change
    lifts: tuple[str, ...] = ()  # release records the change removes (a records PR's plan)
    # The local forge calls it with the number it claims: the opener's signature over the PR.
    sign: Callable[[int], Opened] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class PullRequest:
    number: int
    title: str
    body: str
    env: str
    source: str | None
    kind: PRKind
    branch: str
    base: str
    head_sha: str  # the branch's current head (it moves when someone pushes to the PR)
    author: str
    state: PRState
    created_at: datetime
    url: str  # a web URL on a server forge; "<remote>#refs/promote/prs/N" on the local forge
    author_identity: str = ""
    source_revision: str | None = None
    images: tuple[str, ...] = ()
    lifts: tuple[str, ...] = ()  # release records its plan removes (``unreject``)
    comments: tuple[Comment, ...] = field(default_factory=tuple)
    merge: MergeResult | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    opened: Opened | None = None  # the opener's signature (local forge)


Resolver = Callable[[str, Sequence[str]], Mapping[str, bytes] | None]
"""Given main's SHA and the paths Git's three-way merge could not merge, the resolved contents
of those paths (the engine re-applies the PR's image edits to main's overlay), or None."""


class Forge(Protocol):
    """Pull requests on one forge. Every verb raises ForgeError/NotFound/GitError subclasses."""

    kind: str
    # True: ``open`` pushes ``draft.branch`` itself, in one atomic push with the PR (the local
    # forge). False: the engine pushes the branch before ``open`` (a server needs it first).
    pushes_branch: bool

    def open(self, draft: PullRequestDraft) -> PullRequest: ...

    def get(self, number: int) -> PullRequest: ...

    def list(
        self, *, env: str | None = None, state: PRState | None = None
    ) -> builtins.list[PullRequest]: ...

    def approve(self, number: int, approval: Approval) -> Approval: ...

    def approvals(self, number: int) -> builtins.list[Approval]: ...

    def merge(
        self,
        number: int,
        *,
        head_sha: str,
        by: str,
        approvals: Sequence[str],
        message: str,
        resolve: Resolver | None = None,
    ) -> MergeResult: ...

    def close(self, number: int, *, by: str) -> PullRequest: ...

    def comment(self, number: int, *, author: str, text: str) -> PullRequest: ...


# --- the signed approval document -------------------------------------------------------------

PAYLOAD_TYPE = "promote.approval/v1"
_EPOCH = datetime.fromtimestamp(0, UTC)


OPENED_TYPE = "promote.opened/v1"


def _canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def approval_payload(
    *,
    pr: int,
    env: str,
    head_sha: str,
    approver: str,
    at: datetime,
    comment: str = "",
    scope: Sequence[str] = (),
    break_glass: str | None = None,
) -> str:
    """The canonical JSON text an approver signs (keys sorted, no spaces).

    ``break_glass``: the reason the approver consents to a merge outside the merge windows
    (absent from ordinary approvals, so their documents are unchanged).

    ``scope`` is the environments the change affects as the approver was shown them; an
    approval counts only for a PR whose computed scope it covers. (Documents signed before
    scopes existed carry none: they cover ``env`` alone.)
    """
    doc = {
        "type": PAYLOAD_TYPE,
        "pr": pr,
        "env": env,
        "head": head_sha,
        "approver": approver,
        "at": at.astimezone(UTC).isoformat(timespec="seconds"),
        "comment": comment,
    }
    if scope:
        doc["scope"] = sorted(set(scope))
    if break_glass:
        doc["breakGlass"] = break_glass
    return _canonical(doc)


def opened_payload(
    *,
    pr: int,
    env: str,
    scope: Sequence[str],
    head_sha: str,
    base_sha: str,
    opener: str,
    at: datetime,
) -> str:
    """The canonical JSON text the opener of a PR signs."""
    return _canonical(
        {
            "type": OPENED_TYPE,
            "pr": pr,
            "env": env,
            "scope": sorted(set(scope)),
            "head": head_sha,
            "base": base_sha,
            "opener": opener,
            "at": at.astimezone(UTC).isoformat(timespec="seconds"),
        }
    )


def parse_opened(payload: str) -> dict[str, Any] | None:
    """The fields of an opened document, or None when it is not one."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != OPENED_TYPE:
        return None
    if not isinstance(doc.get("pr"), int) or not isinstance(doc.get("opener"), str):
        return None
    return doc


def approval_from_record(record: Mapping[str, Any]) -> Approval:
    """An Approval read from a stored ``{payload, signature}`` record.

    The fields come from the signed payload, never from unsigned fields beside it. A payload
    that does not parse yields an Approval with empty binding (pr 0), which the signature
    check then reports as corrupted.
    """
    payload = str(record.get("payload", ""))
    signature = record.get("signature")
    sig = str(signature) if signature else None
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict) or doc.get("type") != PAYLOAD_TYPE:
            raise ValueError("not an approval payload")
        return Approval(
            approver=str(doc["approver"]),
            pr=int(doc["pr"]),
            env=str(doc["env"]),
            head_sha=str(doc["head"]),
            at=datetime.fromisoformat(str(doc["at"])),
            comment=str(doc.get("comment", "")),
            payload=payload,
            signature=sig,
            scope=tuple(str(e) for e in doc.get("scope") or (str(doc["env"]),)),
            break_glass=str(doc["breakGlass"]) if doc.get("breakGlass") else None,
        )
    except (ValueError, KeyError, TypeError):
        return Approval(
            approver=str(record.get("approver", "?")),
            pr=0,
            env="",
            head_sha="",
            at=_EPOCH,
            payload=payload,
            signature=sig,
        )
