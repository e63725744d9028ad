"""Object diff: matched by identity, server fields dropped, Secret values never shown."""

from __future__ import annotations

import copy
from typing import Any

from promote.promotion import diff

CANARY = "CANARY-77aa41-secret"


def deploy(tag: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", **meta},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": f"web:{tag}"}]}}},
    }


def secret(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": data}


def test_unchanged_objects_are_not_listed() -> None:
    assert diff.diff_objects([deploy("v1")], [deploy("v1")]) == []


def test_changed_object_shows_only_the_changed_line_in_context() -> None:
    (d,) = diff.diff_objects([deploy("v1")], [deploy("v2")])
    assert d.action is diff.Action.CHANGED and d.ref == "apps/v1 Deployment prod/web"
    assert "-        image: web:v1\n" in d.text and "+        image: web:v2\n" in d.text
    assert (d.added_lines, d.removed_lines) == (1, 1)


def test_server_owned_fields_are_ignored() -> None:
    live = deploy("v1", resourceVersion="42", uid="u", managedFields=[{"manager": "x"}])
    live["status"] = {"replicas": 3}
    assert diff.diff_objects([live], [deploy("v1")]) == []


def test_added_and_removed_objects_with_default_namespace() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    out = diff.diff_objects([svc], [deploy("v1")], default_namespace="prod")
    assert [(d.action, d.ref) for d in out] == [
        (diff.Action.ADDED, "apps/v1 Deployment prod/web"),
        (diff.Action.REMOVED, "v1 Service prod/web"),
    ]


def test_secret_values_are_redacted_and_keys_stay_visible() -> None:
    before = secret(password=CANARY, user="dXNlcg==")
    after = secret(password=CANARY + "2", user="dXNlcg==", token=CANARY)
    after["sops"] = {"mac": CANARY}
    (d,) = diff.diff_objects([before], [after])
    assert CANARY not in d.text
    assert "password: <changed>" in d.text and "token: <added>" in d.text
    assert "user: <unchanged>" in d.text


def test_removed_secret_is_redacted_too() -> None:
    (d,) = diff.diff_objects([secret(password=CANARY)], [])
    assert d.action is diff.Action.REMOVED and CANARY not in d.text


def test_inputs_are_not_modified() -> None:
    before, after = [secret(password=CANARY)], [secret(password="x")]
    snapshot = copy.deepcopy((before, after))
    diff.diff_objects(before, after)
    assert (before, after) == snapshot


def test_dry_run_is_applied_to_the_desired_side() -> None:
    def defaulted(obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["spec"]["replicas"] = 1
        return out

    live = deploy("v1")
    live["spec"]["replicas"] = 1
    assert diff.diff_objects([live], [deploy("v1")], dry_run=defaulted) == []
