"""How a promotion looks on a server forge (Gitea, GitHub): pure mapping, no I/O.

A promotion PR is an ordinary pull request from ``promote/<env>/<id>`` into main, labelled
``promote`` and ``env:<env>``, whose body is the plan followed by one HTML comment holding
promote's metadata (kind, source, images, the requesting author: shown, never trusted) as
JSON. Reviews in state APPROVED are the approvals, each bound to the commit it reviewed
(``commit_id``).

Trust: the environment comes from the branch name (a PR's head branch cannot be changed), not
from the editable body; the PR author is the forge user who opened the PR, never a name in the
body (anyone with write access edits it). Both forges refuse a review approving one's own PR,
and promote's policy does not count one either. Gitea and GitHub name their JSON fields alike
for everything used here; ``merged``/``merged_by`` are missing from GitHub's list endpoint.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promote.errors import ConfigError, ForgeError
from promote.forge.base import Approval, Comment, MergeResult, PRKind, PRState, PullRequest

log = logging.getLogger(__name__)

LABEL = "promote"
LABEL_COLOR = "0e8a16"
_META = re.compile(r"\n*<!-- promote:meta (\{.*?\}) -->\s*$", re.DOTALL)
_BRANCH = re.compile(r"^promote/([A-Za-z0-9][A-Za-z0-9._-]*)/[A-Za-z0-9._-]+$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_EPOCH = datetime.fromtimestamp(0, UTC)


# --- the PR body and its metadata ------------------------------------------------------------


def encode_body(body: str, meta: dict[str, Any]) -> str:
    """The plan, then the metadata as JSON in an HTML comment (hidden when rendered)."""
    doc = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    doc = doc.replace("<", "\\u003c").replace(">", "\\u003e")  # cannot close the comment
    return f"{body.rstrip()}\n\n<!-- promote:meta {doc} -->\n"


def split_body(text: str) -> tuple[str, dict[str, Any]]:
    """The plan without the metadata comment, and the metadata ({} when absent or broken)."""
    m = _META.search(text or "")
    if not m:
        return text or "", {}
    try:
        meta = json.loads(m.group(1))
    except ValueError:
        meta = {}
    return text[: m.start()].rstrip() + "\n", meta if isinstance(meta, dict) else {}


def env_from_branch(branch: str) -> str | None:
    m = _BRANCH.match(branch)
    return m.group(1) if m else None


def env_label(env: str) -> str:
    return f"env:{env}"


# GitHub's schemas allow ``user: null`` on comments, reviews and pull requests (a deleted
# account); GitHub shows such an author as "ghost" (issue 14: a null user crashed show/merge).
GHOST = "ghost"


def login_of(item: Mapping[str, Any], key: str = "user", *, missing: str = GHOST) -> str:
    """The ``login`` of ``item[key]`` (a user object that may be null or lack its login)."""
    user = item.get(key)
    login = user.get("login") if isinstance(user, Mapping) else None
    return str(login) if login else missing


def parse_time(value: Any) -> datetime:
    if not value:
        return _EPOCH
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return _EPOCH


def valid_repo(repo: str | None, *, forge: str) -> str:
    if not repo or not _REPO.match(repo):
        raise ConfigError(
            f"promote.yaml: forge.repo is {repo!r}; a {forge} forge needs OWNER/NAME of the "
            "GitOps repository (e.g. `repo: platform/gitops`)."
        )
    return repo


# --- reviews ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Review:
    reviewer: str
    verdict: str  # "approved" | "changes" | "other" | "dismissed"
    commit_id: str
    at: datetime
    body: str


def approvals_from_reviews(reviews: Iterable[Review], *, pr: int, env: str) -> list[Approval]:
    """APPROVED reviews, minus dismissed ones and those a later change request withdrew."""
    reviews = sorted(reviews, key=lambda r: r.at)
    out: list[Approval] = []
    for i, r in enumerate(reviews):
        if r.verdict != "approved":
            continue
        withdrawn = any(
            later.reviewer == r.reviewer and later.verdict == "changes"
            for later in reviews[i + 1 :]
        )
        if not withdrawn:
            out.append(Approval(r.reviewer, pr, env, r.commit_id, r.at, r.body))
    return out


# --- pull requests ---------------------------------------------------------------------------


def pull_request(
    data: dict[str, Any],
    *,
    main: str,
    comments: Sequence[Comment] = (),
    trailers: Callable[[str], tuple[tuple[str, ...], str]] = lambda sha: ((), ""),
) -> PullRequest | None:
    """A PR's JSON as our PullRequest; None when it is not a promotion (branch, base).

    ``trailers`` gives (counted approvers, merger) for a merge commit SHA, read from Git.
    """
    head, base = data.get("head") or {}, data.get("base") or {}
    branch = str(head.get("ref") or "")
    env = env_from_branch(branch)
    if env is None or base.get("ref") != main:
        return None
    body, meta = split_body(data.get("body") or "")
    if meta.get("env") not in (None, env):
        log.warning("PR #%s: metadata env %r differs from the branch's", data["number"], env)
        meta = {}
    author, identity = _author(data, meta)
    head_sha = str(head.get("sha") or "")
    state, merge = _state(data, head_sha=head_sha, trailers=trailers)
    return PullRequest(
        number=int(data["number"]),
        title=str(data.get("title") or ""),
        body=body,
        env=env,
        source=meta.get("source"),
        kind=_kind(meta),
        branch=branch,
        base=str(base.get("ref")),
        head_sha=head_sha,
        author=author,
        state=state,
        created_at=parse_time(data.get("created_at")),
        url=str(data.get("html_url") or ""),
        author_identity=identity,
        source_revision=meta.get("sourceRevision"),
        images=tuple(str(i) for i in meta.get("images") or ()),
        lifts=tuple(str(p) for p in meta.get("lifts") or ()),
        comments=tuple(comments),
        merge=merge,
        closed_at=parse_time(data["closed_at"]) if data.get("closed_at") else None,
    )


def _kind(meta: dict[str, Any]) -> PRKind:
    try:
        return PRKind(meta.get("kind", PRKind.PROMOTION))
    except ValueError:
        return PRKind.PROMOTION


def _author(data: dict[str, Any], meta: dict[str, Any]) -> tuple[str, str]:
    """(author, identity): the author is the forge user who opened the PR (``user.login``).

    Never the metadata: anyone with write access can edit the body, so a name there could
    lift the self-approval rule (issue 13, finding 8). A different name in the body is shown
    in the identity, marked as the body's claim, and decides nothing.
    """
    opener = login_of(data, missing="")
    identity = str(meta.get("authorIdentity") or "")
    claimed = str(meta.get("author") or "")
    if claimed and claimed != opener:
        identity = f"{identity} (the PR body names {claimed}; not used)".strip()
    return opener, identity


def check_merged_head(pr: PullRequest, merge: MergeResult, approved: str, *, forge: str) -> None:
    """A PR found merged while promote was merging it (someone merged it on the forge) is
    promote's merge only if the head merged is the approved one (issue 13, finding 8)."""
    if merge.head_sha != approved:
        raise ForgeError(
            f"PR #{pr.number} was merged on {forge} ({merge.sha[:12]}) with head "
            f"{merge.head_sha[:12] or '(unknown)'}, not the approved head {approved[:12]}: "
            "nobody approved that merge through promote; see `promote history`, revert it or "
            "approve its change in a new promotion."
        )


def _state(
    data: dict[str, Any],
    *,
    head_sha: str,
    trailers: Callable[[str], tuple[tuple[str, ...], str]],
) -> tuple[PRState, MergeResult | None]:
    """The PR's state, and its merge when merged (approvers and merger from the trailers)."""
    merged_at = data.get("merged_at")
    if not (data.get("merged") or merged_at):
        return (PRState.OPEN if data.get("state") == "open" else PRState.CLOSED), None
    sha = str(data.get("merge_commit_sha") or "")
    counted, merger = trailers(sha)
    merge = MergeResult(
        sha=sha,
        method="merge-commit",
        at=parse_time(merged_at),
        by=login_of(data, "merged_by", missing=merger),
        head_sha=head_sha,
        approvals=counted,
    )
    return PRState.MERGED, merge
