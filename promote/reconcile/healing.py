"""Self-heal: the watch cache reports a change, and the agent reverts drift at once.

A mixin of :class:`promote.reconcile.agent.Agent` (it shares the agent's lock, desired state,
status and cluster): watch events queue keys; :meth:`Healing.heal_pending` re-checks each
against the last good desired state, confirms the difference with a server-side dry run,
and re-applies with force (or, with selfHeal off, reports OutOfSync); health is judged again
from the cache between passes. It never fetches, renders or decides what is desired.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from promote.cluster import client, drift, health
from promote.cluster.cache import LiveCache
from promote.errors import ClusterError
from promote.reconcile import passes
from promote.reconcile import status as status_mod
from promote.reconcile.metrics import Metrics
from promote.reconcile.status import SyncState

log = logging.getLogger(__name__)


class Healing:
    """The self-heal verbs; the attributes below are the agent's."""

    settings: passes.AgentSettings
    cluster: client.Cluster
    cache: LiveCache
    metrics: Metrics
    status: status_mod.EnvStatus
    _desired: dict[str, dict[str, Any]]
    _heal_queue: dict[str, None]
    _heal_wakeup: threading.Event
    _lock: threading.RLock

    @property
    def self_heal(self) -> bool:
        raise NotImplementedError

    def _assess(self, desired: list[dict[str, Any]], report: passes.PassReport) -> None:
        raise NotImplementedError

    def _confirmed_drift(self, obj: dict[str, Any], live: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def verify_deploy(self) -> None:
        raise NotImplementedError

    def write_status(self) -> None:
        raise NotImplementedError

    def _ensure_watches(self, desired: Sequence[dict[str, Any]]) -> None:
        namespaces: dict[tuple[str, str], set[str]] = {}
        for o in desired:
            ns = (o.get("metadata") or {}).get("namespace") or ""
            namespaces.setdefault((o["apiVersion"], o["kind"]), set()).add(ns)
        for (api_version, kind), seen in sorted(namespaces.items()):
            try:
                rt = self.cluster.resource(api_version, kind)
            except ClusterError:
                continue  # a CRD applied in this pass: its kind is watched next pass
            # One namespace (the usual case): watch only it, which a namespaced Role allows.
            only = self.settings.namespace if seen == {self.settings.namespace} else None
            self.cache.ensure(rt, namespace=only)

    def _on_event(self, etype: str, key: str, live: dict[str, Any] | None) -> None:
        if key not in self._desired:
            return
        self._heal_queue[key] = None  # healed once healing is on (heal_pending re-checks drift)
        self._heal_wakeup.set()

    def heal_pending(self) -> int:
        """Revert drift on objects the watch reported; returns how many were corrected."""
        self._heal_wakeup.clear()
        keys, self._heal_queue = list(self._heal_queue), {}
        fixed = 0
        for key in keys:
            try:
                fixed += self._heal_one(key)
            except ClusterError as exc:
                log.warning(
                    "%s: self-heal of %s failed: %s",
                    self.settings.env,
                    client.describe_key(key),
                    exc,
                )
                self._heal_queue[key] = None
        self.refresh_health()
        return fixed

    def refresh_health(self) -> bool:
        """Judge health again from the watch cache, between passes: a rollout that finishes
        or passes its deadline changes only an object's status, and the soak gate counts from
        the moment it turns Healthy. True when the published health changed."""
        with self._lock:
            st = self.status
            if st.sync != SyncState.SYNCED or not self._desired:
                return False
            report = passes.PassReport()
            self._assess(list(self._desired.values()), report)
            if (report.health, report.health_details) == (st.health, st.health_details):
                return False
            st.health, st.health_details = report.health, report.health_details
            healthy = st.health == str(health.Health.HEALTHY)
            st.healthy_since = (st.healthy_since or status_mod.now_iso()) if healthy else None
            self.verify_deploy()
            self.write_status()
            return True

    def _heal_one(self, key: str) -> int:
        with self._lock:
            desired = self._desired.get(key)
            if desired is None:
                return 0
            live = self.cache.get(key)
            paths = drift.differences(desired, live)
            if paths and live is not None:
                paths = self._confirmed_drift(desired, live)
            if not paths:
                return 0
            what = client.describe_key(key)
            if not self.self_heal:
                if what not in self.status.out_of_sync:
                    self.status.out_of_sync.append(what)
                    self.status.sync = SyncState.OUT_OF_SYNC
                    self.write_status()
                return 0
            result = self.cluster.apply(desired, force=True)
            at = status_mod.now_iso()
            self.status.last_correction = status_mod.Correction(what, paths, at)
            self.status.corrections += 1
            self.metrics.drift_corrections.labels(self.settings.env, desired["kind"]).inc()
            log.info("%s: reverted drift on %s (%s)", self.settings.env, what, ", ".join(paths))
            status_mod.emit_event(
                self.cluster,
                regarding=result or desired,
                reason="DriftReverted",
                message=f"promote reverted drift on {what}: {', '.join(paths)[:500]} "
                f"(revision {self.status.revision or '?'})",
                namespace=self.settings.namespace,
            )
            self.write_status()
            return 1

    def wait_for_heal_work(self, timeout_s: float) -> bool:
        return self._heal_wakeup.wait(timeout_s)
