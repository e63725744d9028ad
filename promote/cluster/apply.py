"""Prepare desired objects and apply them with server-side apply.

Owns the *how* of writing to the cluster: our labels and revision annotation on every object,
each object's namespace as its kind's scope (from discovery) calls for, the order (Namespaces
and CRDs before what needs them), and parallel server-side apply with field manager
``promote``. It does not decide *what* to apply: the reconcile loop does, from the drift
comparison.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from promote.cluster import client, statuses
from promote.errors import ClusterError, ClusterUnavailable

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


class ApplyMode(enum.Enum):
    APPLY = "apply"
    FORCE = "force"  # self-heal: take fields back from whoever changed them
    DRY_RUN = "dry-run"  # server-side dry run: what the object would become


def selector(env: str) -> str:
    return f"{MANAGED_BY}={MANAGER},{ENV_LABEL}={env}"


def prepare(objects: Iterable[dict[str, Any]], *, env: str, revision: str) -> list[dict[str, Any]]:
    """Copies with our labels and revision, in apply order (namespaces: :func:`scope`)."""
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
        out.append(o)
    out.sort(key=lambda o: (_ORDER.get(str(o.get("kind")), 10), client.object_key(o)))
    return out


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _crd_scopes(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str], bool]:
    """``{(group, kind): namespaced}`` of the CRDs among the objects."""
    out = {}
    for obj in objects:
        if obj.get("kind") == "CustomResourceDefinition":
            spec = obj.get("spec") or {}
            kind = str((spec.get("names") or {}).get("kind", ""))
            out[(str(spec.get("group", "")), kind)] = spec.get("scope") != "Cluster"
    return out


def scope(
    cluster: client.Cluster, objects: Sequence[dict[str, Any]], *, namespace: str
) -> list[dict[str, Any]]:
    """Each object with the namespace its kind's scope calls for, from discovery: the default
    namespace on a namespaced kind that has none, none at all on a cluster-scoped kind.

    Never from the rendered YAML: kustomize's ``namespace:`` stamps every kind it does not
    know, cluster-scoped custom resources included. A kind that a CRD of this same render
    defines takes that CRD's ``spec.scope`` (discovery serves it only once it is applied); a
    kind nothing defines is left as rendered, with the default namespace (its apply fails)."""
    defined = _crd_scopes(objects)
    known: dict[tuple[str, str], bool | None] = {}
    out = []
    for obj in objects:
        ident = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if ident not in known:
            namespaced = cluster.namespaced(*ident)
            if namespaced is None:
                namespaced = defined.get((_group(ident[0]), ident[1]))
            known[ident] = namespaced
        namespaced = known[ident]
        meta = obj.get("metadata") or {}
        if namespaced is False and "namespace" in meta:
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
        elif namespaced is not False and not meta.get("namespace"):
            obj = {**obj, "metadata": {**meta, "namespace": namespace}}
        out.append(obj)
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
    crd_tier = _ORDER["CustomResourceDefinition"]

    def one(obj: dict[str, Any]) -> ApplyResult:
        key = client.object_key(obj)
        try:
            return ApplyResult(key, _apply_waiting(cluster, obj, force=force, dry_run=dry_run))
        except statuses.Immutable as exc:
            if dry_run or not replace_opted_in(obj):
                return ApplyResult(key, None, exc)
            try:
                return ApplyResult(key, _recreate(cluster, obj))
            except ClusterError as again:
                return ApplyResult(key, None, again)
        except ClusterError as exc:
            return ApplyResult(key, None, exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for tier in sorted(tiers):
            if tier == crd_tier and not dry_run:
                gone = _await_deleted(cluster, tiers[tier])
                batch = [gone.get(client.object_key(o)) or one(o) for o in tiers[tier]]
                results.extend(_await_served(cluster, batch))
            else:
                results.extend(pool.map(one, tiers[tier]))
    return results


def _apply_waiting(
    cluster: client.Cluster, obj: dict[str, Any], *, force: bool, dry_run: bool
) -> dict[str, Any] | None:
    """Apply; a custom resource whose CRD the API server still knows as terminating (its old
    incarnation, pruned moments before this pass re-created it), or whose endpoint answers
    404 although discovery serves the kind (the handler of the new CRD is still being set
    up: server-side apply creates missing objects, so 404 means the endpoint), is retried
    until the new CRD answers, within CRD_WAIT_S (CRD_SETTLE_S for the 404)."""
    started = time.monotonic()
    while True:
        try:
            return cluster.apply(obj, force=force, dry_run=dry_run)
        except statuses.CrdTerminating:
            if time.monotonic() - started > CRD_WAIT_S:
                raise
        except statuses.NotFoundInCluster:
            group = str(obj.get("apiVersion", "v1")).rpartition("/")[0]
            if "." in group and time.monotonic() - started <= CRD_SETTLE_S:  # a CRD's group
                time.sleep(_CRD_POLL_S)
                continue
            raise
        time.sleep(_CRD_POLL_S)


# --- replacing an object whose change an immutable field refuses -----------------------------

SYNC_OPTIONS = "promote.dev/sync-options"  # Argo CD's argocd.argoproj.io/sync-options, ours


def replace_opted_in(obj: dict[str, Any]) -> bool:
    """Whether the object asks to be replaced when an immutable field refuses a patch:
    annotation ``promote.dev/sync-options: Replace=true`` (comma-separated options)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    options = str(annotations.get(SYNC_OPTIONS, ""))
    return any(o.strip().lower() == "replace=true" for o in options.split(","))


