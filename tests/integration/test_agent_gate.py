"""The soak gate reads the source environment's agent status from its cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.reconcile import factory
from tests.gitops import make_deployments_available, make_repo
from tests.helpers import run_cli

pytestmark = pytest.mark.integration


def test_soak_gate_blocks_until_dev_ran_the_images_healthy_long_enough(
    tmp_path: Path, namespace: str, control_plane: Any
) -> None:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    kubeconfig = str(control_plane.kubeconfig)
    repo.edit(
        "environments/dev.yaml", "  context: promote-local\n", f"  kubeconfig: {kubeconfig}\n"
    )
    repo.edit("environments/staging.yaml", "sync:\n", "gates:\n  soak: 15s\nsync:\n")
    repo.commit_all("gate")
    args = ("to", "staging", "--dry-run", "-o", "json")

    blocked = run_cli(*args, cwd=repo.work)  # no agent has reported yet
    assert blocked.code == 3, blocked.stdout + blocked.stderr
    assert "unknown" in blocked.stdout

    cluster = client.Cluster(client.connect(kubeconfig=kubeconfig))
    agent = factory.build_agent(
        config.load_project(repo.work), "dev", factory.Overrides(), cluster=cluster
    )
    assert agent.run_pass().error is None
    res = run_cli(*args, cwd=repo.work)  # synced, but Deployments are not available
    assert res.code == 3 and "not healthy" in res.stdout, res.stdout
    make_deployments_available(cluster, namespace, ("web-app", "api"))
    time.sleep(0.5)
    assert agent.run_pass().health == "Healthy"
    agent.cache.stop()
    assert agent.status.images == {"web-app": "v2.4.0", "api": "v1.8.0"}
    res = run_cli(*args, cwd=repo.work)
    assert res.code == 3 and "to go" in res.stdout, res.stdout
    # The soak (15 s, long enough that a slow machine still sees "to go" above) passes once
    # the time has gone by: wait on that, not on a fixed sleep.
    deadline = time.monotonic() + 60
    ok = run_cli(*args, cwd=repo.work)
    while ok.code != 0 and time.monotonic() < deadline:
        assert ok.code == 3 and "to go" in ok.stdout, ok.stdout + ok.stderr
        time.sleep(1)
        ok = run_cli(*args, cwd=repo.work)
    assert ok.code == 0, ok.stdout + ok.stderr


def test_soak_gate_counts_from_when_a_real_rollout_turns_healthy(
    tmp_path: Path, rollout_namespace: str, rollout_cluster: Any
) -> None:
    """With controllers and kwok Nodes: no faked status, and no second pass either. The
    agent re-judges health from watch events, so healthy_since is when the rollout finished."""
    repo = make_repo(tmp_path, namespace_map={"dev": rollout_namespace})
    kubeconfig = str(rollout_cluster.kubeconfig)
    repo.edit(
        "environments/dev.yaml", "  context: promote-local\n", f"  kubeconfig: {kubeconfig}\n"
    )
    # 15 s: long enough that a slow machine still sees "to go" right after Healthy.
    repo.edit("environments/staging.yaml", "sync:\n", "gates:\n  soak: 15s\nsync:\n")
    repo.commit_all("gate")
    args = ("to", "staging", "--dry-run", "-o", "json")
    cluster = client.Cluster(client.connect(kubeconfig=kubeconfig))
    agent = factory.build_agent(
        config.load_project(repo.work), "dev", factory.Overrides(), cluster=cluster
    )
    try:
        first = agent.run_pass().health  # just applied: kwok may finish within the pass
        assert first in ("Progressing", "Healthy"), first
        assert (agent.status.healthy_since is None) == (first == "Progressing")
        agent.healing_enabled = True  # as the loop does after a pass; events drive the rest
        deadline = time.monotonic() + 60
        while agent.status.health != "Healthy" and time.monotonic() < deadline:
            if agent.wait_for_heal_work(0.5):
                agent.heal_pending()
        assert agent.status.health == "Healthy", agent.status.health_details
        assert agent.status.healthy_since is not None

        res = run_cli(*args, cwd=repo.work)
        assert res.code == 3 and "to go" in res.stdout, res.stdout
        while time.monotonic() < deadline:
            res = run_cli(*args, cwd=repo.work)
            if res.code == 0:
                break
        assert res.code == 0, res.stdout + res.stderr
    finally:
        agent.cache.stop()
