"""The Gitea forge (API v1; Forgejo speaks the same): promotions as pull requests with reviews.

``forge: {type: gitea, url: https://gitea.example.com, repo: OWNER/NAME, tokenEnv: VAR}``.
The shared behaviour lives in ``forge/rest.py``; this module holds what is Gitea's own:

- Pushes are recorded asynchronously: a PR opened right after a push can fail (404/500) for a
  moment, so ``open`` waits until the branch shows the pushed commit, and retries.
- Labels are attached by id when the PR is created; missing labels are created first.
- A merge answers 405 "Please try again later" while Gitea (re)computes mergeability, and 409
  "head out of date" until its database has caught up with a push; both are retried briefly.
  Every other refusal (branch protection: "Does not have enough approvals") is reported as
  Gitea words it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx

from promote import config
from promote.errors import ConfigError, ForgeError, NotFound
from promote.forge import http, payload, rest
from promote.forge.base import Approval, PullRequestDraft
from promote.git import repo as git_repo

log = logging.getLogger(__name__)

API_PATH = "/api/v1"
PAGE_SIZE = 50  # Gitea's default [api] MAX_RESPONSE_ITEMS


class GiteaForge(rest.ServerForge):
    kind = "gitea"
    name: ClassVar[str] = "Gitea"

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
    ) -> GiteaForge:
        if not forge.url:
            raise ConfigError(
                "promote.yaml: forge.url is required for a gitea forge: the server's address, "
                "e.g. `url: https://gitea.example.com`."
            )
        web_url = forge.url.rstrip("/").removesuffix(API_PATH)
        token = http.read_token(forge.token_env, forge="Gitea")
        api = http.Api(
            web_url + API_PATH,
            token=token,
            forge="Gitea",
            auth_scheme="token",
            transport=transport,
            sleep=sleep,  # rate-limit waits; tests pass a recorder
            paging=http.Paging.PAGE,  # labels, reviews ... come without Link headers
        )
        return cls(
            api,
            repo=payload.valid_repo(forge.repo, forge="gitea"),
            web_url=web_url,
            token=token,
            main_branch=main_branch,
            git=git,
            page_size=page_size,
        )

    def _page_params(self) -> dict[str, Any]:
        return {"limit": self._page_size}

    def _branch_sha(self, data: dict[str, Any]) -> str:
        return str((data.get("commit") or {}).get("id") or "")

    def _label_ids(self, names: list[str]) -> list[int]:
        what = f"read the labels of {self.repo}"
        found = {
            str(item["name"]): int(item["id"])
            for item in self.api.paginate(
                f"repos/{self.repo}/labels", what=what, params=self._page_params()
            )
        }
        for name in names:
            if name not in found:
                made = self.api.json(
                    "POST",
                    f"repos/{self.repo}/labels",
                    what=f"create the label {name!r} on {self.repo}",
                    json={"name": name, "color": f"#{payload.LABEL_COLOR}"},
                )
                found[name] = int(made["id"])
        return [found[n] for n in names]

    def _create(self, draft: PullRequestDraft, body: str) -> dict[str, Any]:
        try:  # labels help people filter; the environment comes from the branch name
            labels = self._label_ids([payload.LABEL, payload.env_label(draft.env)])
        except (ForgeError, NotFound) as exc:
            log.warning("opening the PR without labels: %s", exc)
            labels = []
        body_json = {
            "base": draft.base,
            "head": draft.branch,
            "title": draft.title,
            "body": body,
            "labels": labels,
        }
        what = f"open a pull request on {self.repo}"
        deadline = time.monotonic() + self._wait_s
        while True:
            resp = self.api.request(
                "POST", f"repos/{self.repo}/pulls", what=what, json=body_json, accept=(404, 500)
            )
            if resp.is_success:
                return dict(http.decode(resp, what, self.name))
            if time.monotonic() >= deadline:  # still not seeing the pushed branch
                raise self.api.error(resp, what)
            time.sleep(0.2)

    def _review_payload(self, approval: Approval) -> dict[str, Any]:
        return {"event": "APPROVED", "body": approval.comment, "commit_id": approval.head_sha}

    def _verdict(self, item: dict[str, Any]) -> str:
        if item.get("dismissed"):
            return "dismissed"
        state = str(item.get("state") or "")
        return {"APPROVED": "approved", "REQUEST_CHANGES": "changes"}.get(state, "other")

    def _send_merge(
        self, number: int, *, head_sha: str, title: str, message: str
    ) -> httpx.Response:
        return self.api.request(
            "POST",
            f"repos/{self.repo}/pulls/{number}/merge",
            what=f"merge PR #{number}",
            json={
                "Do": "merge",
                "MergeTitleField": title,
                "MergeMessageField": message,
                "head_commit_id": head_sha,  # Gitea refuses (409) if the head moved meanwhile
            },
            accept=(404, 405, 409, 422),
        )

    def pull_of_commit(self, sha: str) -> dict[str, Any] | None:
        # Gitea's merged-commit lookup: the PR whose merge_commit_sha is ``sha`` (merge,
        # squash, rebase or fast-forward alike), 404 when none is.
        resp = self.api.request(
            "GET",
            f"repos/{self.repo}/commits/{sha}/pull",
            what=f"find the pull request that merged {sha[:12]}",
            accept=(404,),
        )
        if resp.status_code == 404:
            return None
        return dict(http.decode(resp, f"read the pull request of {sha[:12]}", self.name))
