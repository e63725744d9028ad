"""The Job check of verification after deploy and the automatic rollback a failed verification
starts (issue 16 items 1-2), on the local cluster with controllers and kwok Nodes.

kwok's Stages (promote/local/stages/stages.yaml) make a Job's Pod succeed, or fail when it is
labelled ``promote.dev/simulate: fail``; a Deployment whose image name holds ``/failing/``
never turns Ready, so with a short progress deadline it goes Degraded and its verification
fails. The clock is injected to skip ``healthyFor`` (no sleeping through it).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.forge import base as forge_base
from promote.promotion import engine
from promote.reconcile import factory
from promote.reconcile import status as status_mod
from promote.reconcile.agent import Agent
from tests.gitops import GitOpsRepo, git, make_repo
from tests.helpers import run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    Keys,
    gpg_keys,
    install_keys,
)

pytestmark = pytest.mark.integration
GOOD, BAD = "registry.example.com/acme/web-app", "registry.example.com/failing/web-app"
RECORD = "releases/rejected/web-app/v2.5.0.yaml"
DEV_KZ = "overlays/dev/kustomization.yaml"
DEADLINE = (
    "- target:\n    kind: Deployment\n  patch: |-\n    - op: add\n"
    "      path: /spec/progressDeadlineSeconds\n      value: 4\n"
)


def _job(label: str) -> str:
    return (
        "  job:\n    timeout: 2m\n    spec:\n      template:\n        metadata:\n"
        f"          labels: {{promote.dev/simulate: {label}}}\n        spec:\n"
        "          containers:\n          - name: smoke\n"
        "            image: registry.example.com/acme/smoke:1\n"
    )


def _repo(tmp_path: Path, ns: str, kubeconfig: str, settings: str) -> GitOpsRepo:
    repo = make_repo(tmp_path, namespace_map={"dev": ns})
    repo.edit(
        "environments/dev.yaml", "  context: promote-local\n", f"  kubeconfig: {kubeconfig}\n"
    )
    repo.edit("environments/dev.yaml", "sync:\n", f"{settings}sync:\n")
    repo.edit("overlays/dev/kustomization.yaml", "patches:\n", f"patches:\n{DEADLINE}")
    repo.commit_all("dev verifies each deploy")
    return repo


@pytest.fixture
def agents(rollout_cluster: Any) -> Iterator[Callable[[GitOpsRepo], Agent]]:
    made: list[Agent] = []
    cluster = client.Cluster(client.connect(kubeconfig=str(rollout_cluster.kubeconfig)))

    def make(repo: GitOpsRepo) -> Agent:
        project = config.load_project(repo.work)
        agent = factory.build_agent(project, "dev", factory.Overrides(), cluster=cluster)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.cache.stop()


def _wait_health(agent: Agent, want: str, timeout_s: float = 90) -> None:
    agent.healing_enabled = True  # watch events drive health between passes, as in the loop
    deadline = time.monotonic() + timeout_s
    while agent.status.health != want and time.monotonic() < deadline:
        if agent.wait_for_heal_work(0.5):
            agent.heal_pending()
    assert agent.status.health == want, (agent.status.health, agent.status.health_details)


def _verify_later(agent: Agent, want: str, timeout_s: float = 60) -> dict[str, Any]:
    """Judge with a clock past healthyFor until the verdict is ``want`` (a Job takes a moment)."""
    later = datetime.now(UTC) + timedelta(hours=2)
    agent.clock = lambda: later
    deadline = time.monotonic() + timeout_s
    agent.verify_deploy()
    while (agent.status.verification or {}).get("state") == "Running":
        assert time.monotonic() < deadline, agent.status.verification
        time.sleep(0.5)
        agent.recheck()
    assert agent.status.verification is not None
    assert agent.status.verification["state"] == want, agent.status.verification
    return agent.status.verification


@pytest.mark.parametrize(("label", "state"), [("none", "Verified"), ("fail", "Failed")])
def test_the_verification_job_must_succeed(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any, agents: Any,
    label: str, state: str,
) -> None:  # fmt: skip
    kubeconfig = str(rollout_cluster.kubeconfig)
    settings = f"verification:\n  healthyFor: 1h\n{_job(label)}"
    agent = agents(_repo(tmp_path, rollout_namespace, kubeconfig, settings))
    assert agent.run_pass().error is None
    _wait_health(agent, "Healthy")
    verdict = _verify_later(agent, state)
    jobs = agent.cluster.request("GET", f"/apis/batch/v1/namespaces/{rollout_namespace}/jobs")
    (job,) = [j for j in jobs["items"] if j["metadata"]["name"].startswith("promote-verify-dev-")]
    name = f"Job {rollout_namespace}/{job['metadata']['name']}"
    if state == "Verified":
        assert f"{name} succeeded" in verdict["reason"]
    else:
        assert f"{name} failed" in verdict["reason"] and "BackoffLimitExceeded" in verdict["reason"]
        assert "container smoke exited 1" in verdict["reason"]
    if state == "Failed":  # the first version: nothing verified to roll back to, said once
        assert agent.status.last_verified is None and agent.pending_rollback is None
        assert agent.status.rollback and "no earlier version" in agent.status.rollback["message"]
    # The Job is no render output: a pass neither prunes it nor counts it as an object.
    assert agent.run_pass().error is None
    assert agent.cluster.get(
        agent.cluster.resource("batch/v1", "Job"), rollout_namespace, job["metadata"]["name"]
    )


def _publish_bad(repo: GitOpsRepo) -> str:
    repo.edit("overlays/dev/kustomization.yaml", f"newName: {GOOD}\n  newTag: v2.4.0",
              f"newName: {BAD}\n  newTag: v2.5.0")  # fmt: skip
    return repo.commit_all("CI: web-app v2.5.0 (a broken build)")


def _main_file(repo: GitOpsRepo, path: str) -> str | None:
    git(repo.work, "fetch", "-q", "origin")
    names = git(repo.work, "ls-tree", "-r", "--name-only", "origin/main").splitlines()
    return git(repo.work, "show", f"origin/main:{path}") if path in names else None


def _fail_verification(agent: Agent, repo: GitOpsRepo) -> str:
    """Verify v2.4.0, publish the broken v2.5.0 and let it fail; the failed revision."""
    assert agent.run_pass().error is None
    _wait_health(agent, "Healthy")
    verified = _verify_later(agent, "Verified")
    assert (
        agent.status.last_verified
        and agent.status.last_verified["revision"] == verified["revision"]
    )
    bad = _publish_bad(repo)
    agent.clock = lambda: datetime.now(UTC)
    assert agent.run_pass().error is None
    _wait_health(agent, "Degraded")
    assert agent.status.verification and agent.status.verification["state"] == "Failed"
    assert agent.pending_rollback is not None and agent.pending_rollback.revision == bad
    return bad


def _rollback_prs(repo: GitOpsRepo) -> list[forge_base.PullRequest]:
    with engine.session(repo.work) as s:
        return [p for p in s.forge.list(env="dev") if p.kind == forge_base.PRKind.ROLLBACK]


def test_a_failed_verification_rejects_the_version_and_opens_one_rollback_pr(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any, agents: Any
) -> None:
    kubeconfig = str(rollout_cluster.kubeconfig)
    repo = _repo(tmp_path, rollout_namespace, kubeconfig, "verification:\n  healthyFor: 1h\n")
    agent = agents(repo)
    bad = _fail_verification(agent, repo)
    failure = agent.pending_rollback
    outcome = agent.roll_back_failed()
    assert outcome is not None and outcome.rejected == ("web-app v2.5.0",) and not outcome.merged
    record = _main_file(repo, RECORD)
    assert record is not None and "verification failed in dev" in record
    assert f"revision {bad[:12]}" in record and "VerificationFailed" in record
    (pr,) = _rollback_prs(repo)
    assert pr.number == outcome.pr and pr.state == forge_base.PRState.OPEN
    assert pr.images == ("web-app=v2.4.0",)
    # The bad version stays deployed until someone merges (dev: no approvals needed).
    assert f"newName: {BAD}" in (_main_file(repo, "overlays/dev/kustomization.yaml") or "")
    st = status_mod.read(agent.cluster, env="dev", namespace=rollout_namespace)
    assert st is not None and st.rollback and st.rollback["pr"] == pr.number
    events = agent.cluster.request("GET", f"/api/v1/namespaces/{rollout_namespace}/events")
    assert any(e["reason"] == "RollbackOpened" for e in events["items"])
    # Rejected: `promote to staging` refuses to move it on (exit 3 naming the rejection).
    refused = run_cli("to", "staging", cwd=repo.work)
    assert refused.code == 3, refused.stdout + refused.stderr
    assert "web-app v2.5.0 was rejected by promote-agent/dev" in refused.stdout + refused.stderr

    # Once per failed revision: a restarted agent (its status read back) does nothing again.
    head = git(repo.work, "rev-parse", "origin/main")
    agent.cache.stop()
    again = agents(repo)
    assert again.run_pass().error is None
    _wait_health(again, "Degraded")
    assert again.pending_rollback is None and again.roll_back_failed() is None
    assert len(_rollback_prs(repo)) == 1
    assert git(repo.work, "ls-remote", "origin", "main").startswith(head)
    # A replica that took the lease mid-rollback, before the status said it was done, acts
    # again: Git holds the record and the open PR, so nothing is pushed or opened twice.
    again.pending_rollback = failure
    repeated = again.roll_back_failed()
    assert repeated is not None and repeated.pr == pr.number and not repeated.merged
    assert len(_rollback_prs(repo)) == 1
    assert git(repo.work, "ls-remote", "origin", "main").startswith(head)
    # Merged by hand (dev needs no approvals): promote's own commit, its name restored too.
    merged = run_cli("merge", str(pr.number), cwd=repo.work)
    assert merged.code == 0, merged.stdout + merged.stderr
    assert f"newName: {GOOD}\n  newTag: v2.4.0" in (_main_file(repo, DEV_KZ) or "")


def test_rollback_auto_merges_and_the_agent_deploys_the_verified_version(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any, agents: Any
) -> None:
    kubeconfig = str(rollout_cluster.kubeconfig)
    settings = "verification:\n  healthyFor: 1h\nrollback: auto\n"
    repo = _repo(tmp_path, rollout_namespace, kubeconfig, settings)
    agent = agents(repo)
    _fail_verification(agent, repo)
    outcome = agent.roll_back_failed()
    assert outcome is not None and outcome.merged, outcome
    (pr,) = _rollback_prs(repo)
    assert pr.state == forge_base.PRState.MERGED
    overlay = _main_file(repo, "overlays/dev/kustomization.yaml") or ""
    assert f"newName: {GOOD}\n  newTag: v2.4.0" in overlay
    assert _main_file(repo, RECORD) is not None
    assert agent.run_pass().error is None
    _wait_health(agent, "Healthy")
    dep = agent.cluster.get(
        agent.cluster.resource("apps/v1", "Deployment"), rollout_namespace, "web-app"
    )
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"{GOOD}:v2.4.0"


STAGING_KZ = "overlays/staging/kustomization.yaml"


def _only_key(keys: Keys, name: str, home: Path) -> Path:
    """A GNUPGHOME holding ``name``'s secret key alone (the agent's keyring)."""
    home.mkdir(mode=0o700)
    exported = subprocess.run(
        ["gpg", "--homedir", str(keys.home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", "--export-secret-keys", keys.fingerprints[name]],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"], input=exported,
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return home


def test_rollback_auto_in_an_environment_requiring_approvals_is_verified_by_its_agent(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any, agents: Any,
    gpg_keys: Keys, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:  # fmt: skip
    """staging needs one approval: the bad version arrives verified (a commit signed by a
    trusted signer: promote's own PRs move tags, not the image name kwok fails on); the
    agent's rollback PR is merged without approvals, and the staging agent deploys it because
    its inputs equal the last verified revision's (the trust chain's rule), not Unverified."""
    kubeconfig = str(rollout_cluster.kubeconfig)
    repo = make_repo(tmp_path, namespace_map={"staging": rollout_namespace})
    install_keys(repo.work, gpg_keys, ("rm1", "rm2", "dev1"))
    repo.edit("environments/staging.yaml", "  context: promote-local\n",
              f"  kubeconfig: {kubeconfig}\n")  # fmt: skip
    repo.edit("environments/staging.yaml", "sync:\n",
              "verification:\n  healthyFor: 1h\nrollback: auto\nsync:\n")  # fmt: skip
    repo.edit(STAGING_KZ, "patches:\n", f"patches:\n{DEADLINE}")
    (repo.work / "keys/ci").mkdir()
    (repo.work / "keys/ci/ci.asc").write_text(gpg_keys.public["rm3"])
    repo.edit("environments/staging.yaml", "  allowSelfApproval: false\n",
              "  allowSelfApproval: false\n  trustedSigners: [keys/ci/ci.asc]\n")  # fmt: skip
    pin = repo.commit_all("staging verifies and rolls back by itself")
    project = config.load_project(repo.work)
    agent = factory.build_agent(project, "staging", factory.Overrides(trust_from=pin),
                                cluster=agents(repo).cluster)  # fmt: skip
    try:
        assert agent.run_pass().error is None
        _wait_health(agent, "Healthy")
        _verify_later(agent, "Verified")
        # The broken build reaches staging verified: a commit signed by a trusted signer.
        good = f"newName: {GOOD}\n  newTag: v2.3.2"
        repo.edit(STAGING_KZ, good, f"newName: {BAD}\n  newTag: v2.5.0")
        git(repo.work, "add", "-A")
        subprocess.run(
            ["git", "commit", "-q", f"-S{gpg_keys.fingerprints['rm3']}", "-m", "signed by ci"],
            cwd=repo.work, env={**os.environ, "GNUPGHOME": str(gpg_keys.home)},
            check=True, capture_output=True,
        )  # fmt: skip
        git(repo.work, "push", "-q", "origin", "HEAD:main")
        agent.clock = lambda: datetime.now(UTC)
        report = agent.run_pass()
        assert report.error is None and report.verdict and report.verdict.verified
        _wait_health(agent, "Degraded")
        assert agent.pending_rollback is not None

        monkeypatch.setenv("GNUPGHOME", str(_only_key(gpg_keys, "dev1", tmp_path / "agent-gpg")))
        outcome = agent.roll_back_failed()
        assert outcome is not None and outcome.merged, outcome
        report = agent.run_pass()
        assert report.error is None and report.verdict is not None
        assert report.verdict.verified, report.verdict.summary()
        assert agent.status.unverified is None
        dep = agent.cluster.get(
            agent.cluster.resource("apps/v1", "Deployment"), rollout_namespace, "web-app"
        )
        assert dep is not None and GOOD in dep["spec"]["template"]["spec"]["containers"][0]["image"]
    finally:
        agent.cache.stop()


def test_after_an_automatic_rollback_dev_verifies_the_good_version_and_rolls_back_no_more(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any, agents: Any
) -> None:
    """The failed rollout's ProgressDeadlineExceeded, still on the Deployment for a moment
    after the rollback, must not fail the version the rollback restores (nor roll back again):
    its verdict is judged from its own rollout."""
    kubeconfig = str(rollout_cluster.kubeconfig)
    settings = "verification:\n  healthyFor: 1h\nrollback: auto\n"
    repo = _repo(tmp_path, rollout_namespace, kubeconfig, settings)
    agent = agents(repo)
    _fail_verification(agent, repo)
    assert (outcome := agent.roll_back_failed()) is not None and outcome.merged, outcome
    assert agent.run_pass().error is None
    agent.healing_enabled = True  # every watch event judged, as in the loop
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (agent.status.health != "Healthy" or len(seen) < 40):
        if agent.wait_for_heal_work(0.25):
            agent.heal_pending()
        seen.append((str(agent.status.health), str((agent.status.verification or {})["state"])))
    assert agent.status.health == "Healthy", agent.status.health_details
    assert "Failed" not in {state for _, state in seen}, (seen, agent.status.verification)
    assert agent.pending_rollback is None and agent.roll_back_failed() is None
    verdict = _verify_later(agent, "Verified")
    assert verdict["images"]["web-app"] == "v2.4.0"
    events = agent.cluster.request("GET", f"/api/v1/namespaces/{rollout_namespace}/events")
    failed = [e["message"] for e in events["items"] if e["reason"] == "VerificationFailed"]
    assert len(failed) == 1 and "web-app=v2.5.0" in failed[0], failed
    assert len(_rollback_prs(repo)) == 1
