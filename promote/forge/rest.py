"""What the server forges (Gitea, GitHub) share: the Forge verbs over a REST API.

:class:`ServerForge` implements the :class:`~promote.forge.base.Forge` verbs once; a subclass
(``gitea.py``, ``github.py``) supplies the few places the two APIs differ, ``payload.py`` the
mapping between their JSON and our values, ``http.py`` the client. The server holds the truth:
nothing is cached across commands, and nothing here judges approvals
(``promotion/approvals.py`` does).

Beyond the API, it reads the local clone (the merge commit's ``Promote-*`` trailers: who was
counted and who merged) and hands git the environment that authenticates pushes.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from promote.errors import ForgeError, NotFound, PromoteError, UnknownPullRequest
from promote.forge import http, payload
from promote.forge.base import (
    Approval,
    Comment,
    MergeResult,
    PRState,
    PullRequest,
    PullRequestDraft,
    Resolver,
)
from promote.git import repo as git_repo

log = logging.getLogger(__name__)

# --- the forge -------------------------------------------------------------------------------


class ServerForge:
    """The Forge verbs over a forge's REST API; subclasses fill in the API's differences."""

    kind: str = ""
    pushes_branch = False  # the API needs the branch on the server before the PR
    name: ClassVar[str] = ""  # for messages: "Gitea", "GitHub"

    def __init__(
        self,
        api: http.Api,
        *,
        repo: str,
        web_url: str,
        token: http.Token,
        main_branch: str = "main",
        git: git_repo.Repo | None = None,
        page_size: int = 50,
        wait_s: float = 30.0,
    ) -> None:
        self.api = api
        self.repo = repo
        self.web_url = web_url.rstrip("/")
        self._token = token
        self._main = main_branch
        self._git = git  # the local clone: merge commits' trailers (who was counted)
        self._page_size = page_size
        self._wait_s = wait_s  # how long a freshly pushed branch / a busy merge may take
        self._login: str | None = None

    # --- subclass hooks -----------------------------------------------------------------------

    def _page_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _branch_sha(self, data: dict[str, Any]) -> str:
        raise NotImplementedError

    def _create(self, draft: PullRequestDraft, body: str) -> dict[str, Any]:
        raise NotImplementedError

    def _review_payload(self, approval: Approval) -> dict[str, Any]:
        raise NotImplementedError

    def _verdict(self, item: dict[str, Any]) -> str:
        """ "approved" | "changes" | "other" | "dismissed", from the API's review ``state``."""
        raise NotImplementedError

    def _review_from(self, item: dict[str, Any]) -> payload.Review:
        return payload.Review(
            reviewer=payload.login_of(item),
            verdict=self._verdict(item),
            commit_id=str(item.get("commit_id") or ""),
            at=payload.parse_time(item.get("submitted_at")),
            body=str(item.get("body") or ""),
        )

    def _send_merge(
        self, number: int, *, head_sha: str, title: str, message: str
    ) -> httpx.Response:
        raise NotImplementedError

    def pull_of_commit(self, sha: str) -> dict[str, Any] | None:
        """The JSON of the PR the forge says merged ``sha`` (``forge/merges.py``), or None."""
        raise NotImplementedError

    def _merge_retryable(self, resp: httpx.Response) -> bool:
        """The forge is still computing mergeability, or its view of the head lags the push."""
        text = self.api.message(resp).lower()
        return "try again" in text or "out of date" in text or "was modified" in text

    # --- identity and access ----------------------------------------------------------------

    def whoami(self) -> str:
        """The login of the token's user (who approves, merges and comments)."""
        if self._login is None:
            data = self.api.json("GET", "user", what="authenticate")
            self._login = str(data["login"])
        return self._login

    def check_access(self) -> None:
        """Raise a clear error when the token is refused or the repository is not visible."""
        self.whoami()
        resp = self.api.request(
            "GET", f"repos/{self.repo}", what="read the repository", accept=(404,)
        )
        if resp.status_code == 404:
            raise self._no_repo()

    def disconnect(self) -> None:
        """Close the HTTP connections (not a PR: that is :meth:`close`)."""
        self.api.close()

    def git_environment(self, remote_url: str) -> dict[str, str]:
        return http.git_environment(remote_url, self._token, web_url=self.web_url)

    def _no_repo(self) -> NotFound:
        try:
            who = self.whoami()
        except PromoteError:
            who = "the token's user"
        return NotFound(
            f"{self.name} at {self.web_url} has no repository {self.repo!r}, or {who} cannot "
            "see it.",
            hint="Check forge.repo (OWNER/NAME) and forge.url in promote.yaml.",
        )

    def _missing(self, number: int) -> NotFound:
        probe = self.api.request(
            "GET", f"repos/{self.repo}", what="read the repository", accept=(404,)
        )
        if probe.status_code == 404:
            return self._no_repo()
        return UnknownPullRequest(
            f"PR #{number} does not exist on {self.name} {self.repo}; `promote prs --state all` "
            "lists the promotions."
        )

    # --- reading ----------------------------------------------------------------------------

    def _pull_json(self, number: int) -> dict[str, Any]:
        resp = self.api.request(
            "GET", f"repos/{self.repo}/pulls/{number}", what=f"read PR #{number}", accept=(404,)
        )
        if resp.status_code == 404:
            raise self._missing(number)
        return dict(http.decode(resp, f"read PR #{number}", self.name))

    def get(self, number: int) -> PullRequest:
        data = self._pull_json(number)
        comments = [
            Comment(
                payload.login_of(c),
                payload.parse_time(c.get("created_at")),
                c.get("body") or "",
            )
            for c in self.api.paginate(
                f"repos/{self.repo}/issues/{number}/comments",
                what=f"read the comments of PR #{number}",
                params=self._page_params(),
            )
        ]
        pr = self._to_pr(data, comments=comments)
        if pr is None:
            branch = (data.get("head") or {}).get("ref", "?")
            raise ForgeError(
                f"PR #{number} on {self.repo} is not a promotion (branch {branch!r} into "
                f"{(data.get('base') or {}).get('ref', '?')!r}); promote manages PRs from "
                f"promote/<env>/<id> into {self._main}."
            )
        return pr

    def list(
        self, *, env: str | None = None, state: PRState | None = None
    ) -> builtins.list[PullRequest]:
        wanted = {None: "all", PRState.OPEN: "open"}.get(state, "closed")
        out = []
        for item in self._paginate_pulls(wanted):
            pr = self._to_pr(item)
            if pr is None or (env is not None and pr.env != env):
                continue
            if state is not None and pr.state is not state:
                continue
            out.append(pr)
        return sorted(out, key=lambda p: p.number)

    def _paginate_pulls(self, state: str) -> builtins.list[dict[str, Any]]:
        return builtins.list(
            self.api.paginate(
                f"repos/{self.repo}/pulls",
                what=f"list the pull requests of {self.repo}",
                params={"state": state, **self._page_params()},
                missing=self._no_repo,
            )
        )

    def approvals(self, number: int) -> builtins.list[Approval]:
        pr = self._to_pr(self._pull_json(number))
        env = pr.env if pr else ""
        reviews = [
            self._review_from(item)
            for item in self.api.paginate(
                f"repos/{self.repo}/pulls/{number}/reviews",
                what=f"read the reviews of PR #{number}",
                params=self._page_params(),
            )
        ]
        return payload.approvals_from_reviews(reviews, pr=number, env=env)

    def _to_pr(
        self, data: dict[str, Any], *, comments: Sequence[Comment] = ()
    ) -> PullRequest | None:
        return payload.pull_request(
            data, main=self._main, comments=comments, trailers=self._merge_trailers
        )

    def _merge_trailers(self, merge_sha: str) -> tuple[tuple[str, ...], str]:
        """Who was counted and who merged, from the merge commit's trailers in the local clone
        (``Promote-Approved-By``, ``Promote-Merged-By``; GitHub's PR list omits ``merged_by``)."""
        if self._git is None or not merge_sha or self._git.try_resolve(merge_sha) is None:
            return (), ""
        try:
            trailers = self._git.commit_info(merge_sha).trailers
        except PromoteError:
            return (), ""
        names = trailers.get("Promote-Approved-By", "").split(",")
        counted = tuple(n.strip() for n in names if n.strip() not in ("", "-"))
        return counted, trailers.get("Promote-Merged-By", "")

    # --- writing ----------------------------------------------------------------------------

    def open(self, draft: PullRequestDraft) -> PullRequest:
        self._wait_for_branch(draft.branch, draft.head_sha)
        meta = {
            "v": 1,
            "kind": str(draft.kind),
            "env": draft.env,
            "source": draft.source,
            "sourceRevision": draft.source_revision,
            "images": list(draft.images),
            "lifts": list(draft.lifts),
            "author": draft.author,
            "authorIdentity": draft.author_identity,
        }
        data = self._create(draft, payload.encode_body(draft.body, meta))
        pr = self._to_pr(data)
        if pr is None:
            raise ForgeError(f"{self.name} returned PR #{data.get('number')} for another branch.")
        return pr

    def _wait_for_branch(self, branch: str, sha: str) -> None:
        """Wait until the API shows the pushed commit (Gitea records pushes asynchronously)."""
        deadline = time.monotonic() + self._wait_s
        delay = 0.05
        seen = "nothing"
        while True:
            resp = self.api.request(
                "GET",
                f"repos/{self.repo}/branches/{branch}",
                what=f"read branch {branch}",
                accept=(404,),
            )
            if resp.status_code == 404:
                seen = "no such branch"
            else:
                seen = self._branch_sha(http.decode(resp, f"read branch {branch}", self.name))
                if seen == sha:
                    return
            if time.monotonic() >= deadline:
                raise ForgeError(
                    f"{self.name} did not show {branch} at {sha[:12]} within {self._wait_s:.0f} s "
                    f"after the push (it shows {seen[:12]}); try again."
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def approve(self, number: int, approval: Approval) -> Approval:
        what = f"approve PR #{number}"
        resp = self.api.request(
            "POST",
            f"repos/{self.repo}/pulls/{number}/reviews",
            what=what,
            json=self._review_payload(approval),
            accept=(404, 422),
        )
        if resp.status_code == 404:
            raise self._missing(number)
        if resp.status_code == 422:
            raise ForgeError(
                f"{what}: {self.name} refused the review: {self.api.message(resp)} (HTTP 422)."
            )
        review = self._review_from(http.decode(resp, what, self.name))
        return Approval(
            review.reviewer, number, approval.env, review.commit_id, review.at, review.body
        )

    def comment(self, number: int, *, author: str, text: str) -> PullRequest:
        self.api.request(
            "POST",
            f"repos/{self.repo}/issues/{number}/comments",
            what=f"comment on PR #{number}",
            json={"body": text},
        )
        return self.get(number)

    def close(self, number: int, *, by: str) -> PullRequest:
        current = self.get(number)
        _require_open(current, "close")
        self.api.request(
            "PATCH",
            f"repos/{self.repo}/pulls/{number}",
            what=f"close PR #{number}",
            json={"state": "closed"},
        )
        return dataclasses.replace(self.get(number), closed_by=by)

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
        """Ask the forge to merge exactly ``head_sha`` with a merge commit carrying ``message``.

        ``resolve`` is not used: the forge merges, and its refusals (branch protection,
        conflicts, required checks) are reported in its own words.
        """
        title, _, rest = message.partition("\n")
        deadline = time.monotonic() + self._wait_s
        while True:
            resp = self._send_merge(number, head_sha=head_sha, title=title, message=rest.strip())
            if resp.is_success:
                break
            if resp.status_code == 404:
                raise self._missing(number)
            current = self.get(number)
            if current.state is PRState.MERGED and current.merge is not None:
                payload.check_merged_head(current, current.merge, head_sha, forge=self.name)
                return current.merge
            _require_open(current, "merge")
            if current.head_sha != head_sha:
                raise ForgeError(
                    f"PR #{number}: its head moved to {current.head_sha[:12]} while merging; "
                    "approvals are bound to the old head. Run `promote merge` again."
                )
            if self._merge_retryable(resp) and time.monotonic() < deadline:
                time.sleep(0.3)
                continue
            raise ForgeError(
                f"{self.name} refused to merge PR #{number}: {self.api.message(resp)} "
                f"(HTTP {resp.status_code}).",
                hint="That is the forge's own rule (branch protection, required checks or a "
                "conflict); promote's approval policy was satisfied.",
            )
        data = http.decode(resp, f"merge PR #{number}", self.name) or {}
        merged = self.get(number)
        sha = str(data.get("sha") or (merged.merge.sha if merged.merge else ""))
        return MergeResult(
            sha=sha,
            method="merge-commit",
            at=merged.merge.at if merged.merge else datetime.now(UTC).replace(microsecond=0),
            by=(merged.merge.by if merged.merge and merged.merge.by else by),
            head_sha=head_sha,
            approvals=tuple(approvals),
        )


def _require_open(pr: PullRequest, verb: str) -> None:
    if pr.state is PRState.MERGED:
        sha = pr.merge.sha[:12] if pr.merge else "?"
        raise ForgeError(f"PR #{pr.number} is already merged ({sha}); cannot {verb} it.")
    if pr.state is PRState.CLOSED:
        raise ForgeError(f"PR #{pr.number} is closed; cannot {verb} it. Open a new one.")
