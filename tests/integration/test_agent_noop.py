"""A no-op pass reuses what it knew (the prepared desired objects, in-sync and health
verdicts) only until something changes: every change the first pass would see, a later
pass still sees (bench/noop.py measures the time this saves at 10,000 objects)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client, health
from promote.reconcile import factory
from promote.reconcile.agent import Agent
from tests.gitops import GitOpsRepo, make_deployments_available, make_repo
from tests.integration.test_agent_secrets import secret_repo  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def _agent(repo: GitOpsRepo, cluster: client.Cluster) -> Agent:
    project = config.load_project(repo.work)
    return factory.build_agent(project, "dev", factory.Overrides(self_heal=True), cluster=cluster)


def _wait_cached(agent: Agent, key: str, check: Any) -> None:
    deadline = time.monotonic() + 10
    while not check(agent.cache.get(key)):
        assert time.monotonic() < deadline, f"the watch cache never showed the change of {key}"
        time.sleep(0.02)


def _no_ops(agent: Agent, n: int = 2) -> None:
    for _ in range(n):
        report = agent.run_pass()
        assert report.error is None and report.applied == [] and report.out_of_sync == {}


def test_live_edits_deletions_and_new_commits_after_no_op_passes_are_applied(
    tmp_path: Path, namespace: str, control_plane: Any
) -> None:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    agent = _agent(repo, cluster)
    try:
        assert agent.run_pass().error is None
        _no_ops(agent)
        cm, web, svc = (
            f"/ConfigMap/{namespace}/api-config",
            f"apps/Deployment/{namespace}/web-app",
            f"/Service/{namespace}/api",
        )
        cluster.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/api-config",
            body={"data": {"LOG_LEVEL": "trace"}},
            content_type="application/merge-patch+json",
        )
        cluster.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/web-app",
            body={"metadata": {"labels": {"app.kubernetes.io/name": None}}},
            content_type="application/merge-patch+json",
        )
        cluster.delete(cluster.resource("v1", "Service"), namespace, "api")
        _wait_cached(agent, cm, lambda o: o and o["data"]["LOG_LEVEL"] == "trace")
        _wait_cached(
            agent, web, lambda o: o and "app.kubernetes.io/name" not in o["metadata"]["labels"]
        )
        _wait_cached(agent, svc, lambda o: o is None)
        report = agent.run_pass()
        assert report.error is None
        assert sorted(report.applied) == sorted([cm, web, svc])
        _no_ops(agent)
        # A changed desired object (a new commit) after no-op passes.
        repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
        repo.commit_all("bump web-app")
        assert agent.run_pass().applied == [web]
        _no_ops(agent)
    finally:
        agent.cache.stop()


def test_health_after_no_op_passes_follows_the_live_status(
    tmp_path: Path, namespace: str, control_plane: Any
) -> None:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    agent = _agent(repo, cluster)
    try:
        assert agent.run_pass().error is None
        _no_ops(agent)
        assert agent.run_pass().health == str(health.Health.PROGRESSING)
        make_deployments_available(cluster, namespace, ("web-app", "api"))
        for name in ("web-app", "api"):
            _wait_cached(
                agent,
                f"apps/Deployment/{namespace}/{name}",
                lambda o: (o.get("status") or {}).get("availableReplicas") == 1,
            )
        report = agent.run_pass()
        assert report.health == str(health.Health.HEALTHY), report.health_details
    finally:
        agent.cache.stop()


class _Rotating:
    """The agent's own resolver (sops), with the Secret's value then replaced by the pass's
    value: stands in for a Vault value that changes without a commit."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.value = inner, "first"

    def resolve(self, objects: list[dict[str, Any]], *, env: str) -> list[dict[str, Any]]:
        out = []
        for obj in self.inner.resolve(objects, env=env):
            if obj.get("kind") == "Secret":
                obj = {**obj, "data": {"password": base64.b64encode(self.value.encode()).decode()}}
                obj.pop("stringData", None)
            out.append(obj)
        return out


def test_a_secret_value_that_changes_without_a_commit_is_applied_by_the_next_pass(
    secret_repo: GitOpsRepo,  # noqa: F811 (the fixture imported above)
    namespace: str,
    control_plane: Any,
) -> None:
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    agent = _agent(secret_repo, cluster)
    try:
        assert agent.run_pass().error is None
        project = config.load_project(secret_repo.work)
        rotating = _Rotating(factory.resolver_at_revision(project, project.env("dev")))
        agent.desired_state.resolver = rotating
        assert agent.run_pass().applied == [f"/Secret/{namespace}/db"]
        _no_ops(agent)
        rotating.value = "second"
        assert agent.run_pass().applied == [f"/Secret/{namespace}/db"]
        live = cluster.get(cluster.resource("v1", "Secret"), namespace, "db")
        assert live is not None and base64.b64decode(live["data"]["password"]) == b"second"
        _no_ops(agent)
    finally:
        agent.cache.stop()
