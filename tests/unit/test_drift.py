"""The local drift check, ignore rules, Secret folding, and prune maths."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from promote.cluster import drift, inventory
from promote.config import IgnoreRule


def _deploy(replicas: int = 3, cpu: Any = "100m", labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "labels": labels or {"a": "b"}},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "web:v1", "resources": {"requests": {"cpu": cpu}}}
                    ]
                }
            },
        },
    }


def _live(desired: dict, **extra_spec: Any) -> dict:
    live = {
        **desired,
        "metadata": {
            **desired["metadata"],
            "uid": "u",
            "resourceVersion": "9",
            "labels": {**desired["metadata"]["labels"], "extra": "x"},
        },
        "status": {"replicas": 3},
    }
    live["spec"] = {**desired["spec"], "strategy": {"type": "RollingUpdate"}, **extra_spec}
    return live


def test_live_with_extra_defaulted_fields_is_in_sync() -> None:
    want = _deploy()
    assert drift.differences(want, _live(want)) == []


def test_scaled_replicas_are_reported_by_path() -> None:
    want = _deploy()
    live = _live(want, replicas=5)
    assert drift.differences(want, live) == ["/spec/replicas"]


def test_removed_label_is_drift() -> None:
    want = _deploy(labels={"a": "b", "team": "web"})
    live = _live(want)
    del live["metadata"]["labels"]["team"]
    assert drift.differences(want, live) == ["/metadata/labels/team"]


def test_missing_object() -> None:
    assert drift.differences(_deploy(), None) == ["<missing>"]


def test_quantity_normalisation_is_settled_by_the_dry_run_result() -> None:
    want = _deploy(cpu=0.5)
    live = _live(_deploy(cpu="500m"))
    assert drift.differences(want, live)  # the naive check lies...
    dry_run_result = _live(_deploy(cpu="500m"))  # ...the server would store 500m
    assert drift.confirmed(want, dry_run_result, live) == []


def test_confirmed_drift_survives_the_dry_run() -> None:
    want = _deploy(replicas=3)
    live = _live(want, replicas=7)
    assert drift.confirmed(want, _live(want), live) == ["/spec/replicas"]


def test_ignore_rule_removes_field_from_apply_and_comparison() -> None:
    rules = [IgnoreRule(kind="Deployment", name="web", paths=["/spec/replicas"])]
    want = drift.apply_ignores(_deploy(), rules)
    assert "replicas" not in want["spec"]
    assert drift.differences(want, _live(_deploy(), replicas=9)) == []
    other = drift.apply_ignores({**_deploy(), "kind": "StatefulSet"}, rules)
    assert other["spec"]["replicas"] == 3


def test_secret_string_data_folds_into_base64_data() -> None:
    s = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": {"password": "pw"},
        "data": {"user": base64.b64encode(b"u").decode()},
    }
    folded = drift.secret_to_data(s)
    assert "stringData" not in folded
    assert folded["data"] == {"user": "dQ==", "password": base64.b64encode(b"pw").decode()}


@pytest.mark.parametrize(
    ("prev", "want", "blocked", "gone"),
    [
        (["a", "b", "c", "d"], ["a", "b", "c"], False, ("d",)),
        (["a", "b", "c", "d"], ["a", "b"], False, ("c", "d")),
        (["a", "b", "c", "d"], ["a"], True, ("b", "c", "d")),
        ([], ["a"], False, ()),
    ],
)
def test_prune_plan_and_mass_prune_guard(
    prev: list[str], want: list[str], blocked: bool, gone: tuple[str, ...]
) -> None:
    plan = inventory.plan_prune(prev, want)
    assert plan.blocked is blocked and plan.delete == gone
    if blocked:
        assert "--allow-mass-prune" in plan.reason
        assert not inventory.plan_prune(prev, want, allow_mass_prune=True).blocked
