"""Which admission requests a policy or binding matches, as the API server decides (pure).

Rules name *resources* (``deployments``), objects carry *kinds* (``Deployment``); the API server
maps one to the other by discovery. Offline we use the built-in table below plus the
CustomResourceDefinitions in the render; a kind found in neither is :data:`UNKNOWN` to a rule
that could match it, and the evaluator reports "not evaluated" instead of guessing.
``namespaceSelector`` needs the namespace's labels: those of a Namespace in the render, or only
``kubernetes.io/metadata.name`` (the label the API server always sets) when the namespace is
not rendered; a selector on other labels of an unrendered namespace is also UNKNOWN.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from promote.policy import model

NAME_LABEL = "kubernetes.io/metadata.name"

# (group, Kind) -> (resource, namespaced) for the built-in kinds an overlay renders.
_BUILTIN: dict[tuple[str, str], tuple[str, bool]] = {
    ("", "ConfigMap"): ("configmaps", True),
    ("", "Secret"): ("secrets", True),
    ("", "Service"): ("services", True),
    ("", "ServiceAccount"): ("serviceaccounts", True),
    ("", "Pod"): ("pods", True),
    ("", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("", "PersistentVolume"): ("persistentvolumes", False),
    ("", "Namespace"): ("namespaces", False),
    ("", "LimitRange"): ("limitranges", True),
    ("", "ResourceQuota"): ("resourcequotas", True),
    ("", "Endpoints"): ("endpoints", True),
    ("", "ReplicationController"): ("replicationcontrollers", True),
    ("", "Node"): ("nodes", False),
    ("apps", "Deployment"): ("deployments", True),
    ("apps", "StatefulSet"): ("statefulsets", True),
    ("apps", "DaemonSet"): ("daemonsets", True),
    ("apps", "ReplicaSet"): ("replicasets", True),
    ("batch", "Job"): ("jobs", True),
    ("batch", "CronJob"): ("cronjobs", True),
    ("autoscaling", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("policy", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io", "Ingress"): ("ingresses", True),
    ("networking.k8s.io", "IngressClass"): ("ingressclasses", False),
    ("networking.k8s.io", "NetworkPolicy"): ("networkpolicies", True),
    ("rbac.authorization.k8s.io", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("storage.k8s.io", "StorageClass"): ("storageclasses", False),
    ("scheduling.k8s.io", "PriorityClass"): ("priorityclasses", False),
    ("coordination.k8s.io", "Lease"): ("leases", True),
    ("discovery.k8s.io", "EndpointSlice"): ("endpointslices", True),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): (
        "validatingadmissionpolicies",
        False,
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"): (
        "validatingadmissionpolicybindings",
        False,
    ),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (
        "validatingwebhookconfigurations",
        False,
    ),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (
        "mutatingwebhookconfigurations",
        False,
    ),
}


class Match(enum.Enum):
    NO = "no"
    YES = "yes"
    UNKNOWN = "unknown"  # cannot tell offline; the reason travels beside it


@dataclass(frozen=True, slots=True)
class Resource:
    """What discovery would say about an object's kind (None: nobody knows)."""

    group: str
    version: str
    kind: str
    resource: str | None
    namespaced: bool | None


@dataclass(frozen=True, slots=True)
class Request:
    """One admission request: the object (or, for DELETE, the old one) and where it lives."""

    operation: str  # CREATE | UPDATE | DELETE
    resource: Resource
    name: str
    namespace: str  # "" for cluster-scoped objects
    labels: Mapping[str, str]
    old_labels: Mapping[str, str] | None = None
    namespace_labels: Mapping[str, str] | None = None  # None: the namespace is not rendered


def resources_of(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], tuple[str, bool]]:
    """The built-in table plus what the CustomResourceDefinitions in ``objects`` declare."""
    table = dict(_BUILTIN)
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("group") and names.get("kind") and names.get("plural"):
            namespaced = spec.get("scope", "Namespaced") == "Namespaced"
            table[(spec["group"], names["kind"])] = (names["plural"], namespaced)
    return table


