"""The fast schema check (jsonschema-rs) agrees with jsonschema on every object.

``openapi.Schemas.errors`` asks jsonschema-rs first and words problems with jsonschema only
when it finds some: an object jsonschema-rs passed and jsonschema would not is a finding
promote would miss. Hypothesis mutates real objects (wrong types, missing and null fields,
duplicate list-map keys, defaulted keys, merge keys, sets, int-or-string values, floats and
very large integers) and both must give the same verdict.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from promote.cluster import openapi

OBJECTS: list[dict[str, Any]] = [
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.example.com/web:v1",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "a"},
                                {"name": "LEVEL", "value": "b"},
                            ],
                            "resources": {"requests": {"cpu": 0.1, "memory": "64Mi"}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "side", "image": "registry.example.com/side:v1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": "https"}],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "finalizers": ["a", "b"]},
        "data": {"A": "1"},
    },
    {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "job", "image": "busybox:1"}],
                        }
                    }
                }
            },
        },
    },
]

WIDGETS = {  # a CRD: a merged list without a list type, an int-or-string, a set
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "parts": {
                                        "type": "array",
                                        "x-kubernetes-patch-merge-key": "name",
                                        "x-kubernetes-patch-strategy": "merge",
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "size": {"type": "integer", "default": 1},
                                            },
                                        },
                                    },
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "tags": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "set",
                                        "items": {"type": "string"},
                                    },
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}
OBJECTS.append(
    {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"parts": [{"name": "a"}, {"name": "b"}], "port": 80, "tags": ["x", "y"]},
    }
)

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "TCP", "main", "25%", "a", "MODE", "web"]),
    st.just([]),
    st.just({}),
    st.just([{"name": "MODE"}]),
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*here, i))
    return out


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    obj = copy.deepcopy(draw(st.sampled_from(OBJECTS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(obj) if p and p[0] not in ("apiVersion", "kind")]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _at(obj, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "twin"]))
        if action == "replace":
            parent[last] = copy.deepcopy(draw(VALUES))
        elif action == "delete":
            del parent[last]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif action == "twin" and isinstance(parent, list) and isinstance(parent[last], dict):
            keys = ("name", "port", "key", "containerPort", "mountPath")
            twin = {k: v for k, v in parent[last].items() if k in keys}
            parent.append(twin)  # the same key, defaulted fields (protocol) left out
    return obj


SCHEMAS = openapi.Schemas([WIDGETS])


def _jsonschema_only(obj: dict[str, Any]) -> bool:
    gvk = f"{obj['apiVersion']}/{obj['kind']}"
    kind = SCHEMAS._kinds[gvk]
    validator = openapi._Validator(kind, registry=SCHEMAS._registry)
    return not list(validator.iter_errors(openapi._without_nulls(dict(obj))))


def test_the_unmutated_objects_are_valid_either_way() -> None:
    for obj in OBJECTS:
        assert SCHEMAS.errors(obj) == [] and _jsonschema_only(obj), obj["kind"]


def _with(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    parent = _at(out, path[:-1])
    if isinstance(parent, list) and path[-1] == len(parent):
        parent.append(value)
    else:
        parent[path[-1]] = value
    return out


DEPLOYMENT, SERVICE, CONFIGMAP, _, WIDGET = OBJECTS
CONTAINER = ("spec", "template", "spec", "containers", 0)
INT_OR_STRING = [  # (object, path): fields that take an integer or a string
    (DEPLOYMENT, ("spec", "strategy", "rollingUpdate", "maxSurge")),
    (SERVICE, ("spec", "ports", 1, "targetPort")),
    (WIDGET, ("spec", "port")),
]
VERDICTS = [(3, True), ("25%", True), (True, False), (0.5, False), ([], False), ({}, False),
            (None, True)]  # fmt: skip
CASES = [
    *[(_with(obj, path, value), ok) for obj, path in INT_OR_STRING for value, ok in VERDICTS],
    # a second containerPort 8080 / port 80: TCP by default (a duplicate), TCP said, UDP
    (_with(DEPLOYMENT, (*CONTAINER, "ports", 1), {"containerPort": 8080}), False),
    (_with(DEPLOYMENT, (*CONTAINER, "ports", 1), {"containerPort": 8080, "protocol": "UDP"}), True),
    (_with(SERVICE, ("spec", "ports", 2), {"port": 80, "protocol": "TCP"}), False),
    (_with(SERVICE, ("spec", "ports", 2), {"port": 80, "protocol": "UDP"}), True),
    (_with(DEPLOYMENT, (*CONTAINER, "env", 2), {"name": "MODE", "value": "c"}), False),
    (_with(CONFIGMAP, ("metadata", "finalizers", 2), "a"), False),
    (_with(WIDGET, ("spec", "tags", 2), "x"), False),
    (_with(WIDGET, ("spec", "parts", 2), {"name": "a", "size": 2}), False),
    (_with(WIDGET, ("spec", "parts", 2), {"name": "c"}), True),
]


def test_each_kubernetes_rule_the_same_either_way() -> None:
    """Cases made for each rule jsonschema-rs is given: int-or-string, list-map keys with a
    defaulted key, sets, and a merge key on a list without a list type."""
    for obj, valid in CASES:
        assert _jsonschema_only(obj) == valid, obj
        assert (SCHEMAS.errors(obj) == []) == valid, obj


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_jsonschema_rs_and_jsonschema_give_the_same_verdict(obj: dict[str, Any]) -> None:
    gvk = f"{obj['apiVersion']}/{obj['kind']}"
    fast = SCHEMAS._valid_fast(gvk, openapi._without_nulls(dict(obj)))
    assert fast == _jsonschema_only(obj), obj
