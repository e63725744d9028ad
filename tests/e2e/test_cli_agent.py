"""`promote sync`, `promote diff` and `promote status` as a user runs them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from promote.cluster import client
from tests.gitops import make_repo
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e
CANARY = "CANARY-diff-51c0e9"


def test_sync_diff_and_status_through_the_cli(
    tmp_path: Path, namespace: str, control_plane: Any, secrets_home: Path
) -> None:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    key = secrets_home / "dev.agekey"
    assert run_cli("keys", "init", "dev", "--out", str(key), cwd=repo.work).code == 0
    res = run_cli("secrets", "set", "dev", "db", "password=-", cwd=repo.work, input=CANARY)
    assert res.code == 0, res.stderr
    repo.commit_all("secret")
    kc = ["--kubeconfig", str(control_plane.kubeconfig)]
    env = {"SOPS_AGE_KEY_FILE": str(key), "PROMOTE_CACHE": str(tmp_path / "cache")}
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    deployments = cluster.resource("apps/v1", "Deployment")

    # Before any sync: everything differs (exit 4), and a dry run applies nothing.
    diff = run_cli("diff", "dev", *kc, "-o", "json", cwd=repo.work, env=env)
    assert diff.code == 4, diff.stderr
    assert len(diff.json()["differences"]) == 6
    dry = run_cli("sync", "dev", "--dry-run", *kc, cwd=repo.work, env=env)
    assert dry.code == 4, dry.stderr  # differences, as `promote diff` says them
    assert f"would apply Deployment {namespace}/web-app" in dry.stdout
    assert cluster.get(deployments, namespace, "web-app") is None

    sync = run_cli("sync", "dev", *kc, "-o", "json", cwd=repo.work, env=env)
    assert sync.code == 0, sync.stdout + sync.stderr
    assert len(sync.json()["applied"]) == 6
    insync = run_cli("diff", "dev", *kc, cwd=repo.work, env=env)
    assert insync.code == 0 and "in sync" in insync.stdout

    # Someone edits the Secret and a ConfigMap by hand: diff shows where, never the values.
    cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/secrets/db",
        body={"data": {"password": base64.b64encode(b"hand-edited").decode()}},
        content_type="application/merge-patch+json",
    )
    cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/api-config",
        body={"data": {"LOG_LEVEL": "trace"}},
        content_type="application/merge-patch+json",
    )
    drift = run_cli("diff", "dev", *kc, cwd=repo.work, env=env)
    assert drift.code == 4
    assert "-  LOG_LEVEL: trace" in drift.stdout and "+  LOG_LEVEL: debug" in drift.stdout
    assert "password: <changed>" in drift.stdout
    for secret in (
        CANARY,
        "hand-edited",
        base64.b64encode(CANARY.encode()).decode(),
        base64.b64encode(b"hand-edited").decode(),
    ):
        assert secret not in drift.stdout + drift.stderr

    # The release matrix: dev synced at its tag; staging is behind dev.
    status = run_cli("status", *kc, "-o", "json", cwd=repo.work, env=env)
    assert status.code == 0, status.stderr
    web = next(a for a in status.json()["apps"] if a["app"] == "web-app")["environments"]
    assert web["dev"]["tag"] == "v2.4.0" and web["dev"]["sync"] == "Synced"
    assert web["staging"]["tag"] == "v2.3.2" and web["staging"]["behindUpstream"] is True
    assert web["staging"]["sync"] == "Unknown"
    text = run_cli("status", *kc, cwd=repo.work, env=env)
    assert "web-app" in text.stdout and "(behind)" in text.stdout