def resource_of(
    obj: Mapping[str, Any], table: Mapping[tuple[str, str], tuple[str, bool]]
) -> Resource:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    kind = str(obj.get("kind", ""))
    found = table.get((group, kind))
    if found is None:
        return Resource(group, version, kind, None, None)
    return Resource(group, version, kind, found[0], found[1])


def _any(patterns: tuple[str, ...], value: str) -> bool:
    return "*" in patterns or value in patterns


def _rule(rule: model.Rule, req: Request, exact: bool) -> tuple[Match, str]:
    res = req.resource
    if not (_any(rule.operations, req.operation) and _any(rule.api_groups, res.group)):
        return Match.NO, ""
    if exact and not _any(rule.api_versions, res.version):
        return Match.NO, ""
    if rule.resource_names and req.name not in rule.resource_names:
        return Match.NO, ""
    wildcard = "*" in rule.resources or "*/*" in rule.resources
    if res.resource is None:
        if wildcard and rule.scope == "*":
            return Match.YES, ""
        why = (
            f"{res.kind} ({res.group or 'core'}/{res.version}) is not a built-in kind and "
            "no CustomResourceDefinition for it is rendered, so its resource name and scope "
            "are unknown"
        )
        return Match.UNKNOWN, why
    if not (wildcard or res.resource in rule.resources):
        return Match.NO, ""
    if (rule.scope == "Cluster" and res.namespaced) or (
        rule.scope == "Namespaced" and not res.namespaced
    ):
        return Match.NO, ""
    return Match.YES, ""


def _rules(rules: tuple[model.Rule, ...], req: Request, exact: bool) -> tuple[Match, str]:
    unknown = ""
    for rule in rules:
        found, why = _rule(rule, req, exact)
        if found is Match.YES:
            return Match.YES, ""
        unknown = unknown or why
    return (Match.UNKNOWN, unknown) if unknown else (Match.NO, "")


def selects(sel: model.Selector, labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in sel.match_labels.items()):
        return False
    for r in sel.expressions:
        has, value = r.key in labels, labels.get(r.key)
        ok = {
            "In": has and value in r.values,
            "NotIn": not has or value not in r.values,
            "Exists": has,
            "DoesNotExist": not has,
        }[r.operator]
        if not ok:
            return False
    return True


def _namespace(sel: model.Selector, req: Request) -> tuple[Match, str]:
    if sel.empty:
        return Match.YES, ""
    if req.resource.kind == "Namespace" and req.resource.group == "":
        own = {**req.labels, NAME_LABEL: req.name}
        return (Match.YES if selects(sel, own) else Match.NO), ""
    if not req.namespace:  # other cluster-scoped objects: the selector never skips them
        return (Match.YES if req.resource.namespaced is False else Match.UNKNOWN), (
            "" if req.resource.namespaced is False else f"{req.resource.kind} is not a known kind"
        )
    labels: Mapping[str, str] | None = req.namespace_labels
    if labels is None:
        if sel.keys() - {NAME_LABEL}:
            return Match.UNKNOWN, (
                f"the namespaceSelector reads labels of namespace {req.namespace}, which is not "
                "in the rendered manifests (add the Namespace to the overlay)"
            )
        labels = {}
    return (Match.YES if selects(sel, {**labels, NAME_LABEL: req.namespace}) else Match.NO), ""


def matches(m: model.MatchResources, req: Request) -> tuple[Match, str]:
    """Whether ``m`` selects ``req``: resource rules, exclusions, namespace and object selectors."""
    exact = m.match_policy == "Exact"
    found, why = _namespace(m.namespace_selector, req)
    if found is Match.NO:
        return found, ""
    unknown = why
    olds = [req.labels] + ([req.old_labels] if req.old_labels is not None else [])
    if not m.object_selector.empty and not any(selects(m.object_selector, lb) for lb in olds):
        return Match.NO, ""
    excluded, why = _rules(m.exclude, req, exact)
    if excluded is Match.YES:
        return Match.NO, ""
    unknown = unknown or why
    if m.rules:  # a binding's matchResources without rules matches what its policy matches
        found, why = _rules(m.rules, req, exact)
        if found is Match.NO:
            return Match.NO, ""
        unknown = unknown or why
    return (Match.UNKNOWN, unknown) if unknown else (Match.YES, "")
