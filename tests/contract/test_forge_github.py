"""CONTRACT TEST: the GitHub forge against GitHub's documented REST v3 shapes (respx).

github.com cannot run here (DESIGN §6), so this is the one HTTP-level double: :class:`GitHub`
answers only the endpoints promote uses, with the request and response shapes of GitHub's
REST documentation (pull requests, pull-request reviews, issue comments and labels, branches,
``PUT /pulls/{n}/merge``, ``Link`` pagination over ``/repositories/{id}/...``, 401/404/405/409/
422 error documents, primary and secondary rate limits). It checks what promote sends (auth
scheme, media type, API version, body fields) and refuses anything else. Git itself is real:
the "repository" is a bare repo, the engine pushes branches to it, and a merge writes a real
merge commit there, so ``promote history`` reads real Git.

The scenarios are those of ``tests/integration/test_forge_gitea.py``, run with the CLI in
process (respx patches httpx in this process only).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import typer
from typer.testing import CliRunner

from promote import config, errors
from promote.cli import main as cli_main
from promote.config import ForgeConfig
from promote.forge import github as github_forge
from promote.forge import http as forge_http
from promote.reconcile import forgeproofs
from promote.reconcile.source import GitSource
from promote.reconcile.verify import Verifier
from tests.helpers import copy_example
from tests.integration.test_promotion_helpers import GitOps, git, publish

API = "https://api.github.com"
REPO = "platform/gitops"
REPO_ID = 4242
TOKENS = {f"ghp_{name}_{'x' * 20}": name for name in ("dev1", "rm1", "rm2", "ci-bot")}
TOKEN_OF = {name: token for token, name in TOKENS.items()}
WRONG_TOKEN = "ghp_wrong_" + "0" * 26
DOCS = "https://docs.github.com/rest"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _err(code: int, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(code, json={"message": message, "documentation_url": DOCS, **extra})


@dataclass
class GitHub:
    """GitHub's REST API for one repository, over a real bare Git repository."""

    bare: Path
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    queued: list[httpx.Response] = field(default_factory=list)  # sent before the next answer
    required_reviews: int = 0  # branch protection on main
    before_merge: Callable[[], None] | None = None  # runs once, before the next PUT .../merge
    down: bool = False
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    # --- transport ---------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
        auth = request.headers.get("authorization", "")
        user = TOKENS.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if user is None:
            return _err(401, "Bad credentials", status="401")
        if self.queued:
            return self.queued.pop(0)
        path = request.url.path.replace(f"/repositories/{REPO_ID}", f"/repos/{REPO}")
        body = json.loads(request.content) if request.content else {}
        for method, pattern, handler in self._routes():
            m = re.fullmatch(pattern, path)
            if m and request.method == method:
                return handler(user, body, request, *m.groups())
        return _err(404, "Not Found", status="404")

    def _routes(self) -> list[tuple[str, str, Callable[..., httpx.Response]]]:
        r = re.escape(f"/repos/{REPO}")
        return [
            ("GET", r"/user", lambda u, *_: httpx.Response(200, json={"login": u, "id": 1})),
            ("GET", r, lambda *_: httpx.Response(200, json={"id": REPO_ID, "full_name": REPO})),
            ("GET", rf"{r}/branches/(.+)", self._branch),
            ("POST", rf"{r}/pulls", self._create),
            ("GET", rf"{r}/pulls", self._list),
            ("GET", rf"{r}/pulls/(\d+)", lambda u, b, q, n: self._pull(int(n))),
            ("PATCH", rf"{r}/pulls/(\d+)", self._update),
            ("PUT", rf"{r}/pulls/(\d+)/merge", self._merge),
            ("GET", rf"{r}/pulls/(\d+)/reviews", self._list_reviews),
            ("POST", rf"{r}/pulls/(\d+)/reviews", self._review),
            ("POST", rf"{r}/issues/(\d+)/labels", self._label),
            ("GET", rf"{r}/issues/(\d+)/comments", self._list_comments),
            ("POST", rf"{r}/issues/(\d+)/comments", self._comment),
            ("GET", rf"{r}/commits/([0-9a-f]{{40}})/pulls", self._commit_pulls),
            ("GET", rf"{r}/pulls/(\d+)/commits", self._pull_commits),
            ("GET", rf"{r}/issues/(\d+)/timeline", self._timeline),
        ]

    # --- git ---------------------------------------------------------------------------------

    def _git(self, *args: str, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.bare), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def sha(self, branch: str) -> str | None:
        out = self._git("for-each-ref", "--format=%(objectname)", f"refs/heads/{branch}")
        return out or None

    # --- documented shapes -------------------------------------------------------------------

    def _pr_json(self, pr: dict[str, Any], *, simple: bool = False) -> dict[str, Any]:
        head = pr["head_sha"] if pr["state"] == "closed" else self.sha(pr["branch"])
        out = {
            "url": f"{API}/repos/{REPO}/pulls/{pr['number']}",
            "id": pr["id"],
            "number": pr["number"],
            "state": pr["state"],
            "locked": False,
            "title": pr["title"],
            "user": {"login": pr["user"], "id": 7, "type": "User"},
            "body": pr["body"],
            "labels": [
                {"id": 1, "name": n, "color": "ededed", "default": False} for n in pr["labels"]
            ],
            "created_at": pr["created_at"],
            "updated_at": _now(),
            "closed_at": pr["closed_at"],
            "merged_at": pr["merged_at"],
            "merge_commit_sha": pr["merge_sha"],
            "html_url": f"https://github.com/{REPO}/pull/{pr['number']}",
            "head": {"label": f"platform:{pr['branch']}", "ref": pr["branch"], "sha": head},
            "base": {"label": "platform:main", "ref": pr["base"], "sha": self.sha("main")},
            "draft": False,
            "author_association": "MEMBER",
        }
        if not simple:  # the list endpoint returns "pull-request-simple", without these
            merged_by = {"login": pr["merged_by"]} if pr["merged_by"] else None
            out |= {"merged": bool(pr["merged_at"]), "mergeable": True, "merged_by": merged_by}
        return out

    def _pull(self, number: int) -> httpx.Response:
        pr = self.pulls.get(number)
        return httpx.Response(200, json=self._pr_json(pr)) if pr else _err(404, "Not Found")

    def _page(self, request: httpx.Request, items: list[Any], path: str) -> httpx.Response:
        per_page = int(request.url.params.get("per_page", "30"))
        page = int(request.url.params.get("page", "1"))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            params = dict(request.url.params) | {"page": str(page + 1)}
            nxt = httpx.URL(f"{API}/repositories/{REPO_ID}{path}", params=params)
            headers["link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, json=chunk, headers=headers)

    # --- handlers ----------------------------------------------------------------------------

    def _branch(self, user: str, body: Any, request: httpx.Request, name: str) -> httpx.Response:
        sha = self.sha(name)
        if sha is None:
            return _err(404, "Branch not found")
        return httpx.Response(200, json={"name": name, "commit": {"sha": sha}, "protected": False})

    def _create(self, user: str, body: dict[str, Any], *_: Any) -> httpx.Response:
        if not {"title", "head", "base"} <= body.keys():
            return _err(422, "Validation Failed", errors=[{"code": "missing_field"}])
        if self.sha(body["head"]) is None:
            return _err(422, "Validation Failed", errors=[{"field": "head", "code": "invalid"}])
        number = len(self.pulls) + 1
        self.pulls[number] = {
            "id": next(self.ids),
            "number": number,
            "title": body["title"],
            "body": body.get("body"),
            "branch": body["head"],
            "base": body["base"],
            "user": user,
            "state": "open",
            "labels": [],
            "created_at": _now(),
            "closed_at": None,
            "merged_at": None,
            "merge_sha": None,
            "merged_by": None,
            "head_sha": self.sha(body["head"]),
        }
        return httpx.Response(201, json=self._pr_json(self.pulls[number]))

    def _list(self, user: str, body: Any, request: httpx.Request) -> httpx.Response:
        state = request.url.params.get("state", "open")
        items = [
            self._pr_json(p, simple=True)
            for p in self.pulls.values()
            if state == "all" or p["state"] == state
        ]
        return self._page(request, items, "/pulls")

    def _update(self, user: str, body: dict[str, Any], q: Any, n: str) -> httpx.Response:
        pr = self.pulls[int(n)]
        pr.update({k: body[k] for k in ("title", "body") if k in body})  # anyone with write
        if body.get("state") == "closed" and pr["state"] == "open":
            pr.update(state="closed", closed_at=_now(), head_sha=self.sha(pr["branch"]))
        return self._pull(int(n))

    def _label(self, user: str, body: dict[str, Any], q: Any, n: str) -> httpx.Response:
        pr = self.pulls[int(n)]
        pr["labels"] += [name for name in body["labels"] if name not in pr["labels"]]
        return httpx.Response(200, json=self._pr_json(pr)["labels"])

    def _list_comments(
        self, user: str, body: Any, request: httpx.Request, n: str
    ) -> httpx.Response:
        return self._page(request, self.comments.get(int(n), []), f"/issues/{n}/comments")

    def _comment(self, user: str, body: dict[str, Any], q: Any, n: str) -> httpx.Response:
        item = {
            "id": next(self.ids),
            "user": {"login": user},
            "body": body["body"],
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.comments.setdefault(int(n), []).append(item)
        return httpx.Response(201, json=item)

    def _list_reviews(self, user: str, body: Any, request: httpx.Request, n: str) -> httpx.Response:
        return self._page(request, self.reviews.get(int(n), []), f"/pulls/{n}/reviews")

    def _review(self, user: str, body: dict[str, Any], q: Any, n: str) -> httpx.Response:
        pr = self.pulls[int(n)]
        assert body["event"] in ("APPROVE", "REQUEST_CHANGES", "COMMENT"), body
        if body["event"] == "APPROVE" and user == pr["user"]:
            return _err(
                422, "Unprocessable Entity", errors=["Can not approve your own pull request"]
            )
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}[body["event"]]
        item = {
            "id": next(self.ids),
            "user": {"login": user},
            "body": body.get("body", ""),
            "state": state,
            "commit_id": body.get("commit_id") or self.sha(pr["branch"]),
            "submitted_at": _now(),
            "author_association": "MEMBER",
            "html_url": f"https://github.com/{REPO}/pull/{n}#pullrequestreview-1",
        }
        self.reviews.setdefault(int(n), []).append(item)
        return httpx.Response(200, json=item)

    def _commit_pulls(
        self, user: str, body: Any, request: httpx.Request, sha: str
    ) -> httpx.Response:
        """ "Lists the merged pull request that introduced the commit to the repository. If the
        commit is not present in the default branch, will only return open pull requests
        associated with the commit." (422 "No commit found for SHA" for an unknown commit)"""
        probe = subprocess.run(
            ["git", "--git-dir", str(self.bare), "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            return _err(422, f"No commit found for SHA: {sha}")
        merged = [p for p in self.pulls.values() if p["merge_sha"] == sha]
        found = merged or [
            p for p in self.pulls.values() if p["state"] == "open" and self.sha(p["branch"]) == sha
        ]
        items = [self._pr_json(p, simple=True) for p in found]
        return self._page(request, items, f"/commits/{sha}/pulls")

    def _pull_commits(self, user: str, body: Any, request: httpx.Request, n: str) -> httpx.Response:
        """The PR's commits; ``author``/``committer`` are the GitHub users their e-mail
        addresses belong to (null when none)."""
        pr = self.pulls[int(n)]
        head = pr["head_sha"] if pr["state"] == "closed" else self.sha(pr["branch"])
        base = f"{pr['merge_sha']}^1" if pr["merge_sha"] else "main"
        fmt = "%H%x00%an%x00%ae%x00%cn%x00%ce%x00%s"
        items = []
        for line in self._git(
            "log", "--reverse", f"--format={fmt}", f"{base}..{head}"
        ).splitlines():
            sha, an, ae, cn, ce, subject = line.split("\0")
            items.append(
                {
                    "sha": sha,
                    "commit": {
                        "author": {"name": an, "email": ae, "date": _now()},
                        "committer": {"name": cn, "email": ce, "date": _now()},
                        "message": subject,
                    },
                    "author": _user_of(ae),
                    "committer": _user_of(ce),
                }
            )
        return self._page(request, items, f"/pulls/{n}/commits")

    def _timeline(self, user: str, body: Any, request: httpx.Request, n: str) -> httpx.Response:
        """Timeline events; a plain push appears as ``committed`` events, which name the
        commit's git author, not a GitHub user (only force pushes name an ``actor``)."""
        pr = self.pulls[int(n)]
        head = pr["head_sha"] if pr["state"] == "closed" else self.sha(pr["branch"])
        base = f"{pr['merge_sha']}^1" if pr["merge_sha"] else "main"
        items = [
            {"event": "committed", "sha": sha, "author": {"name": "?", "email": "?"}}
            for sha in self._git("rev-list", "--reverse", f"{base}..{head}").splitlines()
        ]
        return self._page(request, items, f"/issues/{n}/timeline")

    def _merge(self, user: str, body: dict[str, Any], q: Any, n: str) -> httpx.Response:
        if self.before_merge is not None:
            hook, self.before_merge = self.before_merge, None
            hook()
        pr = self.pulls[int(n)]
        if pr["merged_at"]:
            return _err(405, "Pull Request is not mergeable")
        head = self.sha(pr["branch"])
        assert body.get("merge_method") == "merge" and body.get("sha"), body
        if body["sha"] != head:
            return _err(409, "Head branch was modified. Review and try the merge again.")
        approved = {
            r["user"]["login"] for r in self.reviews.get(int(n), []) if r["commit_id"] == head
        }
        if len(approved) < self.required_reviews:
            return _err(
                405,
                f"At least {self.required_reviews} approving reviews are required "
                "by reviewers with write access.",
            )
        main = self.sha("main")
        assert main and head
        tree = self._git("merge-tree", "--write-tree", main, head).splitlines()[0]
        message = f"{body['commit_title']}\n\n{body['commit_message']}\n"
        who = {
            "GIT_AUTHOR_NAME": user,
            "GIT_AUTHOR_EMAIL": f"{user}@users.noreply.github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        sha = self._git("commit-tree", tree, "-p", main, "-p", head, "-m", message, env=who)
        self._git("update-ref", "refs/heads/main", sha, main)
        pr.update(
            state="closed",
            merged_at=_now(),
            closed_at=_now(),
            merge_sha=sha,
            merged_by=user,
            head_sha=head,
        )
        return httpx.Response(
            200, json={"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )


def _user_of(email: str) -> dict[str, Any] | None:
    name = email.split("@", 1)[0]
    return {"login": name, "id": 7, "type": "User"} if name in TOKEN_OF else None


# --- fixtures --------------------------------------------------------------------------------


@dataclass
class Site:
    ops: GitOps
    github: GitHub
    outputs: list[str] = field(default_factory=list)

    def cli(self, user: str, *args: str, code: int = 0, token: str | None = None) -> Any:
        env = {"GITHUB_TOKEN": token or TOKEN_OF[user], "PROMOTE_USER": None}
        res = CliRunner().invoke(_app(), [*args, "-C", str(self.ops.clone)], env=env)
        self.outputs.append(res.stdout + res.stderr)
        assert res.exit_code == code, f"{args} as {user}: exit {res.exit_code}\n{res.output}"
        return res


@functools.cache
def _app() -> typer.Typer:
    """The CLI in this process (respx patches httpx here only), every command registered once."""
    cli_main.load_commands([])
    return cli_main.app


def _layout(work: Path, *, repo: str = REPO, url: str | None = None) -> Path:
    copy_example(work)
    where = f", url: '{url}'" if url else ""
    (work / "promote.yaml").write_text(
        f"mainBranch: main\nremote: origin\n"
        f"forge: {{type: github, repo: {repo}, tokenEnv: GITHUB_TOKEN{where}}}\n"
    )
    staging = work / "environments/staging.yaml"
    staging.write_text(staging.read_text().replace("required: 1", "required: 2"))
    return work


@pytest.fixture
def site(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Site]:
    caplog.set_level(logging.DEBUG)  # every log line of every library, checked for tokens
    ops = publish(_layout(tmp_path / "work"), tmp_path)
    fake = GitHub(ops.remote)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="api.github.com").mock(side_effect=fake)
        s = Site(ops, fake)
        yield s
    secrets = [*TOKENS, WRONG_TOKEN]
    for text in [*s.outputs, caplog.text, (ops.clone / ".git/config").read_text()]:
        assert not any(t in text for t in secrets), f"a token leaked into:\n{text}"


def _opened(site: Site, user: str, *args: str) -> tuple[int, str]:
    pr = json.loads(site.cli(user, "to", "staging", *args, "-o", "json").stdout)["pullRequest"]
    return int(pr["number"]), str(pr["branch"])


def _push_to_branch(site: Site, branch: str, tmp: Path) -> str:
    other = tmp / "other"
    git("clone", "-q", "-b", branch, str(site.ops.remote), str(other), cwd=tmp)
    kz = other / "overlays/staging/kustomization.yaml"
    kz.write_text(kz.read_text() + "# reviewed again after this\n")
    git("-c", "user.name=dev1", "-c", "user.email=d@x", "commit", "-qam", "tweak", cwd=other)
    git("push", "-q", "origin", f"HEAD:{branch}", cwd=other)
    return git("rev-parse", "HEAD", cwd=other)


# --- the scenarios of the Gitea suite --------------------------------------------------------


def test_promotion_is_a_github_pull_request_approved_by_reviews(site: Site, tmp_path: Path) -> None:
    number, branch = _opened(site, "dev1")
    pr = site.github.pulls[number]
    assert pr["user"] == "dev1" and pr["branch"] == branch and pr["base"] == "main"
    assert pr["labels"] == ["promote", "env:staging"]
    assert "| web-app | web-app | v2.3.2 | v2.4.0 |" in pr["body"]
    assert '<!-- promote:meta {"author":"dev1"' in pr["body"]
    n = str(number)

    refused = site.cli("dev1", "merge", n, code=3)
    assert "counted: 0 (none). Missing: 2 more from rm1 or rm2" in refused.stderr
    assert "`promote approve" in refused.stderr and "$GITHUB_TOKEN" in refused.stderr
    own = site.cli("dev1", "approve", n, code=3)
    assert "opened by dev1" in own.stderr and "self-approval" in own.stderr

    site.cli("rm1", "approve", n, "-m", "lgtm")
    review = site.github.reviews[number][0]
    assert (review["user"]["login"], review["body"]) == ("rm1", "lgtm")
    assert review["commit_id"] == site.github.sha(branch)
    refused = site.cli("dev1", "merge", n, code=3)
    assert "counted: 1 (rm1). Missing: 1 more from rm2" in refused.stderr
    site.cli("rm2", "approve", n)

    moved = _push_to_branch(site, branch, tmp_path)
    stale = json.loads(site.cli("dev1", "merge", n, "-o", "json", code=3).stdout)
    messages = [e["message"] for e in stale["errors"]]
    assert "counted: 0 (none)" in messages[0]
    for who in ("rm1", "rm2"):
        assert any(
            m.startswith(f"{who}: not counted: stale:") and moved[:12] in m for m in messages
        )

    site.cli("rm1", "approve", n)
    site.cli("rm2", "approve", n)
    merged = json.loads(site.cli("dev1", "merge", n, "-o", "json").stdout)["merge"]
    assert merged["approvals"] == ["rm1", "rm2"] and merged["by"] == "dev1"
    assert merged["method"] == "merge-commit" and merged["head"] == moved
    put = next(r for r in site.github.requests if r.method == "PUT")
    sent = json.loads(put.content)
    assert sent["sha"] == moved and sent["merge_method"] == "merge"
    assert "Promote-Approved-By: rm1, rm2" in sent["commit_message"]
    assert site.github.sha("main") == merged["sha"]

    entries = json.loads(site.cli("dev1", "history", "staging", "-o", "json").stdout)["entries"]
    newest = entries[0]
    assert newest["kind"] == "promotion" and newest["from"] == "dev"
    assert newest["pr"]["number"] == number and newest["commit"] == merged["sha"]
    assert newest["mergedBy"] == "dev1"
    assert {a["approver"] for a in newest["approvals"] if a["countedAtMerge"]} == {"rm1", "rm2"}
    assert {a["signature"] for a in newest["approvals"]} == {"forge"}
    assert "already merged" in site.cli("rm1", "approve", n, code=1).stderr


def _as(user: str) -> httpx.Client:
    """A user's own API client, as they would use it outside promote."""
    headers = {"Authorization": f"Bearer {TOKEN_OF[user]}", **github_forge.HEADERS}
    return httpx.Client(base_url=API, headers=headers)


def _rename_author_in_body(site: Site, user: str, number: int, new: str) -> None:
    """Anyone with write access can edit a PR's body, promote's metadata comment included."""
    body = site.github.pulls[number]["body"]
    edited = re.sub(r'"author":"[^"]*"', f'"author":"{new}"', body)
    assert edited != body
    with _as(user) as c:
        assert c.patch(f"/repos/{REPO}/pulls/{number}", json={"body": edited}).status_code == 200


def test_the_author_is_who_opened_the_pr_never_what_its_body_says(site: Site) -> None:
    """Issue 13, finding 8: the self-approval rule took the author from the editable body."""
    number, _ = _opened(site, "rm2")
    _rename_author_in_body(site, "rm2", number, "dev1")
    shown = json.loads(site.cli("rm1", "show", str(number), "-o", "json").stdout)
    assert shown["pullRequest"]["author"] == "rm2"
    own = site.cli("rm2", "approve", str(number), code=3)
    assert f"PR #{number} was opened by rm2" in own.stderr and "self-approval" in own.stderr
    assert site.github.reviews.get(number) is None
    wrong_as = site.cli("rm2", "approve", str(number), "--as", "rm1", code=2)
    assert "the token's user approves" in wrong_as.stderr and "belongs to rm2" in wrong_as.stderr
    site.cli("rm2", "close", str(number))

    # A bot opens a promotion naming someone in its body: the forge says the bot opened it.
    bot, branch = _opened(site, "ci-bot", "--author", "rm1")
    assert (
        json.loads(site.cli("rm1", "show", str(bot), "-o", "json").stdout)["pullRequest"]["author"]
        == "ci-bot"
    )
    _rename_author_in_body(site, "rm1", bot, "rm2")
    site.cli("rm1", "approve", str(bot))
    site.cli("rm2", "approve", str(bot))
    merged = json.loads(site.cli("ci-bot", "merge", str(bot), "-o", "json").stdout)["merge"]
    assert merged["approvals"] == ["rm1", "rm2"] and merged["head"] == site.github.sha(branch)


def test_merge_fails_when_the_forge_merged_another_head_than_the_approved_one(
    site: Site, tmp_path: Path
) -> None:
    """Issue 13, finding 8: "already merged" counted as success whatever head was merged."""
    number, branch = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    approved = site.github.sha(branch)
    assert approved is not None
    other: list[str] = []

    def someone_merges_another_head() -> None:  # between promote's check and its merge
        other.append(_push_to_branch(site, branch, tmp_path))
        with _as("dev1") as c:
            r = c.put(
                f"/repos/{REPO}/pulls/{number}/merge",
                json={
                    "merge_method": "merge",
                    "sha": other[0],
                    "commit_title": "t",
                    "commit_message": "by hand",
                },
            )
            assert r.status_code == 200, r.text

    site.github.before_merge = someone_merges_another_head
    res = site.cli("dev1", "merge", str(number), code=1)
    assert other and other[0] != approved
    assert f"PR #{number}" in res.stderr and "merged on GitHub" in res.stderr
    assert approved[:12] in res.stderr and other[0][:12] in res.stderr
    assert "not the approved head" in res.stderr


def test_merge_that_already_happened_with_the_approved_head_succeeds(site: Site) -> None:
    number, branch = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    approved = site.github.sha(branch)

    def someone_merges_the_same_head() -> None:
        with _as("rm1") as c:
            r = c.put(
                f"/repos/{REPO}/pulls/{number}/merge",
                json={
                    "merge_method": "merge",
                    "sha": approved,
                    "commit_title": "t",
                    "commit_message": "by hand",
                },
            )
            assert r.status_code == 200, r.text

    site.github.before_merge = someone_merges_the_same_head
    merged = json.loads(site.cli("dev1", "merge", str(number), "-o", "json").stdout)["merge"]
    assert merged["head"] == approved and merged["sha"] == site.github.sha("main")


def test_a_later_change_request_withdraws_an_approval(site: Site) -> None:
    number, _ = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    site.github.reviews[number].append(
        {
            **site.github.reviews[number][0],
            "id": 9,
            "state": "CHANGES_REQUESTED",
            "submitted_at": "2999-01-01T00:00:00Z",
        }
    )
    shown = json.loads(site.cli("dev1", "show", str(number), "-o", "json").stdout)
    assert shown["policy"]["counted"] == ["rm2"] and not shown["policy"]["mergeable"]


def test_forge_refusal_is_reported_in_its_own_words(site: Site) -> None:
    site.github.required_reviews = 3
    number, _ = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    refused = site.cli("dev1", "merge", str(number), code=1)
    assert (
        f"GitHub refused to merge PR #{number}: At least 3 approving reviews are required by "
        "reviewers with write access. (HTTP 405)"
    ) in refused.stderr
    closed = json.loads(site.cli("dev1", "close", str(number), "-m", "nope", "-o", "json").stdout)
    assert closed["pullRequest"]["state"] == "closed"
    assert closed["pullRequest"]["comments"][-1] == {
        "author": "dev1",
        "at": closed["pullRequest"]["comments"][-1]["at"],
        "text": "nope",
    }


def test_pages_are_followed_through_link_headers(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _opened(site, "dev1")
    for i in range(3):
        site.cli("rm1", "comment", str(first), f"note {i}")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN_OF["rm1"])
    cfg = ForgeConfig(type="github", repo=REPO, token_env="GITHUB_TOKEN")
    forge = github_forge.GitHubForge.from_config(cfg, main_branch="main", page_size=1)
    assert [c.text for c in forge.get(first).comments] == ["note 0", "note 1", "note 2"]
    pages = [r.url for r in site.github.requests if r.url.path.endswith("/comments")]
    assert any(f"/repositories/{REPO_ID}/" in str(u) and "page=3" in str(u) for u in pages)
    assert [p.number for p in forge.list()] == [first]


def test_rate_limits_are_waited_out(site: Site) -> None:
    reset = str(int(time.time()))
    site.github.queued = [
        httpx.Response(
            403,
            json={"message": "API rate limit exceeded for user ID 1.", "documentation_url": DOCS},
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
        ),
        httpx.Response(
            429,
            json={"message": "You have exceeded a secondary rate limit."},
            headers={"retry-after": "1"},
        ),
    ]
    started = time.monotonic()
    assert "No open pull requests" in site.cli("dev1", "prs").stdout
    assert time.monotonic() - started >= 1.0 and not site.github.queued


def test_a_long_rate_limit_is_a_clear_error(site: Site) -> None:
    reset = str(int(time.time()) + 3600)
    site.github.queued = [
        httpx.Response(
            403,
            json={"message": "API rate limit exceeded for user ID 1."},
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
        )
    ]
    res = site.cli("dev1", "prs", "-o", "json", code=1)
    message = json.loads(res.stdout)["errors"][0]["message"]
    assert "GitHub rate limit reached (HTTP 403)" in message and "Try again after" in message


def test_wrong_token_unknown_repository_and_unreachable_api(site: Site, tmp_path: Path) -> None:
    for args in (("prs",), ("to", "staging", "-o", "json")):
        res = site.cli("dev1", *args, token=WRONG_TOKEN, code=1)
        assert "refused the token in $GITHUB_TOKEN (HTTP 401: Bad credentials)" in res.output
    assert "$GITHUB_TOKEN is not set or empty" in site.cli("dev1", "prs", token=" ", code=1).stderr

    (site.ops.clone / "promote.yaml").write_text(
        (site.ops.clone / "promote.yaml").read_text().replace(REPO, "platform/no-such-repo")
    )
    site.ops.commit_and_push("point at a repository that does not exist")
    unknown = site.cli("dev1", "prs", code=1)
    assert "GitHub at https://github.com has no repository 'platform/no-such-repo', or dev1 " in (
        unknown.stderr
    )

    site.github.down = True
    down = json.loads(site.cli("dev1", "prs", "-o", "json", code=1).stdout)
    assert (
        "cannot reach GitHub at https://api.github.com (connection refused)"
        in (down["errors"][0]["message"])
    )


# --- the adapter alone -----------------------------------------------------------------------


def test_enterprise_urls_and_git_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    assert github_forge.api_and_web(None) == (API, "https://github.com")
    assert github_forge.api_and_web("https://github.com/") == (API, "https://github.com")
    ghe = ("https://ghe.example.com/api/v3", "https://ghe.example.com")
    assert github_forge.api_and_web("https://ghe.example.com") == ghe
    assert github_forge.api_and_web("https://ghe.example.com/api/v3/") == ghe

    monkeypatch.setenv("GHE_TOKEN", TOKEN_OF["rm1"])
    cfg = ForgeConfig(
        type="github", url="https://ghe.example.com", repo=REPO, token_env="GHE_TOKEN"
    )
    forge = github_forge.GitHubForge.from_config(cfg, main_branch="main")
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get("https://ghe.example.com/api/v3/user").respond(json={"login": "rm1"})
        assert forge.whoami() == "rm1"
        assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN_OF['rm1']}"
    env = forge.git_environment("https://ghe.example.com/platform/gitops.git")
    assert env["GIT_CONFIG_KEY_0"] == "http.https://ghe.example.com/platform/gitops.git.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert forge.git_environment("https://mirror.example.com/platform/gitops.git") == {}
    assert forge.git_environment("git@ghe.example.com:platform/gitops.git") == {}
    assert TOKEN_OF["rm1"] not in repr(forge.api.__dict__) + repr(forge._token)


def test_the_token_is_never_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    token = TOKEN_OF["rm1"]
    monkeypatch.setenv("GITHUB_TOKEN", token)
    forge = github_forge.GitHubForge.from_config(
        ForgeConfig(type="github", repo=REPO, token_env="GITHUB_TOKEN"), main_branch="main"
    )
    with respx.mock(assert_all_mocked=True) as router:
        router.get(f"{API}/user").respond(422, json={"message": f"bad header token {token}"})
        with pytest.raises(errors.ForgeError) as caught:
            forge.whoami()
    assert token not in str(caught.value) and "[secure]" in str(caught.value)
    assert forge_http.rate_limit_wait(httpx.Response(403, json={"message": "Forbidden"})) is None


# --- issue 14: paging, secondary rate limits, nullable fields --------------------------------


def test_every_list_is_read_whole_one_item_a_page(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    numbers = [_opened(site, "dev1", *args)[0] for args in ((), ("--app", "api"))]
    for i in range(3):
        site.cli("rm1", "comment", str(numbers[0]), f"note {i}")
    for user in ("rm1", "rm2"):
        site.cli(user, "approve", str(numbers[0]))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN_OF["rm1"])
    cfg = ForgeConfig(type="github", repo=REPO, token_env="GITHUB_TOKEN")
    forge = github_forge.GitHubForge.from_config(cfg, main_branch="main", page_size=1)
    assert [c.text for c in forge.get(numbers[0]).comments] == ["note 0", "note 1", "note 2"]
    assert [p.number for p in forge.list()] == numbers
    assert sorted(a.approver for a in forge.approvals(numbers[0])) == ["rm1", "rm2"]
    for path in ("/pulls", "/comments", "/reviews"):
        pages = [str(r.url) for r in site.github.requests if r.url.path.endswith(path)]
        assert any("page=2" in u for u in pages), (path, pages)


def test_a_secondary_rate_limit_without_headers_waits_a_minute_then_fails_clearly(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub: without retry-after or x-ratelimit-remaining, wait at least a minute, then
    exponentially longer; never retry every second."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN_OF["rm1"])
    waits: list[float] = []
    cfg = ForgeConfig(type="github", repo=REPO, token_env="GITHUB_TOKEN")
    forge = github_forge.GitHubForge.from_config(cfg, main_branch="main", sleep=waits.append)
    limited = {"message": "You have exceeded a secondary rate limit."}
    site.github.queued = [httpx.Response(429, json=limited) for _ in range(6)]
    before = len(site.github.requests)
    with pytest.raises(errors.ForgeUnavailable, match="rate limit reached \\(HTTP 429\\)"):
        forge.list()
    assert waits == [60.0]  # one minute, then 120 s would exceed what promote sits out
    assert len(site.github.requests) - before == 2
    site.github.queued = [httpx.Response(429, json=limited)]
    waits.clear()
    assert forge.list() == []  # the limit lifted after the minute
    assert waits == [60.0]


def test_a_comment_by_a_deleted_user_is_shown(site: Site) -> None:
    """GitHub's schema allows `user: null` (a deleted account, shown as ghost)."""
    number, _ = _opened(site, "dev1")
    site.github.comments.setdefault(number, []).append(
        {"id": 1, "user": None, "body": "from a deleted account", "created_at": _now()}
    )
    shown = json.loads(site.cli("rm1", "show", str(number), "-o", "json").stdout)
    assert shown["pullRequest"]["comments"][-1]["text"] == "from a deleted account"
    assert shown["pullRequest"]["comments"][-1]["author"] == "ghost"
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    site.cli("rm1", "merge", str(number))


def test_an_agent_verifies_merges_from_github_reviews_with_a_read_only_token(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's proof source (issue 13 item 5) asks GitHub which PR merged each step
    (``GET /commits/{sha}/pulls``), its reviews and commits, and judges them under the first
    parent's policy; it only reads."""
    pin = site.github.sha("main")
    assert pin is not None
    number, _ = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    merged = json.loads(site.cli("dev1", "merge", str(number), "-o", "json").stdout)["merge"]

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN_OF["ci-bot"])  # the agent's own, read-only
    src = GitSource(
        str(site.ops.remote), branch="main", cache_root=tmp_path / "agent", history=True
    )
    src.fetch()
    cfg = config.load_project(site.ops.clone).config
    proofs = forgeproofs.for_project(
        cfg, "staging", src.repo, url=src.url, cache_root=tmp_path / "agent"
    )
    assert proofs is not None
    asked = len(site.github.requests)
    verifier = Verifier(src.repo, env="staging", proof_source=proofs)
    verdict = verifier.check(anchor=pin, verified=[pin], revision=merged["sha"])
    assert verdict.verified, verdict.summary()
    proof = dict(verdict.proofs)[merged["sha"]]
    assert proof == f"GitHub PR #{number} (merge commit) approved by rm1, rm2"
    calls = site.github.requests[asked:]
    assert {r.method for r in calls} == {"GET"}
    assert any(r.url.path.endswith(f"/commits/{merged['sha']}/pulls") for r in calls)

    # A direct push to main: GitHub lists no merged PR for it (only open ones, if any).
    other = tmp_path / "pusher"
    git("clone", "-q", str(site.ops.remote), str(other), cwd=tmp_path)
    kz = other / "overlays/staging/kustomization.yaml"
    kz.write_text(kz.read_text().replace("value: info", "value: debug"))
    git("-c", "user.name=rm1", "-c", "user.email=rm1@example.com", "commit", "-qam", "x", cwd=other)
    git("push", "-q", "origin", "HEAD:main", cwd=other)
    src.fetch()
    pushed = git("rev-parse", "HEAD", cwd=other)
    refused = verifier.check(anchor=merged["sha"], verified=[pin, merged["sha"]], revision=pushed)
    assert not refused.verified and refused.offence is not None
    assert refused.offence.commit == pushed
    assert "no pull request on GitHub merged it (a direct push" in refused.offence.reason
    verifier.close()

    # A restarted agent reads the merge's answer from its cache directory: no request.
    again = forgeproofs.for_project(
        cfg, "staging", src.repo, url=src.url, cache_root=tmp_path / "agent"
    )
    assert again is not None
    asked = len(site.github.requests)
    fresh = Verifier(src.repo, env="staging", proof_source=again)
    assert fresh.check(anchor=pin, verified=[pin], revision=merged["sha"]).verified
    assert len(site.github.requests) == asked and again.lookup.cache.hits == 1
    fresh.close()