def _recreate(cluster: client.Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    """Delete the object, wait until it is gone, and apply it anew (Flux's ``force``)."""
    rt = cluster.resource_of(obj)
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), str(meta.get("name"))
    log.info("replacing %s %s: an immutable field changed", rt.kind, name)
    cluster.delete(rt, ns, name)
    deadline = time.monotonic() + CRD_WAIT_S
    while cluster.get(rt, ns, name) is not None:  # finalizers may hold it a moment
        if time.monotonic() > deadline:
            raise ClusterUnavailable(
                f"{rt.kind} {name} is still being deleted after {CRD_WAIT_S:.0f}s; "
                "it is created again on the next pass."
            )
        time.sleep(_CRD_POLL_S)
    return cluster.apply(obj, force=True)


# --- CRDs: served before their custom resources are applied ---------------------------------

CRD_WAIT_S = 60.0  # establishing is quick; deleting a CRD waits for its resources to go
CRD_SETTLE_S = 10.0  # a re-created CRD's endpoint may answer 404 this long after Established
_CRD_POLL_S = 0.1


def _await_deleted(
    cluster: client.Cluster, crds: Sequence[dict[str, Any]]
) -> dict[str, ApplyResult]:
    """Wait until CRDs that are being deleted (a prune a moment ago) are gone, so the apply
    creates them anew; an apply would only touch the dying object, and its kind would vanish
    under the resources applied next. Returns an error result for each that outlives the wait."""
    rt = cluster.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    failed: dict[str, ApplyResult] = {}
    for obj in crds:
        name = str((obj.get("metadata") or {}).get("name"))
        deadline = time.monotonic() + CRD_WAIT_S
        while True:
            try:
                live = cluster.get(rt, None, name)
            except ClusterError as exc:
                failed[client.object_key(obj)] = ApplyResult(client.object_key(obj), None, exc)
                break
            if live is None or not (live.get("metadata") or {}).get("deletionTimestamp"):
                break
            if time.monotonic() > deadline:
                failed[client.object_key(obj)] = ApplyResult(
                    client.object_key(obj),
                    None,
                    ClusterUnavailable(
                        f"CustomResourceDefinition {name} is still being deleted after "
                        f"{CRD_WAIT_S:.0f}s; it is applied again once it is gone."
                    ),
                )
                break
            time.sleep(_CRD_POLL_S)
    return failed


def _established(crd: dict[str, Any] | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _served_kinds(crd: dict[str, Any]) -> list[tuple[str, str]]:
    spec = crd.get("spec") or {}
    kind = str((spec.get("names") or {}).get("kind", ""))
    return [
        (f"{spec.get('group')}/{v.get('name')}", kind)
        for v in spec.get("versions") or []
        if v.get("served", True)
    ]


def _await_served(cluster: client.Cluster, batch: list[ApplyResult]) -> list[ApplyResult]:
    """Wait until each applied CRD is Established and discovery serves its kinds (discovery
    refreshed), so its custom resources, applied next, find their endpoint."""
    rt = cluster.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    out = []
    for result in batch:
        if result.error is not None or result.live is None:
            out.append(result)
            continue
        name = str(result.live["metadata"]["name"])
        deadline = time.monotonic() + CRD_WAIT_S
        try:
            live: dict[str, Any] | None = result.live
            while not _established(live):
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(
                        f"CustomResourceDefinition {name} was not Established within "
                        f"{CRD_WAIT_S:.0f}s."
                    )
                time.sleep(_CRD_POLL_S)
                live = cluster.get(rt, None, name)
            for api_version, kind in _served_kinds(live or result.live):
                cluster.forget_discovery()
                while cluster.namespaced(api_version, kind) is None:
                    if time.monotonic() > deadline:
                        raise ClusterUnavailable(
                            f"the API server does not serve {kind} in {api_version} "
                            f"{CRD_WAIT_S:.0f}s after its CustomResourceDefinition {name} "
                            "was established."
                        )
                    time.sleep(_CRD_POLL_S)
        except ClusterError as exc:
            out.append(ApplyResult(result.key, result.live, exc))
            continue
        out.append(result)
    return out


def prune_order(keys: Iterable[str]) -> list[str]:
    """Keys in reverse apply order: custom resources before their CRDs, Namespaces last."""
    return sorted(keys, key=lambda k: (-_ORDER.get(k.split("/", 3)[1], 10), k))


# --- the inventory's storage: a ConfigMap beside what it lists ------------------------------


def inventory_name(env: str) -> str:
    return f"promote-inventory-{env}"


def read_inventory(cluster: client.Cluster, *, env: str, namespace: str) -> list[str] | None:
    rt = cluster.resource("v1", "ConfigMap")
    cm = cluster.get(rt, namespace, inventory_name(env))
    if cm is None:
        return None
    keys = json.loads((cm.get("data") or {}).get("objects", "[]"))
    # Scope from discovery here too: an older inventory may list a cluster-scoped object
    # under the namespace kustomize stamped on it.
    return sorted({cluster.scoped_key(str(k)) for k in keys})


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
