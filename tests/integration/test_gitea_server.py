"""Smoke tests: the ``gitea`` fixture is a real, provisioned Gitea (REST API + git over HTTP)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.gitea_fixture import GiteaServer

# Harmless if tests/conftest.py registers the plugin as well. Importing the module here at run
# time (instead of only for typing) would stop pytest from rewriting its asserts.
pytest_plugins = ["tests.gitea_fixture"]

pytestmark = pytest.mark.integration


def test_version_endpoint(gitea: GiteaServer) -> None:
    r = httpx.get(f"{gitea.api_url}/version", timeout=10)
    assert r.status_code == 200
    version = r.json()["version"]
    assert version == gitea.version
    assert version.startswith("1.")


@pytest.mark.parametrize("who", ["promote-admin", "rm1", "rm2", "dev1"])
def test_each_token_authenticates(gitea: GiteaServer, who: str) -> None:
    user = gitea.users[who]
    r = httpx.get(f"{gitea.api_url}/user", headers=user.auth_headers, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["login"] == who
    assert body["is_admin"] is (who == "promote-admin")
    # a wrong token is refused: the server really checks
    bad = httpx.get(
        f"{gitea.api_url}/user", headers={"Authorization": "token " + "0" * 40}, timeout=10
    )
    assert bad.status_code == 401


def test_password_basic_auth(gitea: GiteaServer) -> None:
    r = httpx.get(f"{gitea.api_url}/user", auth=(gitea.rm1.name, gitea.rm1.password), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["login"] == "rm1"


def test_gitops_repo_and_collaborators(gitea: GiteaServer) -> None:
    with gitea.api() as c:
        r = c.get(f"/repos/{gitea.repo}")
        assert r.status_code == 200, r.text
        assert r.json()["full_name"] == "platform/gitops"
        for who in ("rm1", "rm2", "dev1"):
            p = c.get(f"/repos/{gitea.repo}/collaborators/{who}/permission")
            assert p.status_code == 200, p.text
            assert p.json()["permission"] == "write"


def test_push_and_clone_over_http(gitea: GiteaServer, tmp_path: Path) -> None:
    repo = gitea.create_repo("smoke-clone")
    layout = tmp_path / "layout"
    (layout / "overlays" / "dev").mkdir(parents=True)
    (layout / "overlays" / "dev" / "kustomization.yaml").write_text("resources: []\n")
    (layout / "promote.yaml").write_text("environments: []\n")
    sha = gitea.push_tree(layout, repo=repo, user="dev1")

    clone = tmp_path / "clone"
    gitea.git(tmp_path, "clone", "--quiet", gitea.clone_url_for("rm2", repo), str(clone))
    assert gitea.git(clone, "rev-parse", "HEAD").strip() == sha
    assert gitea.git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert (clone / "overlays" / "dev" / "kustomization.yaml").read_text() == "resources: []\n"

    # anonymous read of a public repo, and an anonymous push is refused
    anon = tmp_path / "anon"
    gitea.git(tmp_path, "clone", "--quiet", f"{gitea.url}/{repo}.git", str(anon))
    proc = subprocess.run(
        ["git", "-c", "credential.helper=", "push", "origin", "HEAD:refs/heads/nope"],
        cwd=anon,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0

    # the commit is visible through the API too
    with gitea.api("rm1") as c:
        r = c.get(f"/repos/{repo}/branches/main")
        assert r.status_code == 200, r.text
        assert r.json()["commit"]["id"] == sha


def test_gitops_repo_push_tree_on_main(gitea: GiteaServer, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.md").write_text("gitops\n")
    sha = gitea.push_tree(tree)
    out = gitea.git(tmp_path, "ls-remote", gitea.clone_url, "refs/heads/main")
    assert out.split()[0] == sha


def test_pull_request_reviewed_approved(gitea: GiteaServer, tmp_path: Path) -> None:
    repo = gitea.create_repo("smoke-pr")
    base = tmp_path / "base"
    (base / "overlays" / "prod").mkdir(parents=True)
    (base / "overlays" / "prod" / "kustomization.yaml").write_text("images: []\n")
    base_sha = gitea.push_tree(base, repo=repo)

    head = tmp_path / "head"
    (head / "overlays" / "prod").mkdir(parents=True)
    (head / "overlays" / "prod" / "kustomization.yaml").write_text(
        "images:\n- name: app\n  newTag: v2\n"
    )
    branch = "promote/prod/abc1234"
    head_sha = gitea.push_tree(
        head, repo=repo, branch=branch, user="dev1", message="Promote app to prod"
    )
    assert head_sha != base_sha

    with gitea.api("dev1") as dev:
        r = dev.post(
            f"/repos/{repo}/pulls",
            json={"base": "main", "head": branch, "title": "Promote to prod", "body": "plan"},
        )
        assert r.status_code == 201, r.text
        pr = r.json()
        number = pr["number"]
        assert pr["head"]["sha"] == head_sha
        assert pr["user"]["login"] == "dev1"

    with gitea.api("rm1") as rm1:
        r = rm1.post(
            f"/repos/{repo}/pulls/{number}/reviews",
            json={"event": "APPROVED", "body": "LGTM", "commit_id": head_sha},
        )
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "APPROVED"

        reviews = rm1.get(f"/repos/{repo}/pulls/{number}/reviews")
        assert reviews.status_code == 200, reviews.text
        approved = [rv for rv in reviews.json() if rv["state"] == "APPROVED"]
        assert [rv["user"]["login"] for rv in approved] == ["rm1"]
        assert approved[0]["commit_id"] == head_sha

    # the author cannot approve their own PR: Gitea enforces it
    with gitea.api("dev1") as dev:
        r = dev.post(
            f"/repos/{repo}/pulls/{number}/reviews", json={"event": "APPROVED", "body": "self"}
        )
        assert r.status_code == 422, r.text


def test_stop_and_start(gitea: GiteaServer) -> None:
    gitea.stop()
    assert not gitea.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gitea.api_url}/version", timeout=5)
    gitea.start()
    assert gitea.running
    r = httpx.get(f"{gitea.api_url}/user", headers=gitea.rm1.auth_headers, timeout=10)
    assert r.status_code == 200
