"""Auto-promotion (issue 16 item 5) as a user runs `promote auto` on a real bare Git remote
with real GnuPG keys: staging (autoPromote, 1 approval) gets a PR for what dev's agent
verified, once per version; an environment requiring no approvals gets it merged; a hold
pauses it, a manual rollback places one, and a rejected version is refused. The first test
reads dev's verdict from a real dev agent on the local cluster (clock injected to skip its
soak); the others give dev's status in a file, as `promote to --status-file` does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.reconcile import factory
from tests.gitops import make_deployments_available
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_trust import cli, ops  # noqa: F401  (ops is a fixture)

pytestmark = pytest.mark.integration
STAGING = "environments/staging.yaml"
STAGING_KZ = "overlays/staging/kustomization.yaml"
DEV_VERIFIED = {"web-app": "v2.4.0", "api": "v1.8.0"}


def _auto_staging(ops: GitOps, *, approvals: bool = True) -> None:  # noqa: F811
    path = ops.clone / STAGING
    text = path.read_text() + "autoPromote: true\n"
    if not approvals:
        text = text.replace("  required: 1\n", "  required: 0\n")
    path.write_text(text)
    ops.commit_and_push("staging auto-promotes what dev verified")


def _dev_status(ops: GitOps, verified: dict[str, str] | None) -> None:  # noqa: F811
    status = Path(ops.env["PROMOTE_STATUS_FILE"])
    dev = {"synced": True, "healthy": True, "images": DEV_VERIFIED, "verified": verified}
    status.write_text(json.dumps({"dev": dev}))
    ops.env["PROMOTE_AUTO_STATUS_FILE"] = str(status)


def _auto(ops: GitOps, code: int = 0) -> list[dict[str, Any]]:  # noqa: F811
    found = cli(ops, "auto", "--once", "-o", "json", code=code).json()["results"]
    return list(found)


def test_staging_gets_one_pr_for_what_the_dev_agent_verified(
    ops: GitOps,  # noqa: F811
    control_plane: Any,
    namespace: str,
) -> None:
    dev = ops.clone / "environments/dev.yaml"
    kubeconfig = str(control_plane.kubeconfig)
    dev.write_text(
        dev.read_text()
        .replace("  context: promote-local\n", f"  kubeconfig: {kubeconfig}\n")
        .replace("namespace: dev", f"namespace: {namespace}")
        + "verification:\n  healthyFor: 10m\n"
    )
    kz = ops.clone / "overlays/dev/kustomization.yaml"
    kz.write_text(
        kz.read_text()
        .replace("namespace: dev", f"namespace: {namespace}")
        .replace("- db.sops.yaml\n", "")  # a canary, not real SOPS: this agent decrypts nothing
    )
    _auto_staging(ops)
    ops.env.pop("PROMOTE_STATUS_FILE")  # the agents' status ConfigMaps, not a file

    cluster = client.Cluster(client.connect(kubeconfig=kubeconfig))
    agent = factory.build_agent(
        config.load_project(ops.clone), "dev", factory.Overrides(), cluster=cluster
    )
    try:
        assert agent.run_pass().error is None
        waiting = _auto(ops)
        assert waiting[0]["env"] == "staging" and waiting[0]["outcome"] == "waiting"
        assert "waiting for dev's agent to verify web-app v2.4.0" in waiting[0]["message"]

        make_deployments_available(cluster, namespace, ("web-app", "api"))
        assert agent.run_pass().error is None and agent.status.health == "Healthy"
        later = datetime.now(UTC) + timedelta(minutes=11)
        agent.clock = lambda: later  # past the soak: Verified
        agent.verify_deploy()
        agent.write_status()
        assert agent.status.verification is not None
        assert agent.status.verification["state"] == "Verified"
    finally:
        agent.cache.stop()

    opened = _auto(ops)[0]
    assert opened["outcome"] == "opened" and "waits for 1 approval(s)" in opened["message"]
    pr = opened["pullRequest"]
    assert sorted(pr["images"]) == ["api=v1.8.0", "web-app=v2.4.0"]
    body = cli(ops, "show", str(pr["number"]), "-o", "json").stdout  # the PR body is the plan
    assert "verified after deploy in dev: api v1.8.0, web-app v2.4.0" in body
    again = _auto(ops)[0]  # the next pass finds the same PR: no second one
    assert again["outcome"] == "opened" and again["pullRequest"]["number"] == pr["number"]
    listed = cli(ops, "prs", "-o", "json").json()
    assert len([p for p in listed["pullRequests"] if p["env"] == "staging"]) == 1

    # dev verifies a newer web-app: a PR for it, and the older auto PR is closed (merged
    # after the newer one, it would move staging back).
    cli(ops, "set-image", "dev", "web-app=v2.4.1")
    ops.env["PROMOTE_AUTO_STATUS_FILE"] = str(ops.clone.parent / "dev-status.json")
    verified = {**DEV_VERIFIED, "web-app": "v2.4.1"}
    Path(ops.env["PROMOTE_AUTO_STATUS_FILE"]).write_text(
        json.dumps({"dev": {"verified": verified}})
    )
    newer = _auto(ops)[0]
    assert newer["outcome"] == "opened" and newer["pullRequest"]["number"] != pr["number"]
    old = cli(ops, "show", str(pr["number"]), "-o", "json").stdout
    assert '"state": "closed"' in old and f"Superseded by #{newer['pullRequest']['number']}" in old


def test_an_environment_without_approvals_gets_the_verified_version_merged(
    ops: GitOps,  # noqa: F811
) -> None:
    _auto_staging(ops, approvals=False)
    _dev_status(ops, {"web-app": "v2.4.0", "api": "v1.7.9"})  # api v1.8.0 not verified yet
    assert _auto(ops)[0]["outcome"] == "waiting"
    assert "v2.3.2" in ops.main_file(STAGING_KZ)
    _dev_status(ops, DEV_VERIFIED)
    merged = _auto(ops)[0]
    assert merged["outcome"] == "merged", merged
    assert "v2.4.0" in ops.main_file(STAGING_KZ) and "v1.8.0" in ops.main_file(STAGING_KZ)
    assert _auto(ops)[0]["outcome"] == "up-to-date"


def test_a_hold_pauses_and_a_manual_rollback_places_one(ops: GitOps) -> None:  # noqa: F811
    _auto_staging(ops, approvals=False)
    _dev_status(ops, DEV_VERIFIED)
    cli(ops, "hold", "staging", "--reason", "release freeze")
    held = _auto(ops)[0]
    assert held["outcome"] == "held" and "release freeze" in held["message"]
    assert "v2.3.2" in ops.main_file(STAGING_KZ)
    cli(ops, "resume", "staging")
    assert _auto(ops)[0]["outcome"] == "merged"

    rolled = cli(ops, "rollback", "staging", "-o", "json").json()["pullRequest"]
    assert rolled is not None
    held = _auto(ops)[0]
    assert held["outcome"] == "held"
    assert f"manual rollback (PR #{rolled['number']})" in held["message"]


def test_a_rejected_version_is_refused(ops: GitOps) -> None:  # noqa: F811
    _auto_staging(ops, approvals=False)
    _dev_status(ops, {"api": "v1.8.0"})  # web-app v2.4.0 failed in dev: never verified
    cli(ops, "reject", "web-app", "v2.4.0", "--reason", "leaks memory")
    refused = _auto(ops, code=3)[0]
    assert refused["outcome"] == "refused" and "leaks memory" in refused["message"]
    assert "v2.3.2" in ops.main_file(STAGING_KZ)
    shown = cli(ops, "history", "dev", "-o", "json").json()["rejections"]
    assert [(r["version"], r["reason"]) for r in shown] == [("v2.4.0", "leaks memory")]
    assert "rejected web-app v2.4.0" in cli(ops, "history", "dev").stdout
