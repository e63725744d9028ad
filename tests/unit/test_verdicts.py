"""What the agent remembers between passes holds only until either side changes."""

from __future__ import annotations

from typing import Any

from promote.cluster import health
from promote.reconcile import verdicts


def _deployment(version: str, *, available: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "resourceVersion": version, "generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": available,
        },
    }


def test_in_sync_holds_until_the_live_object_changes() -> None:
    v, desired = verdicts.Verdicts(), [{"kind": "ConfigMap"}]
    v.desired_is(desired)
    live = {"metadata": {"resourceVersion": "10"}}
    assert not v.in_sync("k", live)
    v.found_in_sync("k", live)
    assert v.in_sync("k", live)
    assert not v.in_sync("k", {"metadata": {"resourceVersion": "11"}})  # edited
    assert not v.in_sync("k", None)  # deleted
    assert not v.in_sync("other", live)


def test_in_sync_is_forgotten_when_the_desired_objects_change() -> None:
    v = verdicts.Verdicts()
    first: list[dict[str, Any]] = [{"kind": "ConfigMap"}]
    live = {"metadata": {"resourceVersion": "10"}}
    v.desired_is(first)
    v.found_in_sync("k", live)
    v.desired_is(first)  # the same list: nothing changed
    assert v.in_sync("k", live)
    v.desired_is([{"kind": "ConfigMap"}])  # a new build, even an equal one
    assert not v.in_sync("k", live)


def test_an_object_without_a_resource_version_is_never_remembered() -> None:
    v = verdicts.Verdicts()
    v.desired_is([])
    v.found_in_sync("k", {"metadata": {}})
    assert not v.in_sync("k", {"metadata": {}})


def test_health_is_judged_again_when_the_object_changes() -> None:
    v = verdicts.Verdicts()
    progressing = v.health({"k": _deployment("5", available=0)})["k"]
    assert progressing.health is health.Health.PROGRESSING
    # Same resourceVersion: the judgement is kept (the object cannot have changed).
    assert v.health({"k": _deployment("5", available=0)})["k"] == progressing
    healthy = v.health({"k": _deployment("6", available=1)})["k"]
    assert healthy.health is health.Health.HEALTHY
    assert v.health({"k": None})["k"].health is health.Health.MISSING
