"""The agent verifies (issue 13 finding 2, DESIGN.md §4): a prod agent against the real
kube-apiserver, a real bare Git remote and real GnuPG signatures. Only changes approved under
the policy of their first parent reach prod; anything else leaves prod at its last verified
revision, reported Unverified with an Event and a metric."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.forge import base as forge_base
from promote.promotion import engine, propose, releases, review, setimage
from promote.reconcile import factory
from promote.reconcile import status as status_mod
from promote.reconcile.agent import Agent
from promote.secrets import gpg
from tests.gitops import GitOpsRepo, git, make_repo
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    Keys,
    gpg_keys,
    install_keys,
)

pytestmark = pytest.mark.integration
PROD_KZ = "overlays/prod/kustomization.yaml"


@pytest.fixture
def repo(tmp_path: Path, namespace: str, gpg_keys: Keys) -> GitOpsRepo:  # noqa: F811
    made = make_repo(tmp_path, namespace_map={"prod": namespace})
    install_keys(made.work, gpg_keys, ("rm1", "rm2", "dev1"))  # dev1 opens PRs
    made.commit_all("release managers' and a developer's keys")
    return made


@pytest.fixture
def cluster(control_plane: Any) -> client.Cluster:
    return client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))


@pytest.fixture
def prod_agent(repo: GitOpsRepo, cluster: client.Cluster) -> Iterator[Agent]:
    """The prod agent, trust pinned at the repository's current main."""
    pin = git(repo.work, "rev-parse", "HEAD")
    project = config.load_project(repo.work)
    ov = factory.Overrides(trust_from=pin)
    agent = factory.build_agent(project, "prod", ov, cluster=cluster)
    first = agent.run_pass()
    assert first.error is None and first.revision == pin, first.error
    yield agent
    agent.cache.stop()


def _image(cluster: client.Cluster, ns: str, name: str = "web-app") -> str:
    dep = cluster.get(cluster.resource("apps/v1", "Deployment"), ns, name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def _events(cluster: client.Cluster, ns: str, reason: str) -> list[dict[str, Any]]:
    items = cluster.request("GET", f"/api/v1/namespaces/{ns}/events")["items"]
    return [e for e in items if e["reason"] == reason]


def _prod_tag(repo: GitOpsRepo) -> str:
    text = (repo.work / PROD_KZ).read_text()
    return text.split("newTag:", 1)[1].split()[0]


def _push_prod_tag(repo: GitOpsRepo, tag: str, message: str = "hotfix") -> str:
    repo.edit(PROD_KZ, f"newTag: {_prod_tag(repo)}", f"newTag: {tag}")
    return repo.commit_all(message)


def test_direct_push_to_prod_is_not_deployed_and_reported_unverified(
    repo: GitOpsRepo, prod_agent: Agent, cluster: client.Cluster, namespace: str
) -> None:
    verified = git(repo.work, "rev-parse", "HEAD")
    before = _image(cluster, namespace)
    pushed = _push_prod_tag(repo, "v9.9.9-evil")

    report = prod_agent.run_pass()
    assert report.error is None, report.error
    assert report.head == pushed and report.revision == verified
    assert _image(cluster, namespace) == before  # nothing new applied
    st = status_mod.read(cluster, env="prod", namespace=namespace)
    assert st is not None and st.sync == "Unverified" and st.revision == verified
    assert st.unverified is not None and st.unverified["commit"] == pushed
    assert st.unverified["files"] == [PROD_KZ]
    assert st.trust is not None and st.trust["verified"] == verified
    events = _events(cluster, namespace, "Unverified")
    assert len(events) == 1 and pushed[:12] in events[0]["message"]
    metrics = prod_agent.metrics.exposition().decode()
    assert 'promote_unverified_revision{env="prod"} 1.0' in metrics

    # Self-heal keeps V: a hand edit is reverted to the verified revision, not to the push.
    deployments = cluster.resource("apps/v1", "Deployment")
    replicas = cluster.get(deployments, namespace, "web-app")["spec"]["replicas"]
    cluster.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web-app",
        body={"spec": {"replicas": replicas + 4}},
        content_type="application/merge-patch+json",
    )
    again = prod_agent.run_pass()
    assert again.revision == verified and _image(cluster, namespace) == before
    assert cluster.get(deployments, namespace, "web-app")["spec"]["replicas"] == replicas
    assert len(_events(cluster, namespace, "Unverified")) == 1  # one Event per refused head

    # Recovery: a revert brings prod's inputs back to a verified state; the agent moves on.
    git(repo.work, "revert", "--no-edit", pushed)
    git(repo.work, "push", "-q", "origin", "HEAD:main")
    reverted = git(repo.work, "rev-parse", "HEAD")
    healed = prod_agent.run_pass()
    assert healed.error is None and healed.revision == reverted and healed.verdict is not None
    assert healed.verdict.verified
    st = status_mod.read(cluster, env="prod", namespace=namespace)
    assert st is not None and st.sync != "Unverified" and st.unverified is None


