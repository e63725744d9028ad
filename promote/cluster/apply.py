"""Prepare desired objects and apply them with server-side apply.

Owns the *how* of writing to the cluster: our labels and revision annotation on every object,
the default namespace, the order (Namespaces and CRDs before what needs them), and parallel
server-side apply with field manager ``promote``. It does not decide *what* to apply: the
reconcile loop does, from the drift comparison.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from promote.cluster import client
from promote.errors import ClusterError

log = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
ENV_LABEL = "promote.dev/environment"
REVISION_ANNOTATION = "promote.dev/revision"
MANAGER = "promote"

# Kinds that others depend on go first (Argo CD's sync waves put these at the front, too).
_ORDER = {
    "Namespace": 0,
    "CustomResourceDefinition": 1,
    "ServiceAccount": 2,
    "ClusterRole": 3,
    "Role": 3,
    "ClusterRoleBinding": 4,
    "RoleBinding": 4,
    "Secret": 5,
    "ConfigMap": 5,
    "PersistentVolumeClaim": 6,
    "Service": 7,
}
_CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


class ApplyMode(enum.Enum):
    APPLY = "apply"
    FORCE = "force"  # self-heal: take fields back from whoever changed them
    DRY_RUN = "dry-run"  # server-side dry run: what the object would become


def selector(env: str) -> str:
    return f"{MANAGED_BY}={MANAGER},{ENV_LABEL}={env}"


def prepare(
    objects: Iterable[dict[str, Any]], *, env: str, namespace: str, revision: str
) -> list[dict[str, Any]]:
    """Copies with our labels and revision, the default namespace, in apply order."""
    out = []
    for obj in objects:
        o = copy.deepcopy(obj)
        o.pop("status", None)
        meta = o.setdefault("metadata", {})
        labels = meta.setdefault("labels", {}) or {}
        meta["labels"] = labels
        labels[MANAGED_BY] = MANAGER
        labels[ENV_LABEL] = env
        annotations = meta.setdefault("annotations", {}) or {}
        meta["annotations"] = annotations
        annotations[REVISION_ANNOTATION] = revision
        if o.get("kind") not in _CLUSTER_SCOPED and not meta.get("namespace"):
            meta["namespace"] = namespace
        out.append(o)
    out.sort(key=lambda o: (_ORDER.get(str(o.get("kind")), 10), client.object_key(o)))
    return out


@dataclass(frozen=True, slots=True)
class ApplyResult:
    key: str
    live: dict[str, Any] | None
    error: ClusterError | None = None


def apply_objects(
    cluster: client.Cluster,
    objects: Sequence[dict[str, Any]],
    *,
    mode: ApplyMode = ApplyMode.APPLY,
    workers: int = 8,
) -> list[ApplyResult]:
    """Apply in order: each ordering tier completes before the next starts, objects within a
    tier in parallel. Errors are returned per object (the loop decides what they mean)."""
    results: list[ApplyResult] = []
    tiers: dict[int, list[dict[str, Any]]] = {}
    for obj in objects:
        tiers.setdefault(_ORDER.get(str(obj.get("kind")), 10), []).append(obj)

    force = mode is not ApplyMode.APPLY  # a dry run forces too: "what if we took it back"
    dry_run = mode is ApplyMode.DRY_RUN

    def one(obj: dict[str, Any]) -> ApplyResult:
        key = client.object_key(obj)
        try:
            return ApplyResult(key, cluster.apply(obj, force=force, dry_run=dry_run))
        except ClusterError as exc:
            return ApplyResult(key, None, exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for tier in sorted(tiers):
            results.extend(pool.map(one, tiers[tier]))
            if tier == _ORDER["CustomResourceDefinition"] and tiers[tier]:
                cluster.forget_discovery()  # the kinds those CRDs define are served now
    return results


# --- the inventory's storage: a ConfigMap beside what it lists ------------------------------


def inventory_name(env: str) -> str:
    return f"promote-inventory-{env}"


def read_inventory(cluster: client.Cluster, *, env: str, namespace: str) -> list[str] | None:
    rt = cluster.resource("v1", "ConfigMap")
    cm = cluster.get(rt, namespace, inventory_name(env))
    if cm is None:
        return None
    return list(json.loads((cm.get("data") or {}).get("objects", "[]")))


def write_inventory(
    cluster: client.Cluster, keys: Iterable[str], *, env: str, namespace: str, revision: str
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": inventory_name(env),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "promote-agent"},
        },
        "data": {"objects": json.dumps(sorted(set(keys))), "revision": revision},
    }
    cluster.apply(body, force=True, field_manager="promote-inventory")
