"""Flows that change what an approved environment reads go through pull requests (issue 13,
item 6): `secrets set|rotate` of such an environment and `keys add|remove|sync` (governance:
keys/ and .sops.yaml belong to every environment) open a PR instead of leaving changes for a
plain push; `--no-pr` keeps editing the working tree. Real sops, age, git and the local forge.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

import pytest
from pyrage import x25519

from promote import config
from promote.kustomize import folder
from promote.promotion import governance, scope
from tests.helpers import Result, run_cli
from tests.integration.test_promotion_helpers import GitOps, git, publish

pytestmark = pytest.mark.e2e


@pytest.fixture
def ops(secrets_repo: Path, secrets_home: Path, tmp_path: Path) -> GitOps:
    """The example with age keys for dev and prod (made before trust starts), on a remote."""
    for env in ("dev", "prod"):
        res = run_cli("keys", "init", env, cwd=secrets_repo)
        assert res.code == 0, res.stderr
    ops = publish(secrets_repo, tmp_path)
    identities = secrets_home / ".config/promote/keys"  # found by the repository's folder name
    (identities / ops.clone.name).symlink_to(identities / secrets_repo.name)
    return ops


def cli(ops: GitOps, *args: str, code: int = 0, input: str | None = None) -> Result:
    res = run_cli(*args, "-C", str(ops.clone), input=input, env={"PROMOTE_USER": "dev1"})
    assert res.code == code, f"{args}: exit {res.code}\n{res.stdout}\n{res.stderr}"
    return res


def _all_objects(remote: Path) -> bytes:
    """Every object in the remote, decompressed (blobs, trees, commits, PR records)."""
    return subprocess.run(
        ["git", "--git-dir", str(remote), "cat-file", "--batch", "--batch-all-objects"],
        capture_output=True,
        check=True,
    ).stdout


def _changed(ops: GitOps, base: str, head: str) -> list[str]:
    out = git("diff", "--name-only", base, head, cwd=ops.clone)
    return sorted(out.split())


def test_secrets_set_for_prod_opens_a_pr_holding_only_ciphertext(ops: GitOps) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    main_before = git("ls-remote", str(ops.remote), "refs/heads/main", cwd=ops.clone)
    res = cli(ops, "secrets", "set", "prod", "db", "password=-", "-o", "json", input=canary)
    out = res.json()
    pr = out["pullRequest"]
    assert pr["env"] == "prod" and pr["kind"] == "secrets"
    assert pr["branch"].startswith("promote/prod/")
    assert out["scope"] == ["prod"] and out["keys"] == ["password"]
    # Nothing reached main, nothing is left in the working tree.
    assert git("ls-remote", str(ops.remote), "refs/heads/main", cwd=ops.clone) == main_before
    assert git("status", "--porcelain", cwd=ops.clone) == ""
    git("fetch", "-q", "origin", cwd=ops.clone)
    head = git("rev-parse", f"origin/{pr['branch']}", cwd=ops.clone)
    assert _changed(ops, "origin/main", head) == [
        "overlays/prod/kustomization.yaml",
        "overlays/prod/secrets/db.sops.yaml",
    ]
    stored = git("show", f"{head}:overlays/prod/secrets/db.sops.yaml", cwd=ops.clone)
    assert "password: ENC[AES256_GCM," in stored
    shown = cli(ops, "show", str(pr["number"]), "-o", "json").json()
    assert "overlays/prod/secrets/db.sops.yaml" in shown["pullRequest"]["body"]
    policy = shown["policy"]
    assert not policy["mergeable"] and policy["required"] == 2
    # The value is nowhere: not in any Git object, not in any output or the PR body.
    blobs = _all_objects(ops.remote)
    for form in (canary.encode(), base64.b64encode(canary.encode())):
        assert form not in blobs
    assert canary not in res.stdout + res.stderr + str(shown)


def test_secrets_set_for_dev_edits_the_working_tree_as_before(ops: GitOps) -> None:
    res = cli(ops, "secrets", "set", "dev", "db", "password=-", "-o", "json", input="x")
    assert res.json()["pullRequest"] is None and res.json()["scope"] == ["dev"]
    status = git("status", "--porcelain", cwd=ops.clone)
    assert "overlays/dev/secrets/" in status and "overlays/dev/kustomization.yaml" in status
    assert cli(ops, "prs", "--state", "all", "-o", "json").json()["pullRequests"] == []


def test_no_pr_keeps_editing_the_working_tree_and_says_what_needs_approval(ops: GitOps) -> None:
    res = cli(ops, "secrets", "set", "prod", "db", "password=-", "--no-pr", input="x")
    assert "prod requires 2 approval(s)" in res.stderr and "--pr" in res.stderr
    assert "overlays/prod/secrets/" in git("status", "--porcelain", cwd=ops.clone)
    assert cli(ops, "prs", "--state", "all", "-o", "json").json()["pullRequests"] == []


def test_keys_changes_are_governance_and_go_through_a_pr_to_every_environment(
    ops: GitOps,
) -> None:
    cli(ops, "secrets", "set", "dev", "db", "password=-", "--pr", input="x")
    [first] = cli(ops, "prs", "-o", "json").json()["pullRequests"]
    assert first["env"] == "dev" and first["kind"] == "secrets"
    newcomer = str(x25519.Identity.generate().to_public())
    out = cli(ops, "keys", "add", "dev", newcomer, "-o", "json").json()
    pr = out["pullRequest"]
    assert pr["kind"] == "keys" and pr["env"] == "prod"  # the strictest environment
    assert out["scope"] == ["dev", "staging", "prod"]
    head = git("rev-parse", f"origin/{pr['branch']}", cwd=ops.clone)
    assert _changed(ops, "origin/main", head) == [".sops.yaml", "keys/dev/age.txt"]
    assert git("status", "--porcelain", cwd=ops.clone) == ""
    assert cli(ops, "keys", "sync", "-o", "json").json()["pullRequest"] is None  # nothing to do


def test_secrets_rotate_for_prod_opens_a_pr(ops: GitOps) -> None:
    cli(ops, "secrets", "set", "prod", "db", "password=-", "--no-pr", input="x")
    git("add", "-A", cwd=ops.clone)
    git("commit", "-qm", "prod's first secret, before trust starts", cwd=ops.clone)
    git("push", "-q", "origin", "HEAD:main", cwd=ops.clone)
    out = cli(ops, "secrets", "rotate", "prod", "-o", "json").json()
    pr = out["pullRequest"]
    assert pr["env"] == "prod" and pr["kind"] == "secrets"
    head = git("rev-parse", f"origin/{pr['branch']}", cwd=ops.clone)
    assert _changed(ops, "origin/main", head) == ["overlays/prod/secrets/db.sops.yaml"]


def test_set_image_dev_touches_only_dev_so_it_never_needs_staging_or_prod_approvals(
    ops: GitOps,
) -> None:
    pushed = cli(ops, "set-image", "dev", "web-app=v3.0.0", "-o", "json").json()
    assert pushed["commit"] and pushed["pullRequest"] is None
    files = _changed(ops, f"{pushed['commit']}^", pushed["commit"])
    assert files == ["overlays/dev/kustomization.yaml"]
    project = config.load_project(ops.clone)
    assert scope.affected(files, folder.layout(project)).envs == ("dev",)
    decision = governance.decide(project, files)
    assert decision.env == "dev" and decision.required == 0 and not decision.needs_pr
    staging_policy = governance.decide(project, ["overlays/staging/kustomization.yaml"])
    assert staging_policy.needs_pr and staging_policy.env == "staging"
    assert governance.decide(project, [".sops.yaml"]).env == "prod"
