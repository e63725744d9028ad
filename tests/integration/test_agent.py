"""The reconcile agent against a real kube-apiserver + etcd (no controller-manager)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client, health
from promote.reconcile import factory
from promote.reconcile import loop as loop_mod
from promote.reconcile import status as status_mod
from promote.reconcile.agent import Agent
from tests.gitops import GitOpsRepo, make_deployments_available, make_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> GitOpsRepo:
    return make_repo(tmp_path, namespace_map={"dev": namespace})


@pytest.fixture
def cluster(control_plane: Any) -> client.Cluster:
    return client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))


def build(repo: GitOpsRepo, cluster: client.Cluster, tmp_path: Path, **ov: Any) -> Agent:
    project = config.load_project(repo.work)
    agent = factory.build_agent(project, "dev", factory.Overrides(**ov), cluster=cluster)
    return agent


def wait_for(cond: Callable[[], Any], timeout: float = 5.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def running(
    repo: GitOpsRepo, cluster: client.Cluster, tmp_path: Path
) -> Iterator[Callable[..., tuple[Agent, loop_mod.AgentLoop]]]:
    loops: list[loop_mod.AgentLoop] = []

    def start(**ov: Any) -> tuple[Agent, loop_mod.AgentLoop]:
        agent = build(repo, cluster, tmp_path, **ov)
        lp = loop_mod.AgentLoop(
            agent, loop_mod.LoopSettings(interval_s=3600, poll_s=0.5, leader_election=False)
        )
        threading.Thread(target=lp.run, daemon=True).start()
        loops.append(lp)
        wait_for(lambda: lp.passes >= 1 and agent.healing_enabled, timeout=30)
        return agent, lp

    yield start
    for lp in loops:
        lp.stop()


def _get(cluster: client.Cluster, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    api = {"Deployment": "apps/v1"}.get(kind, "v1")
    return cluster.get(cluster.resource(api, kind), ns, name)


def test_initial_sync_applies_the_example_with_labels_and_status(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    agent = build(repo, cluster, tmp_path)
    report = agent.run_pass()
    agent.cache.stop()
    assert report.error is None, report.error
    assert len(report.applied) == 5
    web = _get(cluster, "Deployment", namespace, "web-app")
    assert web is not None
    labels = web["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "promote"
    assert labels["promote.dev/environment"] == "dev"
    assert web["metadata"]["annotations"]["promote.dev/revision"] == report.revision
    image = web["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/acme/web-app:v2.4.0"
    managers = {m["manager"] for m in web["metadata"]["managedFields"]}
    assert "promote" in managers
    st = status_mod.read(cluster, env="dev", namespace=namespace)
    assert st is not None and st.sync == "Synced" and st.revision == report.revision
    # No controller-manager: Deployments never get a status, so they are Progressing.
    assert st.health == "Progressing"


def test_new_commit_is_applied_on_the_next_pass(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    agent = build(repo, cluster, tmp_path)
    assert agent.run_pass().error is None
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    rev = repo.commit_all("bump web-app")
    report = agent.run_pass()
    agent.cache.stop()
    assert report.error is None and report.revision == rev
    assert report.applied == [f"apps/Deployment/{namespace}/web-app"]
    web = _get(cluster, "Deployment", namespace, "web-app")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.4.1")


def test_no_false_drift_after_defaulting_over_ten_passes(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    # cpu: 0.5 is stored as 500m and memory 0.5Gi as 512Mi: a naive comparison would lie.
    repo.edit("overlays/base/api/deployment.yaml", "cpu: 250m", "cpu: 0.5")
    repo.edit("overlays/base/api/deployment.yaml", "memory: 128Mi", "memory: 0.5Gi")
    repo.commit_all("quantities in other notations")
    agent = build(repo, cluster, tmp_path)
    assert agent.run_pass().error is None
    for _ in range(10):
        report = agent.run_pass()
        assert report.error is None
        assert report.applied == [] and report.out_of_sync == {}
    agent.cache.stop()
    assert agent.status.corrections == 0


def _scale(cluster: client.Cluster, ns: str, name: str, replicas: int) -> None:
    cluster.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )


def test_scaled_deployment_is_reverted_by_the_watch_within_two_seconds(
    running: Callable[..., Any], cluster: client.Cluster, namespace: str
) -> None:
    agent, _ = running()
    _scale(cluster, namespace, "web-app", 7)
    started = time.monotonic()
    wait_for(
        lambda: _get(cluster, "Deployment", namespace, "web-app")["spec"]["replicas"] == 1,
        timeout=2.0,
        step=0.02,
    )
    assert time.monotonic() - started < 2.0
    # The correction is recorded and announced right after the revert's apply returns.
    wait_for(lambda: agent.status.corrections >= 1, timeout=2.0)
    corr = agent.status.last_correction
    assert corr is not None and corr.object == f"Deployment {namespace}/web-app"
    assert "/spec/replicas" in corr.paths

    def reverted_event() -> bool:
        events = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        return any(
            e["reason"] == "DriftReverted" and e["involvedObject"]["name"] == "web-app"
            for e in events
        )

    wait_for(reverted_event, timeout=2.0)


def test_removed_label_and_deleted_deployment_are_restored(
    running: Callable[..., Any], cluster: client.Cluster, namespace: str
) -> None:
    running()
    cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/services/api",
        body={"metadata": {"labels": {"app.kubernetes.io/name": None}}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: (
            _get(cluster, "Service", namespace, "api")["metadata"]["labels"].get(
                "app.kubernetes.io/name"
            )
            == "api"
        ),
        timeout=2.0,
    )
    rt = cluster.resource("apps/v1", "Deployment")
    cluster.delete(rt, namespace, "api")
    wait_for(lambda: _get(cluster, "Deployment", namespace, "api") is not None, timeout=2.0)


def test_configmap_edit_left_alone_without_self_heal(
    running: Callable[..., Any], cluster: client.Cluster, namespace: str
) -> None:
    agent, _ = running(self_heal=False)
    cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/api-config",
        body={"data": {"LOG_LEVEL": "trace"}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: agent.status.sync == "OutOfSync", timeout=3.0)
    time.sleep(1.0)
    assert _get(cluster, "ConfigMap", namespace, "api-config")["data"]["LOG_LEVEL"] == "trace"
    assert agent.status.corrections == 0
    assert f"ConfigMap {namespace}/api-config" in agent.status.out_of_sync


def test_disaster_recovery_restores_every_managed_object(
    running: Callable[..., Any], cluster: client.Cluster, namespace: str
) -> None:
    running()
    for kind, api in (("Deployment", "apps/v1"), ("Service", "v1"), ("ConfigMap", "v1")):
        rt = cluster.resource(api, kind)
        items, _ = cluster.list(
            rt, namespace=namespace, label_selector="promote.dev/environment=dev"
        )
        for item in items:
            cluster.delete(rt, namespace, item["metadata"]["name"])
    for kind, name in (
        ("Deployment", "web-app"),
        ("Deployment", "api"),
        ("Service", "web-app"),
        ("Service", "api"),
        ("ConfigMap", "api-config"),
    ):
        wait_for(lambda k=kind, n=name: _get(cluster, k, namespace, n) is not None, timeout=5.0)


def test_prune_removes_objects_dropped_from_git_and_guard_blocks_mass_prune(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    agent = build(repo, cluster, tmp_path)
    assert agent.run_pass().error is None
    # Drop the api app (3 of 5 objects): more than half, so the guard blocks.
    repo.edit("overlays/dev/kustomization.yaml", "- ../base/api\n", "")
    repo.commit_all("drop api")
    report = agent.run_pass()
    assert report.error is None
    assert report.prune_blocked and "--allow-mass-prune" in report.prune_blocked
    assert _get(cluster, "Deployment", namespace, "api") is not None
    st = status_mod.read(cluster, env="dev", namespace=namespace)
    assert st is not None and st.prune_blocked
    agent.cache.stop()
    agent2 = build(repo, cluster, tmp_path, allow_mass_prune=True)
    report2 = agent2.run_pass()
    agent2.cache.stop()
    assert report2.error is None and report2.prune_blocked is None
    assert sorted(report2.pruned) == sorted(
        [
            f"apps/Deployment/{namespace}/api",
            f"/Service/{namespace}/api",
            f"/ConfigMap/{namespace}/api-config",
        ]
    )
    assert _get(cluster, "Deployment", namespace, "api") is None
    assert _get(cluster, "Deployment", namespace, "web-app") is not None


def test_render_failure_applies_nothing_and_keeps_last_good_state(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    agent = build(repo, cluster, tmp_path)
    assert agent.run_pass().error is None
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v9")
    repo.edit("overlays/dev/kustomization.yaml", "- ../base/api\n", "- ../base/nope\n")
    repo.commit_all("broken overlay")
    report = agent.run_pass()
    agent.cache.stop()
    assert report.error is not None and report.error.stage == "render"
    assert report.applied == []
    web = _get(cluster, "Deployment", namespace, "web-app")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.4.0")
    st = status_mod.read(cluster, env="dev", namespace=namespace)
    assert st is not None and st.sync == "Failed"
    assert st.last_error is not None and st.last_error["stage"] == "render"
    assert "nope" in st.last_error["message"]


def test_health_follows_status_set_through_the_status_subresource(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    agent = build(repo, cluster, tmp_path)
    assert agent.run_pass().error is None
    make_deployments_available(cluster, namespace, ("web-app", "api"))
    wait_for(
        lambda: (
            agent.cache.get(f"apps/Deployment/{namespace}/api")
            .get("status", {})
            .get("availableReplicas")
            == 1
        )
    )
    report = agent.run_pass()
    agent.cache.stop()
    assert report.health == str(health.Health.HEALTHY), report.health_details


def test_ignored_field_is_left_to_another_controller(
    repo: GitOpsRepo, running: Callable[..., Any], cluster: client.Cluster, namespace: str
) -> None:
    repo.edit(
        "environments/dev.yaml",
        "  prune: true\n",
        "  prune: true\n  ignore:\n"
        "  - {kind: Deployment, name: web-app, paths: [/spec/replicas]}\n",
    )
    repo.commit_all("an autoscaler owns web-app's replicas")
    agent, _ = running()
    _scale(cluster, namespace, "web-app", 6)  # what an HPA would do
    _scale(cluster, namespace, "api", 6)  # not ignored: reverted
    wait_for(lambda: _get(cluster, "Deployment", namespace, "api")["spec"]["replicas"] == 1)
    time.sleep(1.0)
    assert _get(cluster, "Deployment", namespace, "web-app")["spec"]["replicas"] == 6
    assert agent.run_pass().out_of_sync == {}
    assert _get(cluster, "Deployment", namespace, "web-app")["spec"]["replicas"] == 6


def test_drift_seen_while_healing_is_off_is_reverted_once_it_is_on(
    repo: GitOpsRepo, cluster: client.Cluster, namespace: str, tmp_path: Path
) -> None:
    # A new leader's first pass, or a standby: the watch reports a deletion while healing is
    # off. It must be reverted when healing starts, not after the next full pass (1 h).
    agent = build(repo, cluster, tmp_path)
    try:
        assert agent.run_pass().error is None
        assert not agent.healing_enabled
        cluster.delete(cluster.resource("v1", "Service"), namespace, "api")
        wait_for(lambda: agent.wait_for_heal_work(0.1), timeout=10)  # queued, not dropped
        assert _get(cluster, "Service", namespace, "api") is None
        agent.healing_enabled = True
        assert agent.heal_pending() == 1
        assert _get(cluster, "Service", namespace, "api") is not None
    finally:
        agent.cache.stop()
