"""The local forge's PR record: the ``pr.json`` document under ``refs/promote/prs/<N>``.

A record commit's tree holds ``pr.json`` (title, env, author, state, images, approvals,
comments, merge) and ``body.md`` (the plan in Markdown); its message repeats the state and the
environment as ``Promote-*`` trailers so a listing can pick records from one ``for-each-ref``.
This module owns that document's shape: a new record from a draft, a record as our
:class:`~promote.forge.base.PullRequest`, the merge entry, the trailers, and which verbs a
record's state still allows. Pure mapping: it never touches Git (``forge/local.py`` reads and
writes the refs) and never reads the clock (callers pass the time in).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from promote.errors import ForgeError
from promote.forge import base

PR_PREFIX = "refs/promote/prs/"
RECORD = "pr.json"
BODY = "body.md"

Record = dict[str, Any]


def new_record(
    draft: base.PullRequestDraft,
    number: int,
    *,
    created_at: datetime,
    opened: base.Opened | None = None,
) -> Record:
    """The first version of PR ``number``'s record: open, no approvals, no comments;
    ``opened`` is the opener's signature over it."""
    return {
        "version": 1,
        "number": number,
        "title": draft.title,
        "kind": str(draft.kind),
        "env": draft.env,
        "source": draft.source,
        "sourceRevision": draft.source_revision,
        "branch": draft.branch,
        "base": draft.base,
        "headSha": draft.head_sha,
        "author": draft.author,
        "authorIdentity": draft.author_identity,
        "createdAt": created_at.isoformat(),
        "state": str(base.PRState.OPEN),
        "images": list(draft.images),
        "lifts": list(draft.lifts),
        "approvals": [],
        "comments": [],
        "merged": None,
        "closed": None,
        "opened": None
        if opened is None
        else {"payload": opened.payload, "signature": opened.signature},
    }


def to_pull_request(record: Record, body: str, *, head_sha: str, url: str) -> base.PullRequest:
    """The record as a PullRequest; ``head_sha`` is the branch's live head (it may have moved)."""
    merged = record.get("merged")
    closed = record.get("closed") or {}
    opened = record.get("opened") or {}
    return base.PullRequest(
        number=int(record["number"]),
        title=record["title"],
        body=body,
        env=record["env"],
        source=record.get("source"),
        kind=base.PRKind(record.get("kind", "promotion")),
        branch=record["branch"],
        base=record["base"],
        head_sha=head_sha,
        author=record["author"],
        state=base.PRState(record["state"]),
        created_at=datetime.fromisoformat(record["createdAt"]),
        url=url,
        author_identity=record.get("authorIdentity", ""),
        source_revision=record.get("sourceRevision"),
        images=tuple(record.get("images", ())),
        lifts=tuple(record.get("lifts", ())),
        comments=tuple(
            base.Comment(c["author"], datetime.fromisoformat(c["at"]), c["text"])
            for c in record.get("comments", ())
        ),
        merge=merge_from(merged) if merged else None,
        closed_at=_ts(closed.get("at")),
        closed_by=closed.get("by"),
        opened=base.Opened(str(opened.get("payload", "")), str(opened.get("signature", "")))
        if opened
        else None,
    )


def _ts(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- trailers ----------------------------------------------------------------------------------


def trailer_lines(record: Record) -> str:
    """The record commit's trailers: state and environment, so `list` need not read records."""
    return f"\n\nPromote-State: {record['state']}\nPromote-Env: {record['env']}\n"


def trailers(message: str) -> dict[str, str]:
    """The ``Promote-*`` trailers of a record commit's message."""
    found = {}
    for line in message.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Promote-"):
            found[key] = value.strip()
    return found


# --- state and merge -------------------------------------------------------------------------


def require_open(record: Record, verb: str) -> None:
    """Raise ForgeError unless the PR is open (``verb`` names what was refused)."""
    if record["state"] == base.PRState.MERGED:
        merged = record.get("merged") or {}
        raise ForgeError(
            f"PR #{record['number']} is already merged ({merged.get('sha', '?')[:12]} at "
            f"{merged.get('at', '?')}); cannot {verb} it."
        )
    if record["state"] == base.PRState.CLOSED:
        raise ForgeError(f"PR #{record['number']} is closed; cannot {verb} it. Open a new one.")


def mark_merged(record: Record, result: base.MergeResult) -> base.MergeResult:
    """Record ``result`` as the PR's merge, unless a concurrent merge already did (that wins)."""
    if record["state"] == base.PRState.MERGED:
        return merge_from(record["merged"])
    record["state"] = str(base.PRState.MERGED)
    record["merged"] = merge_to(result)
    return result


def merge_to(result: base.MergeResult) -> dict[str, Any]:
    return {
        "sha": result.sha,
        "method": result.method,
        "at": result.at.isoformat(),
        "by": result.by,
        "headSha": result.head_sha,
        "approvals": list(result.approvals),
    }


def merge_from(data: dict[str, Any]) -> base.MergeResult:
    return base.MergeResult(
        sha=data["sha"],
        method=data["method"],
        at=datetime.fromisoformat(data["at"]),
        by=data["by"],
        head_sha=data["headSha"],
        approvals=tuple(data.get("approvals", ())),
    )
