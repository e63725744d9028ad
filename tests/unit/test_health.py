"""Health verdicts on live objects, as the API server returns them (gitops-engine's testdata)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from promote.cluster import health
from promote.cluster.health import Health, HealthStatus

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "health"

CASES = [
    # file, expected health, substring of the message ("" when any message will do)
    ("deployment-healthy.yaml", Health.HEALTHY, ""),
    ("deployment-scaled-to-zero.yaml", Health.HEALTHY, ""),
    ("deployment-paused.yaml", Health.SUSPENDED, "Deployment is paused"),
    (
        "deployment-progressing-generation.yaml",
        Health.PROGRESSING,
        "observed deployment generation less than desired generation",
    ),
    (
        "deployment-no-status.yaml",
        Health.PROGRESSING,
        "observed deployment generation less than desired generation",
    ),
    (
        "deployment-progressing-updated.yaml",
        Health.PROGRESSING,
        "1 out of 3 new replicas have been updated",
    ),
    (
        "deployment-progressing-old-replicas.yaml",
        Health.PROGRESSING,
        "1 old replicas are pending termination",
    ),
    (
        "deployment-progressing-available.yaml",
        Health.PROGRESSING,
        "2 of 3 updated replicas are available",
    ),
    (
        "deployment-degraded-deadline.yaml",
        Health.DEGRADED,
        'Deployment "web" exceeded its progress deadline',
    ),
    (
        "deployment-degraded-deadline-after-apply.yaml",
        Health.DEGRADED,
        'Deployment "web" exceeded its progress deadline',
    ),
    (
        # the failed rollout's condition, still there after a rollback: the new generation
        # is not observed yet (kubectl rollout status's rule)
        "deployment-stale-deadline-generation.yaml",
        Health.PROGRESSING,
        "observed deployment generation less than desired generation",
    ),
    (
        # observed, but the condition is older than the template the rollback wrote
        "deployment-stale-deadline-rollback.yaml",
        Health.PROGRESSING,
        "1 old replicas are pending termination",
    ),
    ("deployment-terminating.yaml", Health.PROGRESSING, "Pending deletion"),
    ("statefulset-healthy.yaml", Health.HEALTHY, "partitioned roll out complete: 3 new pods"),
    ("statefulset-progressing-generation.yaml", Health.PROGRESSING, "spec update to be observed"),
    ("statefulset-progressing-ready.yaml", Health.PROGRESSING, "Waiting for 1 pods to be ready"),
    ("statefulset-progressing-rolling.yaml", Health.PROGRESSING, "1 out of 3 new pods"),
    ("statefulset-partition-progressing.yaml", Health.PROGRESSING, "1 out of 2 new pods"),
    ("statefulset-partition-complete.yaml", Health.HEALTHY, "2 new pods have been updated"),
    ("statefulset-ondelete.yaml", Health.HEALTHY, "statefulset has 3 ready pods"),
    ("statefulset-revision-pending.yaml", Health.PROGRESSING, "at revision postgres-7f4c8d6b91"),
    ("daemonset-healthy.yaml", Health.HEALTHY, ""),
    (
        "daemonset-progressing-generation.yaml",
        Health.PROGRESSING,
        "observed daemon set generation less than desired generation",
    ),
    (
        "daemonset-progressing-updated.yaml",
        Health.PROGRESSING,
        'daemon set "node-exporter" rollout to finish: 2 out of 4 new pods have been updated',
    ),
    ("daemonset-progressing-available.yaml", Health.PROGRESSING, "3 of 4 updated pods"),
    ("daemonset-ondelete.yaml", Health.HEALTHY, "1 out of 4 new pods have been updated"),
    ("job-complete.yaml", Health.HEALTHY, "Reached expected number of succeeded pods"),
    ("job-failed.yaml", Health.DEGRADED, "Job has reached the specified backoff limit"),
    ("job-failure-target.yaml", Health.DEGRADED, "Job has reached the specified backoff limit"),
    ("job-running.yaml", Health.PROGRESSING, "1 pods active"),
    ("job-suspended.yaml", Health.SUSPENDED, "Job is suspended"),
    ("pvc-bound.yaml", Health.HEALTHY, ""),
    ("pvc-pending.yaml", Health.PROGRESSING, "Waiting for the claim to be bound"),
    ("pvc-lost.yaml", Health.DEGRADED, "lost its bound volume"),
    ("service-lb-pending.yaml", Health.PROGRESSING, "Waiting for load balancer"),
    ("service-lb-ready.yaml", Health.HEALTHY, ""),
    ("service-clusterip.yaml", Health.HEALTHY, ""),
    ("pod-running.yaml", Health.HEALTHY, ""),
    ("pod-not-ready.yaml", Health.PROGRESSING, ""),
    ("pod-crashloop.yaml", Health.DEGRADED, "CrashLoopBackOff: back-off 2m40s"),
    ("pod-failed.yaml", Health.DEGRADED, 'container "migrate" failed with exit code 2'),
    ("pod-succeeded.yaml", Health.HEALTHY, ""),
    ("pod-run-once-image-pull.yaml", Health.PROGRESSING, ""),
    ("configmap.yaml", Health.HEALTHY, ""),
    ("certificate-custom-resource.yaml", Health.HEALTHY, ""),
]


def load(name: str) -> dict[str, Any]:
    obj = yaml.safe_load((TESTDATA / name).read_text())
    assert isinstance(obj, dict)
    return obj


@pytest.mark.parametrize(("name", "expected", "message"), CASES, ids=[c[0] for c in CASES])
def test_live_object_health(name: str, expected: Health, message: str) -> None:
    status = health.assess_health(load(name))
    assert status.health is expected, status.message
    assert message in status.message


def test_every_testdata_file_has_a_case() -> None:
    assert sorted(p.name for p in TESTDATA.glob("*.yaml")) == sorted(c[0] for c in CASES)


def test_object_not_in_the_cluster_is_missing() -> None:
    assert health.assess_health(None).health is Health.MISSING


def test_deployment_without_replicas_field_expects_one() -> None:
    obj = load("deployment-healthy.yaml")
    del obj["spec"]["replicas"]
    obj["status"].update(replicas=0, updatedReplicas=0, availableReplicas=0)
    status = health.assess_health(obj)
    assert (status.health, status.message) == (
        Health.PROGRESSING,
        "Waiting for rollout to finish: 0 out of 1 new replicas have been updated...",
    )


def test_kind_is_matched_with_its_group() -> None:
    # A CRD named Deployment in another group is not judged by the apps/v1 rule.
    obj = load("deployment-progressing-generation.yaml")
    obj["apiVersion"] = "example.com/v1"
    assert health.assess_health(obj) == HealthStatus(Health.HEALTHY, "")


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"apiVersion": "apps/v1", "kind": "Deployment", "status": None, "spec": None},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 2}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "status": {"observedGeneration": "x"}},
        {"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [None, "x"]}},
        {"apiVersion": "v1", "kind": "Pod", "status": {"containerStatuses": [{"state": None}]}},
    ],
)
def test_partial_objects_never_raise(obj: dict[str, Any]) -> None:
    assert isinstance(health.assess_health(obj), HealthStatus)


def test_order_is_argo_cds_best_to_worst() -> None:
    assert list(Health) == sorted(Health)
    assert [str(h) for h in Health] == [
        "Healthy",
        "Suspended",
        "Progressing",
        "Missing",
        "Degraded",
        "Unknown",
    ]
    assert f"{Health.DEGRADED:>9}|" == " Degraded|"


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([], Health.HEALTHY),
        ([Health.HEALTHY, Health.HEALTHY], Health.HEALTHY),
        ([Health.HEALTHY, Health.SUSPENDED], Health.SUSPENDED),
        ([Health.SUSPENDED, Health.PROGRESSING, Health.HEALTHY], Health.PROGRESSING),
        ([Health.PROGRESSING, Health.MISSING], Health.MISSING),
        ([Health.DEGRADED, Health.MISSING, Health.HEALTHY], Health.DEGRADED),
        ([Health.DEGRADED, Health.UNKNOWN], Health.UNKNOWN),
    ],
)
def test_aggregate_is_the_worst_member(members: list[Health], expected: Health) -> None:
    assert health.aggregate(HealthStatus(h, "") for h in members) is expected


def test_assess_all_keeps_keys_and_aggregates_to_the_worst() -> None:
    objects = {
        "apps/v1 Deployment production/web": load("deployment-healthy.yaml"),
        "v1 Service production/web-public": load("service-lb-pending.yaml"),
        "v1 ConfigMap production/web-config": load("configmap.yaml"),
        "batch/v1 Job production/db-migrate": None,
    }
    statuses = health.assess_all(objects)
    assert list(statuses) == list(objects)
    assert statuses["batch/v1 Job production/db-migrate"].health is Health.MISSING
    assert health.aggregate(statuses.values()) is Health.MISSING


def test_module_does_no_io() -> None:
    # Pure layer (STYLE.md §1): only standard-library value modules, never a client or os.
    tree = ast.parse(Path(health.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    # datetime parses condition and managedFields times; the clock is never read.
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "enum", "typing"}
    assert "now(" not in Path(health.__file__).read_text()
