"""Verification after deploy (issue 16 item 1) on the local cluster with controllers and kwok
Nodes: the dev agent applies, the Deployments really roll out, and the verdict goes Running
-> Verified in the status ConfigMap, /metrics and an Event. The clock is injected to skip the
hour of healthy running it asks for (no sleeping through it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.reconcile import factory
from promote.reconcile import status as status_mod
from tests.gitops import make_repo

pytestmark = pytest.mark.integration


def test_new_images_are_verified_after_running_healthy_for_the_set_time(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any
) -> None:
    repo = make_repo(tmp_path, namespace_map={"dev": rollout_namespace})
    kubeconfig = str(rollout_cluster.kubeconfig)
    repo.edit(
        "environments/dev.yaml", "  context: promote-local\n", f"  kubeconfig: {kubeconfig}\n"
    )
    repo.edit("environments/dev.yaml", "sync:\n", "verification:\n  healthyFor: 1h\nsync:\n")
    repo.commit_all("dev verifies each deploy: healthy for an hour")
    cluster = client.Cluster(client.connect(kubeconfig=kubeconfig))
    agent = factory.build_agent(
        config.load_project(repo.work), "dev", factory.Overrides(), cluster=cluster
    )
    try:
        assert agent.run_pass().error is None
        assert agent.status.verification is not None
        assert agent.status.verification["state"] == "Running"  # just applied
        agent.healing_enabled = True  # watch events drive health from here, as in the loop
        deadline = time.monotonic() + 60
        while agent.status.health != "Healthy" and time.monotonic() < deadline:
            if agent.wait_for_heal_work(0.5):
                agent.heal_pending()
        assert agent.status.health == "Healthy", agent.status.health_details
        running = agent.status.verification
        assert running["state"] == "Running" and "to go" in running["reason"], running

        later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
        agent.clock = lambda: later
        agent.verify_deploy()
        agent.write_status()
        st = status_mod.read(cluster, env="dev", namespace=rollout_namespace)
        assert st is not None and st.verification is not None
        assert st.verification["state"] == "Verified"
        assert st.verification["images"] == {"web-app": "v2.4.0", "api": "v1.8.0"}
        metrics = agent.metrics.exposition().decode()
        assert 'promote_verification_state{env="dev",state="Verified"} 1.0' in metrics
        assert 'promote_verification_state{env="dev",state="Running"} 0.0' in metrics
        events = cluster.request("GET", f"/api/v1/namespaces/{rollout_namespace}/events")
        assert any(e["reason"] == "VerificationVerified" for e in events["items"])
        # Final for these images: a later pass keeps the verdict.
        assert agent.run_pass().error is None
        assert agent.status.verification["state"] == "Verified"
    finally:
        agent.cache.stop()
