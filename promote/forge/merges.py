"""What a server forge (Gitea, GitHub) says merged a commit of main: the agent's evidence.

An agent verifying an environment whose pull requests live on Gitea or GitHub asks the forge,
with a READ-ONLY token, for each first-parent step of main: which pull request merged it
(Gitea ``GET /repos/{o}/{r}/commits/{sha}/pull``, its merged-commit lookup; GitHub
``GET /repos/{o}/{r}/commits/{sha}/pulls``), that PR's head, who opened it, its reviews and the
forge users who wrote its commits (as the forge maps their e-mail addresses) or pushed them
(Gitea's timeline names every pusher). :class:`MergedPull` is that answer as data; whether it proves
the step is ``reconcile/forgeproofs.py``'s and ``promotion/judgement.py``'s, never this
module's.

A PR counts only when the forge names ``sha`` as its merge commit (``merge_commit_sha``): a
commit that merely appears in some PR proves nothing. Answers about merged PRs do not change
once merged (reviews after the merge are dropped by the caller), so they are kept on disk per
SHA (:class:`MergeCache`): a later pass, or a restarted agent, asks the forge nothing for a step
it has seen. "No PR merged this commit" is kept in memory for :data:`NEGATIVE_TTL_S` only: Gitea
pushes the merge (and sends its push webhook) before it marks the PR merged, so an agent woken
by that push may ask a moment too early.

Must not: judge, or write anything to the forge. The token is the agent's, read from the
variable ``forge.tokenEnv`` names; Gitea scopes ``read:repository``, ``read:issue`` (the
timeline: who pushed) and ``read:user``; GitHub fine-grained ``pull_requests:read`` and
``contents:read``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promote.forge import payload

if TYPE_CHECKING:
    from promote.forge.rest import ServerForge

log = logging.getLogger(__name__)

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
CACHE_VERSION = 1
NEGATIVE_TTL_S = 30.0  # how long "no PR merged it" is believed before the forge is asked again


@dataclass(frozen=True, slots=True)
class MergedPull:
    """The forge's record of the pull request whose merge produced one commit of main."""

    number: int
    branch: str  # its head branch (``promote/<env>/<id>`` for a promotion)
    base: str  # the branch it merged into
    head_sha: str  # the head the forge merged (what approvals must be bound to)
    merge_sha: str  # the commit of main the forge names as its merge
    merged_at: datetime
    author: str  # the forge user who opened it (``user.login``)
    reviews: tuple[payload.Review, ...] = ()
    writers: tuple[str, ...] = field(default_factory=tuple)  # who wrote or pushed its commits
    # Commits of the PR no push event names yet: Gitea writes a push's timeline event just
    # after it moves the PR's head, so an early answer may miss a pusher. Not cached.
    unrecorded: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["merged_at"] = self.merged_at.isoformat()
        doc["reviews"] = [{**asdict(r), "at": r.at.isoformat()} for r in self.reviews]
        return {"v": CACHE_VERSION, **doc}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> MergedPull:
        reviews = tuple(
            payload.Review(
                reviewer=str(r["reviewer"]),
                verdict=str(r["verdict"]),
                commit_id=str(r["commit_id"]),
                at=datetime.fromisoformat(str(r["at"])),
                body=str(r.get("body") or ""),
            )
            for r in doc.get("reviews") or ()
        )
        return cls(
            number=int(doc["number"]),
            branch=str(doc["branch"]),
            base=str(doc["base"]),
            head_sha=str(doc["head_sha"]),
            merge_sha=str(doc["merge_sha"]),
            merged_at=datetime.fromisoformat(str(doc["merged_at"])),
            author=str(doc["author"]),
            reviews=reviews,
            writers=tuple(str(w) for w in doc.get("writers") or ()),
            unrecorded=tuple(str(c) for c in doc.get("unrecorded") or ()),
        )


def merged_pull_of(data: Mapping[str, Any], sha: str) -> bool:
    """Whether a PR's JSON says it was merged with ``sha`` as its merge commit."""
    merged = bool(data.get("merged") or data.get("merged_at"))
    return merged and str(data.get("merge_commit_sha") or "") == sha


