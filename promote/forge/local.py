"""The local forge: pull requests kept in the Git remote itself (DESIGN §4), the default.

Layout on the remote (any Git remote, a bare repository is enough):

- ``refs/heads/promote/<env>/<id>``: the PR's branch, created by ``open`` in the same atomic
  push as the record (a PR never exists without its branch, nor a branch without its PR).
- ``refs/promote/prs/<N>``: the PR record. Each ref points at a commit whose tree holds
  ``pr.json`` (title, env, author, state, images, approvals, comments, merge) and ``body.md``
  (the plan in Markdown). Every change is a new commit on top of the previous one, so the ref's
  history is the PR's audit log.

Concurrency: every write is a compare-and-swap on the ref (``--force-with-lease`` with the SHA
we read): a new number is claimed with "must not exist", an update with "still at the commit I
read". A lost race re-reads and re-applies the change, so concurrent writers never lose each
other's updates. Local copies live under ``refs/promote-remote/<remote>/prs/``.

This module stores approvals; it does not judge them (``promotion/approvals.py`` does). The
record document itself (its fields, trailers and state rules) is ``forge/records.py``'s; this
module owns the refs, the pushes and the retries.
"""

from __future__ import annotations

import builtins
import copy
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from promote.errors import (
    ForgeError,
    GitUnavailable,
    PushRejected,
    UnknownPullRequest,
)
from promote.forge import records
from promote.forge.base import (
    Approval,
    MergeResult,
    PRState,
    PullRequest,
    PullRequestDraft,
    Resolver,
    approval_from_record,
)
from promote.git import repo as git_repo

log = logging.getLogger(__name__)

PR_PREFIX = records.PR_PREFIX
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0.01, 0.03 * min(attempt + 1, 10)))


def refspecs(remote: str, main: str) -> list[str]:
    """What one fetch brings for the local forge: main, the PR branches, the PR records."""
    return [
        f"+refs/heads/{main}:refs/remotes/{remote}/{main}",
        f"+refs/heads/promote/*:refs/remotes/{remote}/promote/*",
        f"+{PR_PREFIX}*:{tracked_records(remote)}*",
    ]


def tracked_records(remote: str) -> str:
    """Where a clone keeps the copies of ``remote``'s PR records (``refspecs``)."""
    return f"refs/promote-remote/{remote}/prs/"


