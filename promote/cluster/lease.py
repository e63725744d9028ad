"""Leader election with a ``coordination.k8s.io/v1`` Lease (as client-go's leaderelection).

Several replicas of one environment's agent share the Lease ``promote-agent-ENV``; the holder
renews it every ``renew_s``; a standby takes over once ``renewTime + leaseDurationSeconds`` has
passed. Updates use the Lease's resourceVersion (optimistic concurrency), so two standbys can
never both win. With the defaults a standby takes over within 12 s of the leader's death.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from promote.cluster import client
from promote.errors import ClusterError

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(s: str | None) -> datetime | None:
    if not s:
        return None
    s = s.rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    duration_s: int = 10  # a holder silent this long is presumed dead
    renew_s: float = 3.0  # how often the holder renews (and a standby retries)


class LeaderElector:
    def __init__(
        self,
        cluster: client.Cluster,
        *,
        name: str,
        namespace: str,
        identity: str,
        settings: LeaseSettings | None = None,
    ) -> None:
        self._cluster = cluster
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.settings = settings or LeaseSettings()
        self.is_leader = False

    def _rt(self) -> client.ResourceType:
        return self._cluster.resource("coordination.k8s.io/v1", "Lease")

    def try_acquire_or_renew(self) -> bool:
        """One attempt; returns whether we hold the lease now. Never raises on a lost race."""
        rt = self._rt()
        now = _now()
        try:
            lease = self._cluster.get(rt, self.namespace, self.name)
            spec: dict[str, Any] = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.settings.duration_s,
                "renewTime": _fmt(now),
            }
            if lease is None:
                spec["acquireTime"] = _fmt(now)
                spec["leaseTransitions"] = 0
                self._cluster.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": spec,
                    }
                )
                return self._set(True)
            current = lease.get("spec") or {}
            holder = current.get("holderIdentity")
            renewed = _parse(current.get("renewTime")) or datetime.min.replace(tzinfo=UTC)
            duration = int(current.get("leaseDurationSeconds") or self.settings.duration_s)
            expired = now > renewed + timedelta(seconds=duration)
            if holder != self.identity and holder and not expired:
                return self._set(False)
            if holder != self.identity:
                spec["acquireTime"] = _fmt(now)
                spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
                log.info("taking over lease %s from %s", self.name, holder)
            else:
                spec["acquireTime"] = current.get("acquireTime") or _fmt(now)
                spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0)
            lease["spec"] = spec
            self._cluster.replace(lease)  # carries resourceVersion: loses a race with 409
            return self._set(True)
        except ClusterError as exc:
            log.debug("lease %s: %s", self.name, exc)
            return self._set(False)

    def release(self) -> None:
        if not self.is_leader:
            return
        try:
            lease = self._cluster.get(self._rt(), self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                self._cluster.replace(lease)
        except ClusterError:
            pass
        self.is_leader = False

    def _set(self, leader: bool) -> bool:
        if leader != self.is_leader:
            log.info("lease %s: %s", self.name, "acquired" if leader else "lost/standby")
        self.is_leader = leader
        return leader
