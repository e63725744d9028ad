"""The GitHub forge (REST API v3, github.com or GitHub Enterprise Server).

``forge: {type: github, repo: OWNER/NAME, tokenEnv: GITHUB_TOKEN}``; ``url`` defaults to
``https://api.github.com`` and accepts an Enterprise server (``https://ghe.example.com`` or its
API root ``https://ghe.example.com/api/v3``). The shared behaviour lives in
``forge/rest.py``; this module holds what is GitHub's own:

- The token goes as ``Authorization: Bearer``, with the documented media type and API version.
- Labels are added after the PR is created (``POST /issues/{n}/labels`` creates missing ones).
- Reviews approve with ``event: APPROVE``; states are APPROVED / CHANGES_REQUESTED / DISMISSED.
- A merge is ``PUT /pulls/{n}/merge`` with ``sha`` (GitHub refuses with 409 if the head moved)
  and ``merge_method: merge``; a 405 (branch protection, "not mergeable") is reported as GitHub
  words it.
- Rate limits (403/429 with ``x-ratelimit-*`` or ``retry-after``) are handled in ``http.py``.

It cannot run here: ``tests/contract/test_forge_github.py`` holds it to GitHub's documented
request and response shapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from promote import config
from promote.errors import ForgeError, NotFound
from promote.forge import http, payload, rest
from promote.forge.base import Approval, PullRequestDraft
from promote.git import repo as git_repo

log = logging.getLogger(__name__)

PUBLIC_API = "https://api.github.com"
PUBLIC_WEB = "https://github.com"
PAGE_SIZE = 100  # GitHub's maximum per_page
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def api_and_web(url: str | None) -> tuple[str, str]:
    """The API root and the web (git) root for ``forge.url``."""
    if not url:
        return PUBLIC_API, PUBLIC_WEB
    url = url.rstrip("/")
    host = (urlsplit(url).hostname or "").lower()
    if host in ("github.com", "www.github.com", "api.github.com"):
        return PUBLIC_API, PUBLIC_WEB
    root = url.removesuffix("/api/v3")  # GitHub Enterprise Server: <root>/api/v3
    return root + "/api/v3", root


class GitHubForge(rest.ServerForge):
    kind = "github"
    name: ClassVar[str] = "GitHub"

    @classmethod
    def from_config(
        cls,
        forge: config.ForgeConfig,
        *,
        main_branch: str,
        git: git_repo.Repo | None = None,
        transport: httpx.BaseTransport | None = None,
        page_size: int = PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
    ) -> GitHubForge:
        api_url, web_url = api_and_web(forge.url)
        token = http.read_token(forge.token_env, forge="GitHub")
        api = http.Api(
            api_url,
            token=token,
            forge="GitHub",
            auth_scheme="Bearer",
            headers=HEADERS,
            transport=transport,
            sleep=sleep,  # rate-limit waits; tests pass a recorder
        )
        return cls(
            api,
            repo=payload.valid_repo(forge.repo, forge="github"),
            web_url=web_url,
            token=token,
            main_branch=main_branch,
            git=git,
            page_size=page_size,
        )

    def _page_params(self) -> dict[str, Any]:
        return {"per_page": self._page_size}

    def _branch_sha(self, data: dict[str, Any]) -> str:
        return str((data.get("commit") or {}).get("sha") or "")

    def _create(self, draft: PullRequestDraft, body: str) -> dict[str, Any]:
        what = f"open a pull request on {self.repo}"
        data = self.api.json(
            "POST",
            f"repos/{self.repo}/pulls",
            what=what,
            json={"title": draft.title, "head": draft.branch, "base": draft.base, "body": body},
        )
        try:  # labels help people filter; the environment comes from the branch name
            labels = self.api.json(
                "POST",
                f"repos/{self.repo}/issues/{data['number']}/labels",
                what=f"label PR #{data['number']}",
                json={"labels": [payload.LABEL, payload.env_label(draft.env)]},
            )
        except (ForgeError, NotFound) as exc:
            log.warning("PR #%s opened without labels: %s", data["number"], exc)
            labels = []
        return {**data, "labels": labels}

    def _review_payload(self, approval: Approval) -> dict[str, Any]:
        return {"event": "APPROVE", "body": approval.comment, "commit_id": approval.head_sha}

    def _verdict(self, item: dict[str, Any]) -> str:
        state = str(item.get("state") or "")
        if state == "DISMISSED":
            return "dismissed"
        return {"APPROVED": "approved", "CHANGES_REQUESTED": "changes"}.get(state, "other")

    def _send_merge(
        self, number: int, *, head_sha: str, title: str, message: str
    ) -> httpx.Response:
        return self.api.request(
            "PUT",
            f"repos/{self.repo}/pulls/{number}/merge",
            what=f"merge PR #{number}",
            json={
                "commit_title": title,
                "commit_message": message,
                "sha": head_sha,  # GitHub refuses (409) if the head moved meanwhile
                "merge_method": "merge",
            },
            accept=(404, 405, 409, 422),
        )

    def pull_of_commit(self, sha: str) -> dict[str, Any] | None:
        # "Lists the merged pull request that introduced the commit"; for a commit not on the
        # default branch it lists open PRs instead, which the merge_commit_sha check drops.
        resp = self.api.request(
            "GET",
            f"repos/{self.repo}/commits/{sha}/pulls",
            what=f"find the pull request that merged {sha[:12]}",
            params={"per_page": self._page_size},
            accept=(404, 422),
        )
        if resp.status_code in (404, 422):  # 422: no such commit in the repository
            return None
        items = http.decode(resp, f"read the pull requests of {sha[:12]}", self.name) or []
        for item in items:
            if str(item.get("merge_commit_sha") or "") == sha and item.get("merged_at"):
                return self._pull_json(int(item["number"]))  # the list omits ``merged``
        return None