def writers_of(commits: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The forge users the forge maps a PR's commits to (author and committer; the forge maps
    them by e-mail address, so a commit naming nobody it knows adds nobody)."""
    out: list[str] = []
    for c in commits:
        for key in ("author", "committer"):
            login = payload.login_of(c, key, missing="")
            if login and login not in out:
                out.append(login)
    return tuple(sorted(out))


def pushers_of(events: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, ...], set[str]]:
    """The forge users who pushed to a PR's branch, from its issue timeline, and the commits
    those pushes name. Gitea records every push as a ``pull_push`` event by the pusher
    (whatever the commits' e-mail addresses say), its body listing the commits pushed (a force
    push: ``[old, new]`` beside an ordinary event listing the new commits); GitHub names only
    force-pushers (``head_ref_force_pushed``) and no commits."""
    out: set[str] = set()
    named: set[str] = set()
    for e in events:
        if e.get("type") == "pull_push":
            out.add(payload.login_of(e, missing=""))
            try:
                body = json.loads(str(e.get("body") or "{}"))
            except ValueError:
                continue
            if isinstance(body, dict) and not body.get("is_force_push"):
                named.update(str(c) for c in body.get("commit_ids") or ())
        elif e.get("event") == "head_ref_force_pushed":
            out.add(payload.login_of(e, "actor", missing=""))
    return tuple(sorted(out - {""})), named


class MergeCache:
    """Forge answers per merge SHA, as JSON files in the agent's cache directory."""

    def __init__(self, root: Path | None) -> None:
        self._root = root
        self.hits = 0

    def get(self, sha: str) -> MergedPull | None:
        if self._root is None or not _SHA.match(sha):
            return None
        path = self._root / f"{sha}.json"
        try:
            doc = json.loads(path.read_text())
            if doc.get("v") != CACHE_VERSION or doc.get("merge_sha") != sha:
                return None
            found = MergedPull.from_doc(doc)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self.hits += 1
        return found

    def put(self, found: MergedPull) -> None:
        if self._root is None or not _SHA.match(found.merge_sha):
            return
        self._root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".merge-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(found.to_doc(), fh, sort_keys=True)
        os.replace(tmp, self._root / f"{found.merge_sha}.json")


class MergeLookup:
    """Which PR merged a commit of main, asked of one server forge (answers cached)."""

    def __init__(self, forge: ServerForge, *, cache_dir: Path | None = None) -> None:
        self.forge = forge
        self.cache = MergeCache(cache_dir)
        self._none: dict[str, float] = {}  # commit no PR merged -> when the forge said so
        self.calls = 0  # API requests made (bench/reconcile.py reports them)

    def merged_pull(self, sha: str) -> MergedPull | None:
        """The PR the forge says merged ``sha`` into main, or None (a direct push)."""
        said = self._none.get(sha)
        if said is not None and time.monotonic() - said < NEGATIVE_TTL_S:
            return None
        cached = self.cache.get(sha)
        if cached is not None:
            return cached
        self.calls += 1
        data = self.forge.pull_of_commit(sha)
        if data is None or not merged_pull_of(data, sha):
            self._none[sha] = time.monotonic()
            return None
        found = self._read(data, sha)
        if not found.unrecorded:
            self.cache.put(found)
        return found

    def _read(self, data: Mapping[str, Any], sha: str) -> MergedPull:
        number = int(data["number"])
        repo = self.forge.repo
        params = self.forge._page_params()  # the forge's own paging
        reviews = [
            self.forge._review_from(item)
            for item in self.forge.api.paginate(
                f"repos/{repo}/pulls/{number}/reviews",
                what=f"read the reviews of PR #{number}",
                params=params,
            )
        ]
        commits = list(
            self.forge.api.paginate(
                f"repos/{repo}/pulls/{number}/commits",
                what=f"read the commits of PR #{number}",
                params=params,
            )
        )
        events = self.forge.api.paginate(
            f"repos/{repo}/issues/{number}/timeline",
            what=f"read the timeline of PR #{number}",
            params=params,
        )
        pushers, named = pushers_of(events)
        self.calls += 3
        shas = [str(c.get("sha") or "") for c in commits]
        unrecorded = [c for c in shas if c not in named] if self.forge.kind == "gitea" else []
        head, base = data.get("head") or {}, data.get("base") or {}
        log.debug("forge: %s was merged by PR #%s", sha[:12], number)
        return MergedPull(
            number=number,
            branch=str(head.get("ref") or ""),
            base=str(base.get("ref") or ""),
            head_sha=str(head.get("sha") or ""),
            merge_sha=sha,
            merged_at=payload.parse_time(data.get("merged_at")),
            author=payload.login_of(data, missing=""),
            reviews=tuple(reviews),
            writers=tuple(sorted({*writers_of(commits), *pushers})),
            unrecorded=tuple(unrecorded),
        )
