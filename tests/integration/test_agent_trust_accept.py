"""`promote trust ENV R` (DESIGN.md §4): release managers accept an unverified revision
explicitly, after being shown the whole rendered diff from the environment's last verified
revision; the prod agent (real kube-apiserver, real bare Git remote, real GnuPG) deploys it once
enough approvers of prod's policy at that revision have signed, and not before."""

from __future__ import annotations

from typing import Any

import pytest

from promote.cluster import client
from promote.reconcile.agent import Agent
from tests.gitops import GitOpsRepo, git
from tests.helpers import Result, run_cli
from tests.integration.test_agent_trust import (  # noqa: F401  (fixtures)
    _image,
    _push_prod_tag,
    cluster,
    prod_agent,
    repo,
)
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    Keys,
    gpg_keys,
)

pytestmark = pytest.mark.integration


def _trust(ops: GitOpsRepo, keys: Keys, control_plane: Any, *args: str, code: int = 0) -> Result:
    res = run_cli(
        "trust", *args, "--kubeconfig", str(control_plane.kubeconfig), "-C", str(ops.work),
        env={"GNUPGHOME": str(keys.home)},
    )  # fmt: skip
    assert res.code == code, f"exit {res.code}\n{res.stdout}\n{res.stderr}"
    return res


def test_two_release_managers_accept_an_unverified_push_and_the_agent_deploys_it(
    repo: GitOpsRepo,  # noqa: F811
    prod_agent: Agent,  # noqa: F811
    cluster: client.Cluster,  # noqa: F811
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
    control_plane: Any,
) -> None:
    verified = git(repo.work, "rev-parse", "HEAD")
    before = _image(cluster, namespace)
    pushed = _push_prod_tag(repo, "v4.4.4", "hotfix nobody approved")
    assert prod_agent.run_pass().revision == verified  # Unverified: prod stays at V

    # A developer is not an approver of prod: nothing is signed.
    refused = _trust(repo, gpg_keys, control_plane, "prod", pushed, "--as", "dev1", code=2)
    assert "not an approver of prod" in refused.stderr

    first = _trust(repo, gpg_keys, control_plane, "prod", pushed, "--as", "rm1")
    # The whole rendered diff from V (read from prod's status ConfigMap), then the signature.
    assert f"from {verified[:12]}" in first.stdout and "overlays/prod/kustomization.yaml" in (
        first.stdout
    )
    assert "registry.example.com/acme/web-app:v4.4.4" in first.stdout
    assert "1 of 2" in first.stdout and "rm2" in first.stdout
    one = prod_agent.run_pass()
    assert one.revision == verified and _image(cluster, namespace) == before  # not enough

    second = _trust(repo, gpg_keys, control_plane, "prod", pushed, "--as", "rm2", "-o", "json")
    doc = second.json()
    assert doc["base"] == verified and doc["revision"] == pushed and doc["accepted"] is True
    assert doc["counted"] == ["rm1", "rm2"] and doc["required"] == 2
    assert any("v4.4.4" in o["text"] for o in doc["rendered"]["diff"])

    report = prod_agent.run_pass()
    assert report.error is None, report.error
    assert report.revision == pushed and report.verdict is not None
    assert report.verdict.verified, report.verdict.summary()
    assert _image(cluster, namespace).endswith(":v4.4.4")


def test_trust_from_an_explicit_base_and_a_revision_not_on_main(
    repo: GitOpsRepo,  # noqa: F811
    gpg_keys: Keys,  # noqa: F811
    control_plane: Any,
) -> None:
    base = git(repo.work, "rev-parse", "HEAD")
    pushed = _push_prod_tag(repo, "v4.5.0")
    same = _trust(repo, gpg_keys, control_plane, "prod", base, "--from", base, "--as", "rm1",
                  code=2)  # fmt: skip
    assert "nothing to accept" in same.stderr
    git(repo.work, "checkout", "-q", "-b", "elsewhere", base)
    repo.edit("overlays/prod/kustomization.yaml", "newTag: v1.7.5", "newTag: v0.0.1")
    git(repo.work, "commit", "-q", "-am", "not on main")
    stray = git(repo.work, "rev-parse", "HEAD")
    off = _trust(repo, gpg_keys, control_plane, "prod", stray, "--from", base, "--as", "rm1",
                 code=2)  # fmt: skip
    assert "not on main" in off.stderr
    ok = _trust(repo, gpg_keys, control_plane, "prod", pushed, "--from", base, "--as", "rm1")
    assert f"from {base[:12]}" in ok.stdout