def test_approved_promotion_is_deployed(
    repo: GitOpsRepo,
    prod_agent: Agent,
    cluster: client.Cluster,
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    signer = gpg.Signer(gnupghome=str(gpg_keys.home))
    with engine.session(repo.work) as s:
        plan = propose.plan_promotion(s, "prod")
        pr = propose.open_pull_request(s, plan, opener="dev1", signer=signer)
    for name in ("rm1", "rm2"):
        with engine.session(repo.work) as s:
            review.approve(s, pr.number, approver=name, signer=signer)
    with engine.session(repo.work) as s:
        _, merged, _ = review.merge(s, pr.number, by="rm2")

    report = prod_agent.run_pass()
    assert report.error is None, report.error
    assert report.revision == merged.sha and report.verdict is not None
    assert report.verdict.verified, report.verdict.summary()
    assert any(f"PR #{pr.number} approved by" in p for _, p in report.verdict.proofs)
    assert _image(cluster, namespace).endswith(":v2.3.2")


def _approved_prod_pr(repo: GitOpsRepo, keys: Keys) -> Any:
    signer = gpg.Signer(gnupghome=str(keys.home))
    with engine.session(repo.work) as s:
        plan = propose.plan_promotion(s, "prod")
        pr = propose.open_pull_request(s, plan, opener="dev1", signer=signer)
    for name in ("rm1", "rm2"):
        with engine.session(repo.work) as s:
            review.approve(s, pr.number, approver=name, signer=signer)
    return pr


def test_merge_commit_hiding_a_change_is_refused_and_a_plain_one_verified(
    repo: GitOpsRepo,
    prod_agent: Agent,
    cluster: client.Cluster,
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    pr = _approved_prod_pr(repo, gpg_keys)
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    main = repo.commit_all("dev moves on: the PR merges with a merge commit")
    before = _image(cluster, namespace)
    # A merge of the approved head whose tree carries one more change than the plain merge.
    git(repo.work, "fetch", "-q", "origin")
    git(repo.work, "merge", "-q", "--no-ff", "--no-commit", pr.head_sha)
    repo.edit(PROD_KZ, "newTag: v1.7.5", "newTag: v1.7.6-hidden")
    hidden = repo.commit_all(f"Merge PR #{pr.number}")
    report = prod_agent.run_pass()
    assert report.verdict is not None and not report.verdict.verified
    assert report.verdict.offence is not None and report.verdict.offence.commit == hidden
    assert "not the plain merge" in report.verdict.offence.reason
    assert _image(cluster, namespace) == before

    git(repo.work, "reset", "-q", "--hard", main)
    git(repo.work, "push", "-q", "-f", "origin", "HEAD:main")  # the hidden merge is gone
    with engine.session(repo.work) as s:
        _, merged, _ = review.merge(s, pr.number, by="rm2")
    assert merged.method == "merge-commit"
    report = prod_agent.run_pass()
    assert report.verdict is not None and report.verdict.verified, report.verdict.summary()
    assert report.revision == merged.sha and _image(cluster, namespace).endswith(":v2.3.2")


def _sign_approval(repo: GitOpsRepo, keys: Keys, number: int, name: str) -> None:
    """``name``'s approval of the PR's head for prod, recorded through the forge directly (as a
    forged record would be: `promote approve` refuses some of these up front)."""
    with engine.session(repo.work) as s:
        pr = s.forge.get(number)
        at = datetime.now(UTC).replace(microsecond=0)
        payload = forge_base.approval_payload(
            pr=number, env="prod", head_sha=pr.head_sha, approver=name, at=at, scope=["prod"]
        )
        signer = gpg.Signer(gnupghome=str(keys.home))
        sig = signer.sign(payload.encode(), fingerprints=[keys.fingerprints[name]], who=name)
        approval = forge_base.Approval(
            name, number, "prod", pr.head_sha, at, "", payload, sig, ("prod",)
        )
        s.forge.approve(number, approval)


@pytest.mark.parametrize(
    ("signer", "why"),
    [(None, "is not signed"), ("rm1", "signed commit")],
    ids=["unsigned-commit", "approver-signed-a-commit"],
)
def test_approved_head_carrying_a_commit_the_merge_would_refuse_is_not_deployed(
    repo: GitOpsRepo,
    prod_agent: Agent,
    cluster: client.Cluster,
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
    signer: str | None,
    why: str,
) -> None:
    """The agent judges a head as `promote merge` does: a commit on the PR that is neither
    promote's own nor signed by a registered key refuses it; whoever signed a commit of it
    does not count as an approver. Main pushed to such a head by hand is not deployed."""
    keyring = gpg.Signer(gnupghome=str(gpg_keys.home))
    with engine.session(repo.work) as s:
        pr = propose.open_pull_request(
            s, propose.plan_promotion(s, "prod"), opener="dev1", signer=keyring
        )
    git(repo.work, "fetch", "-q", "origin")
    git(repo.work, "checkout", "-q", "-B", "extra", pr.head_sha)
    repo.edit(PROD_KZ, "value: warn", "value: debug")
    git(repo.work, "add", "-A")
    sign = [f"-S{gpg_keys.fingerprints[signer]}"] if signer else []
    subprocess.run(
        ["git", "commit", "-q", *sign, "-m", "quieter logs"], cwd=repo.work, check=True,
        env={**_environ(), "GNUPGHOME": str(gpg_keys.home)}, capture_output=True,
    )  # fmt: skip
    head = git(repo.work, "rev-parse", "HEAD")
    git(repo.work, "push", "-q", "origin", f"HEAD:refs/heads/{pr.branch}")
    for name in ("rm1", "rm2"):
        _sign_approval(repo, gpg_keys, pr.number, name)
    before = _image(cluster, namespace)
    # Main moved on (dev only), then merged the approved head as `promote merge` would.
    git(repo.work, "checkout", "-q", "main")
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    repo.commit_all("dev moves on")
    git(repo.work, "merge", "-q", "--no-ff", "-m", f"Merge PR #{pr.number}", head)
    merged = git(repo.work, "rev-parse", "HEAD")
    git(repo.work, "push", "-q", "origin", "HEAD:main")

    report = prod_agent.run_pass()
    assert report.head == merged and report.verdict is not None
    assert not report.verdict.verified, report.verdict.summary()
    offence = report.verdict.offence
    assert offence is not None and offence.commit == merged
    assert f"PR #{pr.number}" in offence.reason and why in offence.reason, offence.reason
    assert _image(cluster, namespace) == before


def test_dev_only_push_never_blocks_prod(
    repo: GitOpsRepo, prod_agent: Agent, cluster: client.Cluster, namespace: str
) -> None:
    with engine.session(repo.work) as s:
        _, commit = setimage.push_images(s, "dev", ["web-app=v7.0.0"])
    assert commit
    report = prod_agent.run_pass()
    assert report.error is None and report.revision == commit and report.head == commit
    assert report.verdict is not None and report.verdict.verified
    st = status_mod.read(cluster, env="prod", namespace=namespace)
    assert st is not None and st.sync != "Unverified"


def test_a_rejection_pushed_to_main_never_makes_prod_unverified(
    repo: GitOpsRepo, prod_agent: Agent, cluster: client.Cluster, namespace: str
) -> None:
    placed = releases.reject(
        repo.work, "web-app", "v6.6.6", reason="bad", now=datetime.now(UTC), who="rm1"
    )
    assert placed.commit and placed.record.path.startswith("releases/rejected/")
    report = prod_agent.run_pass()
    assert report.error is None and report.revision == placed.commit
    assert report.verdict is not None and report.verdict.verified
    st = status_mod.read(cluster, env="prod", namespace=namespace)
    assert st is not None and st.sync != "Unverified"


def test_push_lowering_prod_required_approvals_cannot_verify_itself(
    repo: GitOpsRepo, prod_agent: Agent, cluster: client.Cluster, namespace: str
) -> None:
    before = _image(cluster, namespace)
    repo.edit("environments/prod.yaml", "required: 2", "required: 0")
    first = repo.commit_all("prod needs no approvals")
    pushed = _push_prod_tag(repo, "v6.6.6", "and now a new tag")
    report = prod_agent.run_pass()
    assert report.head == pushed and report.verdict is not None
    assert not report.verdict.verified
    offence = report.verdict.offence
    assert offence is not None and offence.commit == first
    assert offence.files == ("environments/prod.yaml",)
    assert _image(cluster, namespace) == before


def test_commit_signed_by_a_trusted_signer_is_deployed(
    repo: GitOpsRepo,
    prod_agent: Agent,
    cluster: client.Cluster,
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    # Trusting a signer is itself a change to prod: it goes through the policy (here: the
    # revision is accepted by trust from a fresh pin, as an operator would after review).
    (repo.work / "keys/ci").mkdir()
    (repo.work / "keys/ci/ci.asc").write_text(gpg_keys.public["rm3"])
    repo.edit("environments/prod.yaml", "  allowSelfApproval: false\n",
              "  allowSelfApproval: false\n  trustedSigners: [keys/ci/ci.asc]\n")  # fmt: skip
    trusted = repo.commit_all("ci may sign prod changes")
    project = config.load_project(repo.work)
    agent = factory.build_agent(
        project, "prod", factory.Overrides(trust_from=trusted), cluster=cluster
    )
    try:
        assert agent.run_pass().revision == trusted
        repo.edit(PROD_KZ, f"newTag: {_prod_tag(repo)}", "newTag: v5.5.5")
        git(repo.work, "add", "-A")
        env = {"GNUPGHOME": str(gpg_keys.home)}
        subprocess.run(
            ["git", "commit", "-q", f"-S{gpg_keys.fingerprints['rm3']}", "-m", "signed by ci"],
            cwd=repo.work, env={**_environ(), **env}, check=True, capture_output=True,
        )  # fmt: skip
        git(repo.work, "push", "-q", "origin", "HEAD:main")
        signed = git(repo.work, "rev-parse", "HEAD")
        report = agent.run_pass()
        assert report.verdict is not None and report.verdict.verified, report.verdict
        assert report.revision == signed and _image(cluster, namespace).endswith(":v5.5.5")
        # The same change, unsigned, is refused.
        _push_prod_tag(repo, "v5.5.6", "unsigned")
        assert agent.run_pass().revision == signed
    finally:
        agent.cache.stop()


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
