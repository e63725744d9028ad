"""An environment's sync status: the document, where it is kept, and Kubernetes Events.

The status is what ``promote status`` and ``/status`` show: revision, sync (Synced /
OutOfSync / Failed), health, the last error with its stage, the last drift correction and
counts. It is kept in a ConfigMap ``promote-status-ENV`` in the environment's namespace.
Nothing here holds a secret value: errors were sanitised where they were raised, and drift
corrections name objects and field paths only.
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from promote.cluster import client
from promote.errors import ClusterError

log = logging.getLogger(__name__)


class SyncState(enum.StrEnum):
    """Whether the live state matches Git (Argo CD's words); FAILED: the last pass failed."""

    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    FAILED = "Failed"
    UNVERIFIED = "Unverified"  # the head is not verified: the last verified revision stays
    OUT_OF_WINDOW = "OutOfWindow"  # a new revision waits for a merge window (windowgate.py)
    UNKNOWN = "Unknown"


class Stage(enum.StrEnum):
    """The stage of a pass (DESIGN.md §5), named in status and errors when it fails."""

    FETCH = "fetch"
    VERIFY = "verify"
    RENDER = "render"
    VALIDATE = "validate"
    DECRYPT = "decrypt"
    COMPARE = "compare"
    APPLY = "apply"
    PRUNE = "prune"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Correction:
    object: str  # "Deployment production/web-app"
    paths: list[str]
    at: str


@dataclass(slots=True)
class EnvStatus:
    env: str
    revision: str | None = None
    sync: str = SyncState.UNKNOWN
    health: str = "Unknown"
    health_details: dict[str, str] = field(default_factory=dict)  # object -> "Health: message"
    last_error: dict[str, str] | None = None  # {"stage", "message", "at"}
    last_sync_at: str | None = None
    last_correction: Correction | None = None
    corrections: int = 0
    objects: int = 0
    out_of_sync: list[str] = field(default_factory=list)
    prune_blocked: str | None = None
    leader: str | None = None
    images: dict[str, str] = field(default_factory=dict)  # image name -> ref, from rendering
    healthy_since: str | None = None  # first time these images were Synced + Healthy
    # Trust chain (reconcile/trust.py): {"pin", "verified", "history"}; kept here, in the
    # cluster, because a Git pusher cannot change it. ``unverified``: the refused head, the
    # first offending commit, its files and why (None while the head is verified).
    trust: dict[str, Any] | None = None
    unverified: dict[str, Any] | None = None
    # Verification after deploy (reconcile/postdeploy.py): {"state": Running | Verified |
    # Failed, "reason", "images", "revision", "at"}; None when the environment has none.
    verification: dict[str, Any] | None = None
    # The last Verified version ({"images", "revision", "at"}): what a rollback returns to.
    last_verified: dict[str, Any] | None = None
    # The automatic rollback of the last failed version (reconcile/rollback.py): {"failed"
    # (revision), "images", "pr", "merged", "rejected", "message", "at"}.
    rollback: dict[str, Any] | None = None
    # Merge windows (reconcile/windowgate.py): {"state": "OutOfWindow", "revision" waiting,
    # "window", "nextOpening", "message"} while a new revision waits; the revisions verified
    # after deploy here, oldest first (a rollback to one passes a closed window).
    window: dict[str, Any] | None = None
    verified_revisions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvStatus:
        data = dict(data)
        corr = data.pop("last_correction", None)
        known = {f for f in cls.__dataclass_fields__}
        status = cls(**{k: v for k, v in data.items() if k in known})
        status.last_correction = Correction(**corr) if corr else None
        return status


def configmap_name(env: str) -> str:
    return f"promote-status-{env}"


def write(cluster: client.Cluster, status: EnvStatus, *, namespace: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(status.env),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "promote-agent"},
        },
        "data": {"status.json": json.dumps(status.to_dict(), sort_keys=True)},
    }
    cluster.apply(body, force=True, field_manager="promote-status")


def read(cluster: client.Cluster, *, env: str, namespace: str) -> EnvStatus | None:
    cm = cluster.get(cluster.resource("v1", "ConfigMap"), namespace, configmap_name(env))
    if cm is None:
        return None
    return EnvStatus.from_dict(json.loads((cm.get("data") or {}).get("status.json", "{}")))


def failed_event(cluster: client.Cluster, env: str, namespace: str, message: str) -> None:
    """A Warning ``SyncFailed`` Event on the status ConfigMap (``kubectl get events``)."""
    emit_event(
        cluster,
        regarding=status_object(env, namespace),
        reason="SyncFailed",
        message=message,
        event_type="Warning",
        namespace=namespace,
    )


def status_object(env: str, namespace: str) -> dict[str, Any]:
    """The status ConfigMap as an Event's ``regarding`` object."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name(env), "namespace": namespace},
    }


def emit_event(
    cluster: client.Cluster,
    *,
    regarding: dict[str, Any],
    reason: str,
    message: str,
    event_type: str = "Normal",
    namespace: str,
) -> None:
    """A core/v1 Event about an object (``kubectl get events`` and ``describe`` show it).
    Best effort: a failed event never fails a pass."""
    meta = regarding.get("metadata") or {}
    stamp = now_iso()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'promote')}.{uuid.uuid4().hex[:12]}",
            "namespace": meta.get("namespace") or namespace,
        },
        "involvedObject": {
            "apiVersion": regarding.get("apiVersion"),
            "kind": regarding.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1000],
        "type": event_type,
        "source": {"component": "promote-agent", "host": socket.gethostname()},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        cluster.create(event)
    except ClusterError as exc:
        log.debug("could not record event %s: %s", reason, exc)


def restore_last_sync(cluster: client.Cluster, status: EnvStatus, namespace: str) -> None:
    """Carry the published document's last successful sync time, last verified version and
    last rollback into ``status`` (a new process: `promote sync`, a restart, a new leader)
    unless it has its own already: a rollback is made once per failed version."""
    try:
        previous = read(cluster, env=status.env, namespace=namespace)
    except (ClusterError, ValueError, TypeError) as exc:
        log.debug("%s: no earlier status to restore: %s", status.env, exc)
        return
    if previous is not None and not status.last_sync_at:
        status.last_sync_at = previous.last_sync_at
    if previous is not None:  # what a rollback returns to, and the last one made
        status.last_verified = status.last_verified or previous.last_verified
        status.rollback = status.rollback or previous.rollback
