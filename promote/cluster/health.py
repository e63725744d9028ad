"""Health of live Kubernetes objects, in the words Argo CD users know.

This module owns the per-kind rules that turn one live object into a :class:`HealthStatus`, and
the order that folds many verdicts into one. The rules mirror gitops-engine's ``pkg/health``
(itself borrowed from ``kubectl rollout status``) so an environment reads the same here as in
Argo CD. Kinds without a rule (ConfigMap, Secret, Namespace, custom resources) are Healthy once
they exist.

It is pure: objects come in as plain dicts shaped like the API server's JSON (camelCase keys,
not the kubernetes client's snake_case ``to_dict()``), dataclasses go out. It must not do I/O,
log, or import the kubernetes client; fetching objects and acting on the verdict are its
callers' jobs. Partial objects never raise: an absent or null field reads as the zero value the
API server would have omitted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Obj = Mapping[str, Any]
_ROLLOUT = "Waiting for rollout to finish"  # kubectl rollout status's words, as Argo CD shows


class Health(enum.IntEnum):
    """How an object, or a set of them, is doing; ordered best to worst.

    The order is Argo CD's (gitops-engine ``healthOrder`` and ``IsWorse``), so ``max()`` of
    several is their aggregate. SUSPENDED sits just above HEALTHY: a paused Deployment or a
    suspended Job is at rest because someone asked, not stuck. UNKNOWN is the worst: a verdict
    we cannot make must not hide behind healthier neighbours.
    """

    HEALTHY = 0
    SUSPENDED = 1
    PROGRESSING = 2
    MISSING = 3
    DEGRADED = 4
    UNKNOWN = 5

    def __str__(self) -> str:
        return self.name.capitalize()  # the Argo CD word: "Healthy", "Degraded", ...

    def __format__(self, spec: str) -> str:
        # IntEnum formats as its number once a spec is given (f"{h:>10}"); tables want the word.
        return format(str(self), spec)

    @classmethod
    def from_label(cls, label: str | None) -> Health:
        """The member a status document's word names ("Healthy"); UNKNOWN for anything else."""
        return cls.__members__.get((label or "").upper(), cls.UNKNOWN)


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """One verdict and the reason for it; ``message`` may be empty when Healthy."""

    health: Health
    message: str


def assess_health(obj: Obj | None) -> HealthStatus:
    """Judge one live object; ``None`` (not found in the cluster) is MISSING."""
    if obj is None:
        return HealthStatus(Health.MISSING, "Not found in the cluster")
    if _field(obj, "metadata", "deletionTimestamp"):
        # A finalizer is holding the object: it is on its way out, not broken (gitops-engine
        # reports the same "Pending deletion" before looking at the kind).
        return HealthStatus(Health.PROGRESSING, "Pending deletion")
    # Dispatch on group and kind: a CRD may well call itself "Deployment" in its own group.
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]  # "v1" is the core group ""
    rule = _RULES.get((group, str(obj.get("kind") or "")))
    return rule(obj) if rule else _ok()


def aggregate(statuses: Iterable[HealthStatus]) -> Health:
    """The worst member's health; nothing to judge is HEALTHY, as in Argo CD."""
    return max((status.health for status in statuses), default=Health.HEALTHY)


def assess_all(objects: Mapping[str, Obj | None]) -> dict[str, HealthStatus]:
    """Judge each object, keeping the caller's keys (typically an ObjectRef string)."""
    return {key: assess_health(obj) for key, obj in objects.items()}


# --- helpers: tolerant reads of JSON-decoded objects -------------------------------------------