class LocalForge:
    """Pull requests as refs and JSON documents in ``remote`` of ``repo``."""

    kind = "local"
    pushes_branch = True

    def __init__(
        self,
        repo: git_repo.Repo,
        *,
        remote: str,
        main_branch: str,
        max_attempts: int = 60,
        offline: bool = False,
    ) -> None:
        self._repo = repo
        self._remote = remote
        self._main = main_branch
        self._track = tracked_records(remote)
        self._max = max_attempts
        self._fresh = False
        self._offline = offline  # reading only: use the local copies when the remote is away

    # --- reading ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch main, the PR branches and the PR records (once per forge unless forced)."""
        try:
            self._repo.fetch(self._remote, refspecs(self._remote, self._main), prune=True)
        except GitUnavailable:
            if not self._offline:
                raise
            log.warning("%s cannot be reached; using the local copies of its PRs", self._remote)
        self._fresh = True

    def mark_fresh(self) -> None:
        """The caller has just fetched :func:`refspecs` (the engine does, with main)."""
        self._fresh = True

    def _ensure_fresh(self) -> None:
        if not self._fresh:
            self.refresh()

    def _load(self, number: int) -> tuple[str, dict[str, Any], str]:
        sha = self._repo.try_resolve(f"{self._track}{number}")
        if sha is None:
            known = sorted(int(r.rsplit("/", 1)[1]) for r in self._repo.refs(self._track))
            listed = ", ".join(f"#{n}" for n in known[-10:]) or "none yet"
            raise UnknownPullRequest(
                f"PR #{number} does not exist on {self._remote} (PRs: {listed}); "
                "`promote prs --state all` lists them."
            )
        raw = self._repo.read_file(sha, records.RECORD)
        if raw is None:
            raise ForgeError(f"{PR_PREFIX}{number} on {self._remote} holds no {records.RECORD}.")
        body = (self._repo.read_file(sha, records.BODY) or b"").decode("utf-8")
        return sha, json.loads(raw), body

    def _head(self, record: dict[str, Any]) -> str:
        live = self._repo.try_resolve(f"refs/remotes/{self._remote}/{record['branch']}")
        return live or str(record["headSha"])

    def _to_pr(self, record: dict[str, Any], body: str) -> PullRequest:
        url = f"{self._remote}#{PR_PREFIX}{record['number']}"
        return records.to_pull_request(record, body, head_sha=self._head(record), url=url)

    def get(self, number: int) -> PullRequest:
        self._ensure_fresh()
        _, record, body = self._load(number)
        return self._to_pr(record, body)

    def list(
        self, *, env: str | None = None, state: PRState | None = None
    ) -> builtins.list[PullRequest]:
        self._ensure_fresh()
        out = []
        for ref, trailers in self._repo.ref_messages(self._track).items():
            tagged = records.trailers(trailers)
            if (env is not None and tagged.get("Promote-Env", env) != env) or (
                state is not None and tagged.get("Promote-State", state) != state
            ):
                continue  # the record's own trailers rule it out (records without them are read)
            _, record, body = self._load(int(ref.rsplit("/", 1)[1]))
            if (env is None or record["env"] == env) and (
                state is None or record["state"] == state
            ):
                out.append(self._to_pr(record, body))
        return sorted(out, key=lambda p: p.number)

    def approvals(self, number: int) -> builtins.list[Approval]:
        self._ensure_fresh()
        _, record, _ = self._load(number)
        return [approval_from_record(r) for r in record.get("approvals", ())]

    # --- writing ----------------------------------------------------------------------------

    def _record_commit(
        self, record: dict[str, Any], body: str, parent: str | None, message: str
    ) -> str:
        tree = self._repo.write_tree(
            {
                records.RECORD: (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(),
                records.BODY: body.encode(),
            }
        )
        # The state and environment, repeated as trailers, let `list` pick the records it needs
        # from one `for-each-ref` instead of reading every record ever written.
        message += records.trailer_lines(record)
        return self._repo.commit(
            tree, [parent] if parent else [], message, author=self._repo.identity(), record=True
        )

    def open(self, draft: PullRequestDraft) -> PullRequest:
        branch_ref = f"refs/heads/{draft.branch}"
        for attempt in range(self._max):
            # The numbers fetched with main first (no round trip); the remote's after a race.
            if attempt == 0 and self._fresh:
                taken = list(self._repo.refs(self._track))
            else:
                taken = list(self._repo.ls_remote(self._remote, f"{PR_PREFIX}*", branch_ref))
                if branch_ref in taken:
                    raise ForgeError(
                        f"branch {draft.branch} already exists on {self._remote}; a PR's branch "
                        "is created with its PR. Delete the branch or promote again (new id)."
                    )
            numbers = [int(r.rsplit("/", 1)[1]) for r in taken if r.rsplit("/", 1)[1].isdigit()]
            number = max(numbers, default=0) + 1
            opened = draft.sign(number) if draft.sign is not None else None
            record = records.new_record(draft, number, created_at=_now(), opened=opened)
            commit = self._record_commit(record, draft.body, None, f"open PR #{number}")
            ref = f"{PR_PREFIX}{number}"
            branch = git_repo.RefUpdate(branch_ref, draft.head_sha, git_repo.MUST_NOT_EXIST)
            try:
                self._repo.push(self._remote, [branch, git_repo.RefUpdate(ref, commit, "")])
            except PushRejected:
                log.debug("PR number %d was taken concurrently; retrying", number)
                _backoff(attempt)
                continue
            self._repo.set_ref(f"{self._track}{number}", commit)
            self._repo.set_ref(f"refs/remotes/{self._remote}/{draft.branch}", draft.head_sha)
            return self._to_pr(record, draft.body)
        raise ForgeError(
            f"could not claim a PR number on {self._remote} after {self._max} attempts "
            "(many concurrent promotions); try again."
        )

    def _update(
        self, number: int, message: str, mutate: Callable[[dict[str, Any]], T]
    ) -> tuple[T, dict[str, Any], str]:
        """Apply ``mutate`` to the record and push it as a compare-and-swap; retry on races."""
        for attempt in range(self._max):
            if attempt:
                self.refresh()
            else:
                self._ensure_fresh()
            old, record, body = self._load(number)
            new_record = copy.deepcopy(record)
            result = mutate(new_record)
            if new_record == record:
                return result, record, body
            commit = self._record_commit(new_record, body, old, message)
            try:
                self._repo.push(
                    self._remote, [git_repo.RefUpdate(f"{PR_PREFIX}{number}", commit, old)]
                )
            except PushRejected:
                log.debug("PR #%d moved concurrently; re-reading", number)
                _backoff(attempt)
                continue
            self._repo.set_ref(f"{self._track}{number}", commit)
            return result, new_record, body
        raise ForgeError(
            f"could not update PR #{number} after {self._max} attempts (it kept changing "
            "concurrently); try again."
        )

    def approve(self, number: int, approval: Approval) -> Approval:
        def add(record: dict[str, Any]) -> None:
            records.require_open(record, "approve")
            record["approvals"].append(
                {
                    "approver": approval.approver,
                    "payload": approval.payload,
                    "signature": approval.signature,
                }
            )

        self._update(number, f"approve PR #{number} as {approval.approver}", add)
        return approval

    def comment(self, number: int, *, author: str, text: str) -> PullRequest:
        def add(record: dict[str, Any]) -> None:
            record["comments"].append({"author": author, "at": _now().isoformat(), "text": text})

        _, record, body = self._update(number, f"comment on PR #{number} by {author}", add)
        return self._to_pr(record, body)

    def close(self, number: int, *, by: str) -> PullRequest:
        def shut(record: dict[str, Any]) -> None:
            records.require_open(record, "close")
            record["state"] = str(PRState.CLOSED)
            record["closed"] = {"at": _now().isoformat(), "by": by}

        _, record, body = self._update(number, f"close PR #{number}", shut)
        return self._to_pr(record, body)

    def merge(
        self,
        number: int,
        *,
        head_sha: str,
        by: str,
        approvals: Sequence[str],
        message: str,
        resolve: Resolver | None = None,
    ) -> MergeResult:
        """Merge exactly ``head_sha`` into main (fast-forward, else a merge commit).

        A lost push race re-fetches main and merges again. Git conflicts are handed to
        ``resolve`` (which re-applies the PR's image edits on the new main).
        """
        for attempt in range(self._max):
            self.refresh()
            _, record, _ = self._load(number)
            if record["state"] == PRState.MERGED:
                return records.merge_from(record["merged"])
            records.require_open(record, "merge")
            if self._head(record) != head_sha:
                raise ForgeError(
                    f"PR #{number}: its head moved to {self._head(record)[:12]} while merging; "
                    "approvals are bound to the old head. Run `promote merge` again."
                )
            advanced = self._advance_main(number, head_sha, message, resolve)
            if advanced is None:
                log.debug("main moved while merging PR #%d; retrying", number)
                _backoff(attempt)
                continue
            new, method = advanced
            result = MergeResult(new, method, _now(), by, head_sha, tuple(approvals))
            mark = functools.partial(records.mark_merged, result=result)
            return self._update(number, f"merge PR #{number} ({method})", mark)[0]
        raise ForgeError(
            f"could not merge PR #{number}: {self._main} kept moving ({self._max} attempts); "
            "try again."
        )

    def _advance_main(
        self, number: int, head_sha: str, message: str, resolve: Resolver | None
    ) -> tuple[str, str] | None:
        """Bring ``head_sha`` into main: (main's new tip, method), or None if main moved under
        us (the push lost its compare-and-swap race)."""
        remote_main = f"refs/remotes/{self._remote}/{self._main}"
        main = self._repo.resolve(remote_main)
        if self._repo.is_ancestor(head_sha, main):
            return main, "already-in-main"
        # Fast-forward only a head whose first parent is main: main then moves by one
        # first-parent step, the approved head itself. A longer branch is merged with a merge
        # commit, so the agents see one step per PR, never a PR's inner commits as steps of
        # their own (which no approval names) (DESIGN §4, "The agent verifies").
        if self._repo.commit_info(head_sha).parents[:1] == (main,):
            new, method = head_sha, "fast-forward"
        else:
            new = self._merge_commit(number, main, head_sha, message, resolve)
            method = "merge-commit"
        try:
            self._repo.push(
                self._remote, [git_repo.RefUpdate(f"refs/heads/{self._main}", new, main)]
            )
        except PushRejected:
            return None
        self._repo.set_ref(remote_main, new)
        return new, method

    def _merge_commit(
        self, number: int, main: str, head: str, message: str, resolve: Resolver | None
    ) -> str:
        tree, conflicts = self._repo.merge_tree(main, head)
        if conflicts:
            fixed = resolve(main, conflicts) if resolve is not None else None
            if fixed is None or not set(conflicts) <= set(fixed):
                raise ForgeError(
                    f"PR #{number} conflicts with {self._main} in {', '.join(conflicts)}; update "
                    "the PR branch (or close it and promote again)."
                )
            tree = self._repo.write_tree(dict(fixed), base=tree)
        return self._repo.commit(tree, [main, head], message, author=self._repo.identity())
