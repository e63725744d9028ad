"""Faults: the API server going away and coming back, Git unreachable; the agent recovers."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from promote import config
from promote.cluster import client
from promote.local import controlplane, processes
from promote.reconcile import factory
from promote.reconcile import loop as loop_mod
from tests.gitops import git, make_repo

pytestmark = pytest.mark.integration


def _wait(cond: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


def test_agent_recovers_after_api_server_restart_and_git_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = processes.free_port()
    lc = controlplane.LocalCluster()
    info = lc.start()
    try:
        repo = make_repo(tmp_path)
        cluster = client.Cluster(client.connect(kubeconfig=str(info.kubeconfig)))
        agent = factory.build_agent(
            config.load_project(repo.work), "dev", factory.Overrides(), cluster=cluster
        )
        lp = loop_mod.AgentLoop(
            agent,
            loop_mod.LoopSettings(
                interval_s=3600,
                poll_s=0.5,
                leader_election=False,
                backoff_min_s=0.5,
                backoff_max_s=2,
                listen=f"127.0.0.1:{port}",
            ),
        )
        threading.Thread(target=lp.run, daemon=True).start()
        _wait(lambda: lp.passes >= 1 and agent.healing_enabled, 30)
        deployments = cluster.resource("apps/v1", "Deployment")

        # The API server dies and comes back; meanwhile a new commit lands.
        lc.restart_apiserver(down_s=2.0)
        repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.2")
        repo.commit_all("bump during outage")
        _wait(
            lambda: cluster.get(deployments, "dev", "web-app")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"].endswith(":v2.4.2"),
            30,
        )
        # Watches were re-established: drift is healed again.
        cluster.request(
            "PATCH",
            "/apis/apps/v1/namespaces/dev/deployments/api",
            body={"spec": {"replicas": 5}},
            content_type="application/merge-patch+json",
        )
        _wait(lambda: cluster.get(deployments, "dev", "api")["spec"]["replicas"] == 1, 10)

        # Git becomes unreachable: the pass fails at fetch, the cluster keeps its state...
        moved = repo.remote.with_name("moved.git")
        shutil.move(repo.remote, moved)
        repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.2", "newTag: v2.4.3")
        git(repo.work, "commit", "-qam", "bump while the remote is gone")  # not pushed yet
        report = agent.run_pass()
        assert report.error is not None and report.error.stage == "fetch"
        assert report.error.retryable
        assert cluster.get(deployments, "dev", "web-app") is not None
        # /status keeps answering and names the stage; /metrics counts the failure.
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        status = httpx.get(f"{base}/status").json()
        assert status["sync"] == "Failed" and status["last_error"]["stage"] == "fetch"
        metrics = httpx.get(f"{base}/metrics").text
        assert 'promote_reconcile_failures_total{env="dev",stage="fetch"}' in metrics
        assert "promote_drift_corrections_total" in metrics
        # ...and recovers by itself when Git is back.
        shutil.move(moved, repo.remote)
        git(repo.work, "push", "-q", "origin", "HEAD:main")
        _wait(
            lambda: cluster.get(deployments, "dev", "web-app")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"].endswith(":v2.4.3"),
            30,
        )
        # A stopped agent's watches end quietly when the API server goes away afterwards:
        # no "watch failed, retrying" warning, and no watch thread left running.
        lp.stop()
        _wait(lambda: agent.cache._stop.is_set(), 10)  # the loop's exit stops the cache
        caplog.clear()
        lc.restart_apiserver(down_s=0.5)
        _wait(lambda: not any(t.is_alive() for t in agent.cache._threads.values()), 30)
        assert not [r for r in caplog.records if r.name == "promote.cluster.cache"]
    finally:
        lc.stop()
