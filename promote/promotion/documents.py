"""The JSON documents of pull requests, approvals, verdicts and a head's change.

One shape for every reader: ``promote prs``/``show``/``approve``/``merge -o json`` and the
dashboard's ``/api/prs`` print these. Built only from redacted data (a head's rendered diffs
have their Secret values redacted before any text is made): never a secret value. No I/O.
"""

from __future__ import annotations

from typing import Any

from promote.forge import base as forge_base
from promote.promotion import approvals, change, holds, rejections


def kind_label(pr: forge_base.PullRequest) -> str:
    """What a PR does, as its command says it: ``unreject api v1.8.0`` for a PR lifting
    release records (they restrict every environment), else ``promotion into prod``."""
    if not pr.lifts:
        return f"{pr.kind} into {pr.env}"
    return ", ".join(_lift_label(p) for p in pr.lifts) + " (every environment)"


def _lift_label(path: str) -> str:
    found = rejections.from_path(path)
    if found is not None:
        return f"unreject {found[0]} {found[1]}"
    if path.startswith(f"{holds.HOLDS_DIR}/"):
        return f"resume {path.removeprefix(f'{holds.HOLDS_DIR}/').removesuffix('.yaml')}"
    return f"lift {path}"


def pr_to_dict(pr: forge_base.PullRequest, *, body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": pr.number,
        "title": pr.title,
        "state": str(pr.state),
        "kind": str(pr.kind),
        "env": pr.env,
        "from": pr.source,
        "branch": pr.branch,
        "base": pr.base,
        "head": pr.head_sha,
        "author": pr.author,
        "createdAt": pr.created_at.isoformat(),
        "url": pr.url,
        "sourceRevision": pr.source_revision,
        "images": list(pr.images),
        "lifts": list(pr.lifts),
        "label": kind_label(pr),
        "merge": None
        if pr.merge is None
        else {
            "sha": pr.merge.sha,
            "method": pr.merge.method,
            "at": pr.merge.at.isoformat(),
            "by": pr.merge.by,
            "head": pr.merge.head_sha,
            "approvals": list(pr.merge.approvals),
        },
        "comments": [
            {"author": c.author, "at": c.at.isoformat(), "text": c.text} for c in pr.comments
        ],
    }
    if body:
        out["body"] = pr.body
    return out


def checked_to_dict(c: approvals.CheckedApproval) -> dict[str, Any]:
    return {
        "approver": c.approval.approver,
        "head": c.approval.head_sha,
        "at": c.approval.at.isoformat(),
        "comment": c.approval.comment,
        "signature": str(c.signature),
        "detail": c.detail,
    }


def verdict_to_dict(v: approvals.Verdict) -> dict[str, Any]:
    return {
        "mergeable": v.ok,
        "scope": list(v.scope),
        "environments": [
            {"env": e.env, "required": e.required, "counted": list(e.counted), "ok": e.ok}
            for e in v.envs
        ],
        "excluded": [{"person": n, "reason": r} for n, r in v.excluded],
        "required": v.required,
        "counted": list(v.counted),
        "missing": v.missing,
        "notCounted": [{"approver": n, "reason": r} for n, r in v.not_counted],
        "refused": [{"approver": n, "reason": r} for n, r in v.refused],
        "summary": v.summary(),
    }


def head_to_dict(seen: change.Inspection) -> dict[str, Any]:
    """What the head actually changes (``show``/``approve -o json``): never a secret value."""
    return {
        "base": seen.base_sha,
        "head": seen.head_sha,
        "scope": list(seen.scope.envs),
        "scopeReasons": dict(seen.scope.reasons),
        "changedFiles": list(seen.changed),
        "beyondPlan": list(seen.beyond_plan),
        "differsFromPlan": seen.differs_from_plan,
        "opener": seen.opener,
        "openerProblem": seen.opener_problem,
        "commits": [
            {
                "sha": c.sha,
                "subject": c.subject,
                "own": c.own,
                "signer": c.signer,
                "detail": c.detail,
            }
            for c in seen.commits
        ],
        "rendered": [
            {
                "env": d.env,
                "error": d.error,
                "diff": [
                    {"object": o.ref, "action": str(o.action), "text": o.text} for o in d.diffs
                ],
            }
            for d in seen.diffs
        ],
    }