def _field(obj: Obj, *path: str) -> Any:
    """The value at ``path``, or None when a step is absent, null or not a mapping."""
    current: Any = obj
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _section(obj: Obj, key: str) -> Obj:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _int(obj: Obj, *path: str, default: int = 0) -> int:
    # The API server omits zero counts from status (omitempty), so absent means 0.
    value = _field(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _conditions(obj: Obj) -> list[Obj]:
    found = _field(obj, "status", "conditions")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def _observed(obj: Obj) -> bool:
    """Whether the controller has seen the current spec.

    Every write to spec bumps ``metadata.generation``; the controller copies it to
    ``status.observedGeneration`` only after acting on it. Until then status describes the
    previous spec (or nothing, right after create), so every count in it is stale.
    """
    generation = _int(obj, "metadata", "generation", default=1)
    return _int(obj, "status", "observedGeneration") >= max(generation, 1)


def _name(obj: Obj) -> str:
    return str(_field(obj, "metadata", "name") or "")


def _ok(message: str = "") -> HealthStatus:
    return HealthStatus(Health.HEALTHY, message)


def _waiting(message: str) -> HealthStatus:
    return HealthStatus(Health.PROGRESSING, message)


# --- rules, one per kind ------------------------------------------------------------------------


def _deployment(obj: Obj) -> HealthStatus:
    spec, status = _section(obj, "spec"), _section(obj, "status")
    if spec.get("paused"):
        return HealthStatus(Health.SUSPENDED, "Deployment is paused")
    if not _observed(obj):
        return _waiting(f"{_ROLLOUT}: observed deployment generation less than desired generation")
    # The controller never gives up; it only flags the rollout after progressDeadlineSeconds
    # (600 by default) by setting this reason on the Progressing condition (status False).
    for cond in _conditions(obj):
        if cond.get("type") != "Progressing" or cond.get("reason") != "ProgressDeadlineExceeded":
            continue
        if _predates_template(obj, cond):
            # The previous rollout's verdict, kept until the controller sees the new one make
            # progress: not about the pods the current template asks for (see below).
            continue
        message = f'Deployment "{_name(obj)}" exceeded its progress deadline'
        return HealthStatus(Health.DEGRADED, message)
    # The API server defaults spec.replicas to 1; an HPA-managed manifest may leave it out.
    desired = _int(spec, "replicas", default=1)
    updated, total = _int(status, "updatedReplicas"), _int(status, "replicas")
    available = _int(status, "availableReplicas")
    if updated < desired:
        return _waiting(f"{_ROLLOUT}: {updated} out of {desired} new replicas have been updated...")
    if total > updated:
        # maxSurge: new pods are up but the old ReplicaSet has not finished scaling down.
        return _waiting(f"{_ROLLOUT}: {total - updated} old replicas are pending termination...")
    if available < updated:
        # Available means Ready for minReadySeconds, so this lags readiness by that much.
        return _waiting(f"{_ROLLOUT}: {available} of {updated} updated replicas are available...")
    return _ok()  # also scaled to 0 with nothing left running


def _predates_template(obj: Obj, cond: Obj) -> bool:
    """Whether ``cond`` was set before the pod template was last written.

    After a rollback to a ReplicaSet that is already Ready, the controller's first status for
    the new generation keeps the failed rollout's ProgressDeadlineExceeded (it replaces the
    condition only once it counts progress, and nothing has moved yet), so observedGeneration
    is current while the condition is not. A deadline for the current template can only pass
    at least progressDeadlineSeconds (>= 1 s) after that template was written, so a condition
    updated no later than the write (``managedFields``, the newest time of an entry owning
    ``spec.template``, not the status subresource) is the old rollout's. Conditions carry the
    controller's clock and managedFields the API server's; without managedFields (stripped,
    very old servers) the condition counts, as in kubectl and Argo CD. Limit: that manager's
    entry also moves when it changes only the metadata it owns (the agent re-applies an object
    only when its render changed), which hides a standing deadline until the next rollout.
    """
    updated = _time(cond.get("lastUpdateTime"))
    found = _field(obj, "metadata", "managedFields")
    written = [
        stamp
        for entry in (found if isinstance(found, list) else [])
        if isinstance(entry, Mapping) and not entry.get("subresource")
        and isinstance(_field(entry, "fieldsV1", "f:spec", "f:template"), Mapping)
        and (stamp := _time(entry.get("time"))) is not None
    ]  # fmt: skip
    return updated is not None and bool(written) and updated <= max(written)


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time from a status document; None when absent or malformed."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _statefulset(obj: Obj) -> HealthStatus:
    spec, status = _section(obj, "spec"), _section(obj, "status")
    if not _observed(obj):
        return _waiting("Waiting for statefulset spec update to be observed...")
    desired, ready = _int(spec, "replicas", default=1), _int(status, "readyReplicas")
    if ready < desired:
        return _waiting(f"Waiting for {desired - ready} pods to be ready...")
    strategy = _section(spec, "updateStrategy")
    updated = _int(status, "updatedReplicas")
    if strategy.get("type") == "OnDelete":
        # Pods move to the new revision only when someone deletes them: old pods are the plan.
        return _ok(f"statefulset has {ready} ready pods")
    if isinstance(strategy.get("rollingUpdate"), Mapping):
        # Only ordinals >= partition are updated, so currentRevision lags updateRevision by
        # design while a partition holds (canary); judge by counts, as kubectl does. The API
        # server defaults rollingUpdate.partition to 0, so live objects always take this path.
        target = desired - _int(strategy, "rollingUpdate", "partition")
        if updated < target:
            return _waiting(
                f"Waiting for partitioned roll out to finish: "
                f"{updated} out of {target} new pods have been updated..."
            )
        return _ok(f"partitioned roll out complete: {updated} new pods have been updated...")
    current, update = status.get("currentRevision"), status.get("updateRevision")
    if current != update:
        return _waiting(
            f"waiting for statefulset rolling update to complete "
            f"{updated} pods at revision {update}..."
        )
    return _ok(f"statefulset rolling update complete {ready} pods at revision {current}...")


def _daemonset(obj: Obj) -> HealthStatus:
    status = _section(obj, "status")
    if not _observed(obj):
        return _waiting(f"{_ROLLOUT}: observed daemon set generation less than desired generation")
    # desiredNumberScheduled counts eligible nodes, not a spec field: 0 when no node matches
    # the selector, which is Healthy (nothing to run), as in Argo CD.
    desired = _int(status, "desiredNumberScheduled")
    updated, available = _int(status, "updatedNumberScheduled"), _int(status, "numberAvailable")
    if _field(obj, "spec", "updateStrategy", "type") == "OnDelete":
        # Checked before the counts: with OnDelete, updated pods trail until someone deletes
        # the old ones, so the counts would read Progressing forever (gitops-engine does too).
        return _ok(f"daemon set {updated} out of {desired} new pods have been updated")
    prefix = f'Waiting for daemon set "{_name(obj)}" rollout to finish'
    if updated < desired:
        return _waiting(f"{prefix}: {updated} out of {desired} new pods have been updated...")
    if available < desired:
        return _waiting(f"{prefix}: {available} of {desired} updated pods are available...")
    return _ok()


def _job(obj: Obj) -> HealthStatus:
    true = {c.get("type"): c for c in _conditions(obj) if c.get("status") == "True"}
    # Since Kubernetes 1.31 the controller first sets FailureTarget / SuccessCriteriaMet and
    # adds Failed / Complete only once the Job's pods have terminated; the outcome is known at
    # the first, so we report it then.
    for kind in ("Failed", "FailureTarget"):
        if kind in true:
            cond = true[kind]
            return HealthStatus(Health.DEGRADED, str(cond.get("message") or cond["type"]))
    for kind in ("Complete", "SuccessCriteriaMet"):
        if kind in true:
            return _ok(str(true[kind].get("message") or ""))
    if _field(obj, "spec", "suspend") or "Suspended" in true:
        return HealthStatus(Health.SUSPENDED, "Job is suspended")
    active = _int(obj, "status", "active")
    return _waiting(f"Waiting for job to complete: {active} pods active")


def _pvc(obj: Obj) -> HealthStatus:
    phase = _field(obj, "status", "phase")
    if phase == "Bound":
        return _ok()
    if phase == "Pending":
        # A WaitForFirstConsumer storage class binds only when a pod first uses the claim, so a
        # claim nothing mounts yet stays Pending: that is waiting, not failure.
        return _waiting("Waiting for the claim to be bound")
    if phase == "Lost":
        # The PersistentVolume it was bound to is gone; its data may be too.
        return HealthStatus(Health.DEGRADED, "Claim lost its bound volume")
    return HealthStatus(Health.UNKNOWN, f"Unknown claim phase {phase!r}")


def _service(obj: Obj) -> HealthStatus:
    if _field(obj, "spec", "type") != "LoadBalancer":
        return _ok()
    # Without a load-balancer controller (kind, bare metal without MetalLB) ingress never
    # appears and the Service stays Progressing: Argo CD accepts the same.
    ingress = _field(obj, "status", "loadBalancer", "ingress")
    return _ok() if isinstance(ingress, list) and ingress else _waiting("Waiting for load balancer")


def _pod(obj: Obj) -> HealthStatus:
    status = _section(obj, "status")
    found = status.get("containerStatuses")
    containers = [s for s in found if isinstance(s, Mapping)] if isinstance(found, list) else []
    message = str(status.get("message") or "")
    restart_always = (_field(obj, "spec", "restartPolicy") or "Always") == "Always"
    # A waiting reason such as CrashLoopBackOff, ImagePullBackOff or ErrImagePull leaves the pod
    # Running or Pending while it gets nowhere. Only for restartPolicy Always: a run-once pod
    # (a hook) is judged by its phase, so a transient pull error does not fail it early.
    stuck = [_waiting_reason(c) for c in containers] if restart_always else []
    if any(stuck):
        return HealthStatus(Health.DEGRADED, "; ".join(filter(None, stuck)))
    phase = status.get("phase")
    if phase == "Succeeded":
        return _ok(message)
    if phase == "Failed":
        # status.message is set for evictions; otherwise the containers say what went wrong.
        exits = [
            f'container "{c.get("name")}" failed with exit code {code}'
            for c in containers
            if (code := _int(c, "state", "terminated", "exitCode"))
        ]
        return HealthStatus(Health.DEGRADED, message or "; ".join(exits) or "Pod failed")
    if phase == "Pending":
        return _waiting(message)
    if phase == "Running":
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in _conditions(obj)
        )
        # A run-once pod that is running has not finished its work yet.
        return _ok(message) if ready and restart_always else _waiting(message)
    return HealthStatus(Health.UNKNOWN, message or f"Unknown pod phase {phase!r}")


def _waiting_reason(container: Obj) -> str:
    """``reason: message`` if the container waits on an error (gitops-engine's test), else ""."""
    waiting = _section(_section(container, "state"), "waiting")
    reason, detail = str(waiting.get("reason") or ""), str(waiting.get("message") or "")
    if not (reason.startswith("Err") or reason.endswith(("Error", "BackOff"))):
        return ""
    return f"{reason}: {detail}" if detail else reason


_RULES: dict[tuple[str, str], Callable[[Obj], HealthStatus]] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Service"): _service,
    ("", "Pod"): _pod,
}
