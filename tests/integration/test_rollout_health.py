"""Health on real rollouts: kube-controller-manager, kube-scheduler and kwok Nodes.

Each workload is created through the API; the controllers make ReplicaSets and Pods, the
scheduler binds them to fake Nodes and kwok reports them Running (and Ready, unless the Pod is
marked to fail: see promote/local/stages/stages.yaml). Health is judged by the pure
``promote.cluster.health`` on the live objects, as the agent does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from promote.cluster import health
from promote.cluster.health import Health
from promote.local.nodes import FAILING_IMAGE_MARKER, SIMULATE_LABEL
from tests.conftest import ControlPlane

pytestmark = pytest.mark.integration

ROLLOUT_S = 60.0  # a rollout here takes a few seconds; 2 busy cores can take much longer
GOOD_IMAGE = "registry.example/team/web:1.0"
FAILING_IMAGE = f"registry.example{FAILING_IMAGE_MARKER}web:1.0"


def _template(app: str, image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app, **(labels or {})}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def _workload(kind: str, name: str, image: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("pod_labels", None)
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name, image, labels),
        **spec,
    }
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": body}


class Kube:
    """Create objects and read them back as the API server's JSON (camelCase)."""

    def __init__(self, cluster: ControlPlane, namespace: str) -> None:
        from kubernetes import dynamic

        self._dyn = dynamic.DynamicClient(cluster.api_client)
        self.namespace = namespace

    def create(self, obj: dict[str, Any]) -> None:
        api = self._dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        api.create(body=obj, namespace=self.namespace)

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any]:
        api = self._dyn.resources.get(api_version=api_version, kind=kind)
        found: dict[str, Any] = api.get(name=name, namespace=self.namespace).to_dict()
        return found

    def pods(self, app: str) -> list[dict[str, Any]]:
        api = self._dyn.resources.get(api_version="v1", kind="Pod")
        listing = api.get(namespace=self.namespace, label_selector=f"app={app}").to_dict()
        return list(listing["items"])

    def health(self, api_version: str, kind: str, name: str) -> health.HealthStatus:
        return health.assess_health(self.get(api_version, kind, name))


def _wait(check: Callable[[], Any], what: str, timeout_s: float = ROLLOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"not within {timeout_s:g}s: {what}")


def _seen(kube: Kube, ref: tuple[str, str, str], want: Health) -> Callable[[], list[Health]]:
    """A check that records each verdict and is true once ``want`` is seen."""
    seen: list[Health] = []

    def check() -> list[Health]:
        verdict = kube.health(*ref).health
        if not seen or seen[-1] != verdict:
            seen.append(verdict)
        return seen if verdict == want else []

    return check


@pytest.fixture
def kube(rollout_cluster: ControlPlane, rollout_namespace: str) -> Kube:
    return Kube(rollout_cluster, rollout_namespace)


def _running_not_ready(kube: Kube, app: str, count: int) -> bool:
    pods = kube.pods(app)
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    return len(running) >= count and all(
        health.assess_health(p).health == Health.PROGRESSING for p in running
    )


def test_deployment_rolls_out_to_healthy(kube: Kube) -> None:
    kube.create(_workload("Deployment", "web", GOOD_IMAGE, replicas=3))
    ref = ("apps/v1", "Deployment", "web")

    _wait(lambda: kube.health(*ref).health == Health.HEALTHY, "Deployment web Healthy")

    pods = kube.pods("web")
    assert len(pods) == 3
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)
    assert all(health.assess_health(p).health == Health.HEALTHY for p in pods)


@pytest.mark.parametrize(
    ("image", "labels"),
    [(FAILING_IMAGE, None), (GOOD_IMAGE, {SIMULATE_LABEL: "not-ready"})],
    ids=["failing-image", "not-ready-label"],
)
def test_failing_deployment_goes_progressing_then_degraded_at_its_deadline(
    kube: Kube, image: str, labels: dict[str, str] | None
) -> None:
    deployment = _workload("Deployment", "bad", image, replicas=2, pod_labels=labels)
    deployment["spec"]["progressDeadlineSeconds"] = 10
    kube.create(deployment)
    ref = ("apps/v1", "Deployment", "bad")

    seen = _wait(_seen(kube, ref, Health.DEGRADED), "Deployment bad Degraded")

    assert Health.PROGRESSING in seen and Health.HEALTHY not in seen, seen
    assert '"bad"' in kube.health(*ref).message
    assert "progress deadline" in kube.health(*ref).message
    assert _running_not_ready(kube, "bad", 2)  # kwok ran them; they never became Ready


def test_statefulset_is_healthy_once_its_pods_are_ready(kube: Kube) -> None:
    kube.create(_workload("StatefulSet", "db", GOOD_IMAGE, replicas=2, serviceName="db"))
    ref = ("apps/v1", "StatefulSet", "db")

    _wait(lambda: kube.health(*ref).health == Health.HEALTHY, "StatefulSet db Healthy")


def test_statefulset_that_never_gets_ready_stays_progressing(kube: Kube) -> None:
    kube.create(_workload("StatefulSet", "dbx", FAILING_IMAGE, replicas=1, serviceName="dbx"))
    ref = ("apps/v1", "StatefulSet", "dbx")

    # No progress deadline for StatefulSets (Argo CD's rule): Progressing while not ready.
    _wait(lambda: _running_not_ready(kube, "dbx", 1), "StatefulSet dbx Pod running, not Ready")
    _wait(lambda: kube.get(*ref).get("status", {}).get("availableReplicas") == 0, "status seen")
    assert kube.health(*ref).health == Health.PROGRESSING


def test_daemonset_runs_on_every_node_then_is_healthy(kube: Kube) -> None:
    kube.create(_workload("DaemonSet", "agent", GOOD_IMAGE))
    ref = ("apps/v1", "DaemonSet", "agent")

    _wait(lambda: kube.health(*ref).health == Health.HEALTHY, "DaemonSet agent Healthy")
    assert kube.get(*ref)["status"]["numberAvailable"] == 3  # one per kwok Node


def test_daemonset_that_never_gets_ready_stays_progressing(kube: Kube) -> None:
    kube.create(_workload("DaemonSet", "agentx", FAILING_IMAGE))
    ref = ("apps/v1", "DaemonSet", "agentx")

    _wait(lambda: _running_not_ready(kube, "agentx", 3), "DaemonSet Pods running, not Ready")
    _wait(lambda: kube.get(*ref).get("status", {}).get("numberUnavailable") == 3, "status seen")
    assert kube.health(*ref).health == Health.PROGRESSING


def _job(name: str, image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    template = _template(name, image, labels)
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": template},
    }


def test_job_completes_and_is_healthy(kube: Kube) -> None:
    kube.create(_job("migrate", GOOD_IMAGE))
    ref = ("batch/v1", "Job", "migrate")

    _wait(lambda: kube.health(*ref).health == Health.HEALTHY, "Job migrate Healthy")


@pytest.mark.parametrize(
    ("image", "labels"),
    [(FAILING_IMAGE, None), (GOOD_IMAGE, {SIMULATE_LABEL: "fail"})],
    ids=["failing-image", "fail-label"],
)
def test_job_whose_pod_fails_is_degraded(
    kube: Kube, image: str, labels: dict[str, str] | None
) -> None:
    kube.create(_job("broken", image, labels))
    ref = ("batch/v1", "Job", "broken")

    _wait(lambda: kube.health(*ref).health == Health.DEGRADED, "Job broken Degraded")
    assert "backoff limit" in kube.health(*ref).message.lower()
    pods = kube.pods("broken")
    assert [p["status"]["phase"] for p in pods] == ["Failed"]
