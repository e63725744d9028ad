"""Promotions as Gitea pull requests and reviews, against a real Gitea (``gitea`` fixture).

Each test gets its own repository holding the example layout (``promote.yaml`` pointing at the
server, staging needing 2 approvals from rm1 and rm2) and a plain clone (no credentials in its
URL or config). ``promote`` runs as a user runs it, with ``GITEA_TOKEN`` set to the token of
whoever acts; no token may ever appear in any output.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from promote import errors
from promote.config import ForgeConfig
from promote.forge import gitea as gitea_forge
from promote.forge.base import PRState
from tests.helpers import Result, copy_example, run_cli

if TYPE_CHECKING:
    from tests.gitea_fixture import GiteaServer

pytestmark = pytest.mark.integration
WRONG_TOKEN = "0badc0ffee" * 4  # the canary of the wrong-token case: never printed either


@dataclass
class Site:
    """One repository on the Gitea server, a user's clone of it and every output seen."""

    gitea: GiteaServer
    repo: str
    clone: Path
    tmp: Path
    outputs: list[str] = field(default_factory=list)

    def token(self, user: str) -> str:
        return self.gitea.users[user].token

    def cli(self, user: str, *args: str, code: int = 0, token: str | None = None) -> Result:
        env = {"GITEA_TOKEN": token or self.token(user), "PROMOTE_LOG_LEVEL": "DEBUG"}
        res = run_cli(*args, "-C", str(self.clone), env=env)  # logs too are checked for tokens
        self.outputs.append(res.stdout + res.stderr)
        assert res.code == code, f"{args} as {user}: exit {res.code}\n{res.stdout}\n{res.stderr}"
        return res

    def pr(self, number: int) -> dict[str, Any]:
        with self.gitea.api("rm1") as c:
            r = c.get(f"/repos/{self.repo}/pulls/{number}")
            assert r.status_code == 200, r.text
            return dict(r.json())

    def push_to_branch(self, branch: str, *, user: str = "dev1") -> str:
        """A developer pushes one more commit to the PR's branch (as `git push` would)."""
        wt = self.tmp / f"push-{uuid.uuid4().hex[:6]}"
        self.gitea.git(
            self.tmp,
            "clone",
            "-q",
            "-b",
            branch,
            self.gitea.clone_url_for(user, self.repo),
            str(wt),
        )
        kz = wt / "overlays/staging/kustomization.yaml"
        kz.write_text(kz.read_text() + "# reviewed again after this\n")
        self.gitea.git(
            wt,
            "-c",
            f"user.name={user}",
            "-c",
            f"user.email={user}@example.com",
            "commit",
            "-qam",
            "tweak after review",
        )
        self.gitea.git(wt, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        sha = self.gitea.git(wt, "rev-parse", "HEAD").strip()
        self.gitea.wait_for_branch(branch, sha, repo=self.repo)
        deadline = time.monotonic() + 30
        while self.pr_head(branch) != sha:  # the PR follows its branch asynchronously
            assert time.monotonic() < deadline, "the PR did not pick up the push"
            time.sleep(0.1)
        return sha

    def pr_head(self, branch: str) -> str:
        with self.gitea.api("rm1") as c:
            pulls = c.get(f"/repos/{self.repo}/pulls", params={"state": "open"}).json()
        return next(p["head"]["sha"] for p in pulls if p["head"]["ref"] == branch)


def _layout(work: Path, gitea: GiteaServer, repo: str) -> Path:
    copy_example(work)
    (work / "promote.yaml").write_text(
        "mainBranch: main\nremote: origin\n"
        f"forge: {{type: gitea, url: '{gitea.url}', repo: {repo}, tokenEnv: GITEA_TOKEN}}\n"
    )
    for env, required in (("staging", 2), ("prod", 2)):
        path = work / f"environments/{env}.yaml"
        text = path.read_text().replace("required: 1", f"required: {required}")
        assert "approvers: [rm1, rm2]" in text
        path.write_text(text)
    return work


@pytest.fixture
def site(gitea: GiteaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.delenv("PROMOTE_USER", raising=False)  # the token says who acts
    monkeypatch.delenv("GITEA_TOKEN", raising=False)
    repo = gitea.create_repo(f"gitops-{uuid.uuid4().hex[:8]}")
    gitea.push_tree(_layout(tmp_path / "work", gitea, repo), repo=repo)
    clone = tmp_path / "clone"
    gitea.git(tmp_path, "clone", "-q", f"{gitea.url}/{repo}.git", str(clone))
    gitea.git(clone, "config", "user.name", "Dev One")
    gitea.git(clone, "config", "user.email", "dev1@example.com")
    s = Site(gitea, repo, clone, tmp_path)
    yield s
    tokens = [u.token for u in gitea.users.values()] + [WRONG_TOKEN]
    for text in [*s.outputs, (clone / ".git/config").read_text()]:
        assert not any(t in text for t in tokens), f"a token leaked into:\n{text}"


def _opened(site: Site, user: str, *args: str) -> tuple[int, str]:
    out = site.cli(user, "to", "staging", *args, "-o", "json").json()
    pr = out["pullRequest"]
    return int(pr["number"]), str(pr["branch"])


def test_promotion_is_a_gitea_pull_request_approved_by_reviews(site: Site) -> None:
    number, branch = _opened(site, "dev1")
    on_gitea = site.pr(number)
    assert on_gitea["user"]["login"] == "dev1" and on_gitea["head"]["ref"] == branch
    assert {lb["name"] for lb in on_gitea["labels"]} == {"promote", "env:staging"}
    assert "| web-app | web-app | v2.3.2 | v2.4.0 |" in on_gitea["body"]
    n = str(number)

    refused = site.cli("dev1", "merge", n, code=3)
    assert "counted: 0 (none). Missing: 2 more from rm1 or rm2" in refused.stderr
    own = site.cli("dev1", "approve", n, code=3)  # the developer's own approval does not count
    assert "opened by dev1" in own.stderr and "self-approval" in own.stderr

    approved = site.cli("rm1", "approve", n, "--comment", "lgtm", "-o", "json").json()
    assert approved["approver"] == "rm1" and approved["head"] == on_gitea["head"]["sha"]
    refused = site.cli("dev1", "merge", n, code=3)
    assert "counted: 1 (rm1). Missing: 1 more from rm2" in refused.stderr
    site.cli("rm2", "approve", n)

    moved = site.push_to_branch(branch)  # a push after approval makes both approvals stale
    stale = site.cli("dev1", "merge", n, "-o", "json", code=3).json()
    messages = [e["message"] for e in stale["errors"]]
    assert "counted: 0 (none)" in messages[0]
    for who in ("rm1", "rm2"):
        assert any(
            m.startswith(f"{who}: not counted: stale:") and moved[:12] in m for m in messages
        )

    site.cli("rm1", "approve", n)
    site.cli("rm2", "approve", n)
    shown = site.cli("dev1", "show", n, "-o", "json").json()
    assert shown["policy"]["mergeable"] and shown["pullRequest"]["head"] == moved
    merged = site.cli("dev1", "merge", n, "-o", "json").json()
    assert merged["merge"]["approvals"] == ["rm1", "rm2"] and merged["merge"]["by"] == "dev1"
    on_gitea = site.pr(number)
    assert on_gitea["merged"] and on_gitea["merge_commit_sha"] == merged["merge"]["sha"]
    with site.gitea.api("rm1") as c:
        kz = c.get(f"/repos/{site.repo}/raw/overlays/staging/kustomization.yaml?ref=main").text
    assert "newTag: v2.4.0" in kz and "# reviewed again after this" in kz

    history = site.cli("dev1", "history", "staging", "-o", "json").json()["entries"]
    newest = history[0]
    assert newest["kind"] == "promotion" and newest["from"] == "dev"
    assert newest["pr"]["number"] == number and newest["commit"] == merged["merge"]["sha"]
    assert newest["mergedBy"] == "dev1"
    counted = {a["approver"] for a in newest["approvals"] if a["countedAtMerge"]}
    assert counted == {"rm1", "rm2"}
    assert {a["signature"] for a in newest["approvals"]} == {"forge"}
    assert all(a["headSha"] == moved for a in newest["approvals"])
    again = site.cli("rm1", "approve", n, code=1)
    assert "already merged" in again.stderr


def _rename_author_in_body(site: Site, user: str, number: int, new: str) -> None:
    """Anyone with write access can edit a PR's body, promote's metadata comment included."""
    body = site.pr(number)["body"]
    edited = re.sub(r'"author":"[^"]*"', f'"author":"{new}"', body)
    assert edited != body
    with site.gitea.api(user) as c:
        r = c.patch(f"/repos/{site.repo}/pulls/{number}", json={"body": edited})
        assert r.status_code == 201, r.text
    assert site.pr(number)["body"] == edited


def test_the_author_is_who_opened_the_pr_never_what_its_body_says(site: Site) -> None:
    """Issue 13, finding 8: the self-approval rule took the author from the editable body."""
    number, _ = _opened(site, "rm2")
    _rename_author_in_body(site, "rm2", number, "dev1")
    assert site.cli("rm1", "show", str(number), "-o", "json").json()["pullRequest"]["author"] == (
        "rm2"
    )
    own = site.cli("rm2", "approve", str(number), code=3)
    assert f"PR #{number} was opened by rm2" in own.stderr and "self-approval" in own.stderr
    wrong_as = site.cli("rm2", "approve", str(number), "--as", "rm1", code=2)
    assert "the token's user approves" in wrong_as.stderr and "belongs to rm2" in wrong_as.stderr
    site.cli("rm2", "close", str(number))

    # CI (the admin's token) opens a promotion naming rm1 in its body: the forge says who
    # opened it, and a name in the body neither binds nor frees anyone.
    bot, _ = _opened(site, "promote-admin", "--author", "rm1")
    shown = site.cli("rm1", "show", str(bot), "-o", "json").json()["pullRequest"]
    assert shown["author"] == "promote-admin"
    _rename_author_in_body(site, "rm1", bot, "rm2")
    site.cli("rm1", "approve", str(bot))
    site.cli("rm2", "comment", str(bot), "looks right")
    site.cli("rm2", "approve", str(bot))
    merged = site.cli("promote-admin", "merge", str(bot), "-o", "json").json()["merge"]
    assert merged["approvals"] == ["rm1", "rm2"] and merged["head"] == site.pr(bot)["head"]["sha"]


def _forge(site: Site, user: str, monkeypatch: pytest.MonkeyPatch) -> gitea_forge.GiteaForge:
    monkeypatch.setenv("GITEA_TOKEN", site.token(user))
    cfg = ForgeConfig(type="gitea", url=site.gitea.url, repo=site.repo, token_env="GITEA_TOKEN")
    return gitea_forge.GiteaForge.from_config(cfg, main_branch="main")


def _merge_on_gitea(site: Site, user: str, number: int, head: str) -> None:
    with site.gitea.api(user) as c:
        r = c.post(
            f"/repos/{site.repo}/pulls/{number}/merge",
            json={"Do": "merge", "head_commit_id": head, "MergeMessageField": "by hand"},
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("same_head", [False, True])
def test_already_merged_counts_only_when_the_approved_head_was_merged(
    site: Site, monkeypatch: pytest.MonkeyPatch, same_head: bool
) -> None:
    """Issue 13, finding 8: "already merged" counted as success whatever head was merged.

    promote checked the policy at ``approved``; before its merge request reaches Gitea,
    someone merges the PR on Gitea (after pushing another commit, or not).
    """
    number, branch = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    approved = site.pr(number)["head"]["sha"]
    merged_head = approved if same_head else site.push_to_branch(branch)
    _merge_on_gitea(site, "rm1", number, merged_head)
    forge = _forge(site, "dev1", monkeypatch)
    try:
        if same_head:
            result = forge.merge(
                number, head_sha=approved, by="dev1", approvals=("rm1", "rm2"), message="m"
            )
            assert result.head_sha == approved and result.sha == site.pr(number)["merge_commit_sha"]
            return
        with pytest.raises(errors.ForgeError) as info:
            forge.merge(number, head_sha=approved, by="dev1", approvals=("rm1", "rm2"), message="m")
    finally:
        forge.disconnect()
    message = str(info.value)
    assert f"PR #{number} was merged on Gitea" in message and "not the approved head" in message
    assert approved[:12] in message and merged_head[:12] in message


def test_forge_refusal_is_reported_in_its_own_words(site: Site) -> None:
    with site.gitea.api() as c:  # branch protection stricter than promote's policy
        r = c.post(
            f"/repos/{site.repo}/branch_protections",
            json={"rule_name": "main", "required_approvals": 3, "enable_push": True},
        )
        assert r.status_code == 201, r.text
    number, _ = _opened(site, "dev1")
    site.cli("rm1", "approve", str(number))
    site.cli("rm2", "approve", str(number))
    refused = site.cli("dev1", "merge", str(number), code=1)
    assert f"Gitea refused to merge PR #{number}: Does not have enough approvals" in refused.stderr
    assert site.pr(number)["state"] == "open"
    closed = site.cli("dev1", "close", str(number), "-m", "superseded", "-o", "json").json()
    assert closed["pullRequest"]["state"] == "closed"
    assert closed["pullRequest"]["comments"][-1]["text"] == "superseded"


def test_pages_are_followed(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    number, _ = _opened(site, "dev1")
    for i in range(3):
        site.cli("rm1", "comment", str(number), f"note {i}")
    monkeypatch.setenv("GITEA_TOKEN", site.token("rm1"))
    cfg = ForgeConfig(type="gitea", url=site.gitea.url, repo=site.repo, token_env="GITEA_TOKEN")
    forge = gitea_forge.GiteaForge.from_config(cfg, main_branch="main", page_size=1)
    try:
        assert [c.text for c in forge.get(number).comments] == ["note 0", "note 1", "note 2"]
        assert [p.number for p in forge.list(state=PRState.OPEN)] == [number]
        assert forge.list(env="prod") == []
    finally:
        forge.disconnect()


def test_wrong_token_unknown_repository_and_stopped_server(
    site: Site, gitea: GiteaServer, tmp_path: Path
) -> None:
    for args in (("prs",), ("to", "staging", "-o", "json")):
        res = site.cli("dev1", *args, token=WRONG_TOKEN, code=1)
        assert "refused the token in $GITEA_TOKEN (HTTP 401" in res.stdout + res.stderr

    missing = site.cli("dev1", "prs", token=" ", code=1)
    assert "$GITEA_TOKEN is not set or empty" in missing.stderr

    # main names a repository that does not exist (the clone's remote is fine)
    other = gitea.create_repo(f"gitops-{uuid.uuid4().hex[:8]}")
    gitea.push_tree(_layout(tmp_path / "other", gitea, "platform/no-such-repo"), repo=other)
    site.gitea.git(site.clone, "remote", "set-url", "origin", f"{gitea.url}/{other}.git")
    unknown = site.cli("dev1", "prs", code=1)
    assert "has no repository 'platform/no-such-repo', or dev1 cannot see it" in unknown.stderr
    assert "forge.repo" in unknown.stderr

    gitea.stop()
    try:
        down = site.cli("dev1", "prs", "-o", "json", code=1).json()
        assert f"cannot reach Gitea at {gitea.url}" in down["errors"][0]["message"]
        assert down["errors"][0]["code"] == "forge"
    finally:
        gitea.start()


def test_missing_or_unusable_forge_settings_are_config_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITEA_TOKEN", "abc123")
    with pytest.raises(errors.ConfigError, match=r"forge\.url is required"):
        gitea_forge.GiteaForge.from_config(
            ForgeConfig(type="gitea", repo="a/b", token_env="GITEA_TOKEN"), main_branch="main"
        )
    with pytest.raises(errors.ConfigError, match=r"forge\.repo is 'nope'"):
        gitea_forge.GiteaForge.from_config(
            ForgeConfig(type="gitea", url="http://x", repo="nope", token_env="GITEA_TOKEN"),
            main_branch="main",
        )
    with pytest.raises(errors.ConfigError, match=r"forge\.tokenEnv is required"):
        gitea_forge.GiteaForge.from_config(
            ForgeConfig(type="gitea", url="http://x", repo="a/b"), main_branch="main"
        )


def _label_names(site: Site) -> list[str]:
    names: list[str] = []
    with site.gitea.api("rm1") as c:
        for page in range(1, 100):
            got = c.get(f"/repos/{site.repo}/labels", params={"page": page, "limit": 50}).json()
            if not got:
                return names
            names += [lb["name"] for lb in got]
    return names


def test_labels_are_read_whole_with_more_than_a_page_of_them(site: Site) -> None:
    """Issue 14: Gitea pages its label list without Link headers (page/limit and
    X-Total-Count); with more than 50 labels every promotion created another `promote`."""
    with site.gitea.api("rm1") as c:
        for i in range(55):
            r = c.post(f"/repos/{site.repo}/labels", json={"name": f"a-{i:02}", "color": "#00aa00"})
            assert r.status_code == 201, r.text
    first, _ = _opened(site, "dev1")
    site.cli("dev1", "close", str(first))
    _opened(site, "dev1")
    names = _label_names(site)
    assert names.count("promote") == 1 and names.count("env:staging") == 1, sorted(names)


def test_every_list_is_read_whole_with_small_pages(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pulls, comments, reviews and labels, one item a page: nothing is lost or repeated."""
    numbers = []
    for args in ((), ("--app", "api"), ("--app", "web-app")):
        numbers.append(_opened(site, "dev1", *args)[0])
    for i in range(5):
        site.cli("rm1", "comment", str(numbers[0]), f"note {i}")
    for user in ("rm1", "rm2"):
        site.cli(user, "approve", str(numbers[0]))
    monkeypatch.setenv("GITEA_TOKEN", site.token("rm1"))
    cfg = ForgeConfig(type="gitea", url=site.gitea.url, repo=site.repo, token_env="GITEA_TOKEN")
    forge = gitea_forge.GiteaForge.from_config(cfg, main_branch="main", page_size=1)
    try:
        assert [c.text for c in forge.get(numbers[0]).comments] == [f"note {i}" for i in range(5)]
        assert [p.number for p in forge.list()] == sorted(numbers)
        assert sorted(a.approver for a in forge.approvals(numbers[0])) == ["rm1", "rm2"]
        assert len(forge._label_ids(["promote", "env:staging", "env:prod"])) == 3
    finally:
        forge.disconnect()
    assert _label_names(site).count("promote") == 1
