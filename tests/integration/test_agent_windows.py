"""The agent enforces merge windows (issue 16 item 4) against a real kube-apiserver + etcd:
inside dev's deny window a new revision waits (status OutOfWindow naming the window and the
next opening, an Event, a metric) while self-heal goes on, and it is applied once the
injected clock leaves the window; a rollback to a revision verified here is applied inside
the window. The clock is injected (no sleeping through real time)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.reconcile import factory
from promote.reconcile import loop as loop_mod
from promote.reconcile import status as status_mod
from promote.reconcile.agent import Agent
from tests.gitops import GitOpsRepo, make_deployments_available, make_repo
from tests.integration.test_agent import wait_for

pytestmark = pytest.mark.integration

# dev freezes every day 00:00-01:00 UTC.
DENY = """windows:
  deny:
  - rrule: FREQ=DAILY
    start: 2030-01-01T00:00:00
    duration: 1h
    timeZone: UTC
"""
CLOSED = datetime(2030, 3, 5, 0, 30, tzinfo=UTC)
OPEN = datetime(2030, 3, 5, 1, 30, tzinfo=UTC)
NAMES = ("web-app", "api")


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> GitOpsRepo:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    (repo.work / "environments/dev.yaml").write_text(
        (repo.work / "environments/dev.yaml").read_text() + DENY
    )
    repo.commit_all("dev freezes 00:00-01:00 UTC")
    return repo


@pytest.fixture
def cluster(control_plane: Any) -> client.Cluster:
    return client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))


def _agent(repo: GitOpsRepo, cluster: client.Cluster, now: datetime) -> Agent:
    agent = factory.build_agent(
        config.load_project(repo.work), "dev", factory.Overrides(), cluster=cluster
    )
    agent.clock = lambda: now
    return agent


def _set_tag(repo: GitOpsRepo, old: str, new: str) -> str:
    repo.edit("overlays/dev/kustomization.yaml", f"newTag: {old}", f"newTag: {new}")
    return repo.commit_all(f"web-app {new}")


def _image(cluster: client.Cluster, ns: str) -> str:
    dep = cluster.get(cluster.resource("apps/v1", "Deployment"), ns, "web-app")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def _deploy_healthy(agent: Agent, cluster: client.Cluster, ns: str) -> None:
    """Apply, then let the Deployments report available (no controllers here): the pass
    after sees them Healthy, which verifies the revision for an environment without
    ``verification:``."""
    assert agent.run_pass().error is None
    make_deployments_available(cluster, ns, NAMES)
    assert agent.run_pass().error is None
    assert agent.status.health == "Healthy", agent.status.health_details


def test_a_new_revision_waits_for_the_deny_window_to_end_while_self_heal_goes_on(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str
) -> None:
    agent = _agent(repo, cluster, CLOSED)
    try:
        _deploy_healthy(agent, cluster, namespace)  # nothing deployed yet: the first applies
        first = agent.status.revision
        assert first in agent.status.verified_revisions
        waiting = _set_tag(repo, "v2.4.0", "v2.5.0")

        report = agent.run_pass()
        assert report.error is None and report.revision == first and report.head == waiting
        assert _image(cluster, namespace).endswith(":v2.4.0")
        st = status_mod.read(cluster, env="dev", namespace=namespace)
        assert st is not None and st.sync == "OutOfWindow" and st.revision == first
        assert st.window is not None and st.window["revision"] == waiting
        assert st.window["nextOpening"] == "2030-03-05T01:00:00Z"
        assert "deny FREQ=DAILY from 00:00 UTC for 1h" in st.window["window"]
        assert 'promote_out_of_window{env="dev"} 1.0' in agent.metrics.exposition().decode()
        events = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        held = [e for e in events if e["reason"] == "OutOfWindow"]
        assert len(held) == 1 and waiting[:12] in held[0]["message"]

        # Self-heal goes on for the deployed revision.
        dep = cluster.resource("apps/v1", "Deployment")
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web-app"
        cluster.request(
            "PATCH",
            path,
            body={"spec": {"replicas": 3}},
            content_type="application/merge-patch+json",
        )
        assert cluster.get(dep, namespace, "web-app")["spec"]["replicas"] == 3
        assert agent.run_pass().error is None
        assert cluster.get(dep, namespace, "web-app")["spec"]["replicas"] == 1
        assert _image(cluster, namespace).endswith(":v2.4.0")
        events = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        assert len([e for e in events if e["reason"] == "OutOfWindow"]) == 1  # once per revision

        agent.clock = lambda: OPEN  # the window ends
        report = agent.run_pass()
        assert report.error is None and report.revision == waiting
        assert _image(cluster, namespace).endswith(":v2.5.0")
        assert agent.status.window is None and agent.status.sync == "Synced"
        assert 'promote_out_of_window{env="dev"} 0.0' in agent.metrics.exposition().decode()
    finally:
        agent.cache.stop()


def test_a_rollback_to_a_verified_revision_is_applied_inside_the_deny_window(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str
) -> None:
    agent = _agent(repo, cluster, OPEN)
    try:
        _deploy_healthy(agent, cluster, namespace)
        good = agent.status.revision
        _set_tag(repo, "v2.4.0", "v2.6.0")  # deployed in the open window, never verified
        assert agent.run_pass().error is None
        assert _image(cluster, namespace).endswith(":v2.6.0")

        agent.clock = lambda: CLOSED
        back = _set_tag(repo, "v2.6.0", "v2.4.0")  # inputs equal the verified revision's
        report = agent.run_pass()
        assert report.error is None and report.revision == back, agent.status.window
        assert _image(cluster, namespace).endswith(":v2.4.0")
        assert agent.status.window is None

        # A restarted agent (no memory) still knows what is deployed and what was verified.
        agent.cache.stop()
        agent = _agent(repo, cluster, CLOSED)
        newer = _set_tag(repo, "v2.4.0", "v2.7.0")
        report = agent.run_pass()
        assert report.revision == back and report.head == newer
        assert agent.status.window is not None and agent.status.window["revision"] == newer
        assert good in agent.status.verified_revisions
        assert _image(cluster, namespace).endswith(":v2.4.0")
    finally:
        agent.cache.stop()


def test_the_running_loop_applies_the_waiting_revision_once_the_window_opens(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str
) -> None:
    agent = _agent(repo, cluster, CLOSED)
    lp = loop_mod.AgentLoop(
        agent, loop_mod.LoopSettings(interval_s=3600, poll_s=0.5, leader_election=False)
    )
    threading.Thread(target=lp.run, daemon=True).start()
    try:
        wait_for(lambda: lp.passes >= 1, timeout=60)
        waiting = _set_tag(repo, "v2.4.0", "v2.8.0")
        wait_for(lambda: (agent.status.window or {}).get("revision") == waiting, timeout=60)
        assert _image(cluster, namespace).endswith(":v2.4.0")
        agent.clock = lambda: OPEN  # no new commit: the loop looks again by itself
        wait_for(lambda: _image(cluster, namespace).endswith(":v2.8.0"), timeout=60)
        wait_for(lambda: agent.status.window is None, timeout=30)
    finally:
        lp.stop()


def test_status_says_a_revision_waits_for_the_window(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, control_plane: Any
) -> None:
    """`promote status` prints the agent's OutOfWindow message (README's windows example),
    and -o json carries it with the environment's release control."""
    from tests.helpers import run_cli

    agent = _agent(repo, cluster, CLOSED)
    try:
        _deploy_healthy(agent, cluster, namespace)
        waiting = _set_tag(repo, "v2.4.0", "v2.5.0")
        assert agent.run_pass().error is None
    finally:
        agent.cache.stop()
    args = ("status", "-C", str(repo.work), "--kubeconfig", str(control_plane.kubeconfig))
    text = run_cli(*args)
    assert text.code == 0, text.stdout + text.stderr
    assert f"dev: OutOfWindow: dev waits to apply {waiting[:12]}" in " ".join(text.stdout.split())
    doc = run_cli(*args, "-o", "json").json()
    assert doc["release"]["dev"]["outOfWindow"]["revision"] == waiting
    _dashboard_says_it_waits(repo, control_plane, waiting)


def _dashboard_says_it_waits(repo: GitOpsRepo, control_plane: Any, waiting: str) -> None:
    """The release matrix and the agents page show the agent's OutOfWindow message."""
    import httpx

    from promote.ui import app
    from tests.ui_world import free_port, serve

    settings = app.Settings(
        repo_dir=repo.work, port=free_port(), kubeconfig=str(control_plane.kubeconfig)
    )
    with serve(settings) as base:
        for path in ("/", "/agents"):
            page = httpx.get(base + path, timeout=60).text
            words = " ".join(re.sub(r"<[^>]+>", " ", page).split())
            assert f"OutOfWindow dev waits to apply {waiting[:12]}" in words, path
