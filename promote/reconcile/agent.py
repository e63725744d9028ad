"""One environment's reconcile pass, and the self-heal path the watch cache drives.

A pass runs the stages of DESIGN §5 in order: fetch, render, validate, decrypt, compare,
apply, prune, health, status. Every stage before apply only computes; a failure there applies
nothing and leaves the last good state in the cluster, and the status names the stage. The
adapters (Git source, kustomize, secret resolver, cluster) are passed in, never built here,
so tests point them at 127.0.0.1. This module sequences; the rules live in the pure modules
(``validation``, ``cluster.drift``, ``cluster.inventory``, ``cluster.health``), the prune
stage's deletions in ``reconcile/pruning.py``, and the self-heal path in ``reconcile/healing.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promote import config
from promote.cluster import apply, client, drift, health, statuses
from promote.cluster.cache import LiveCache
from promote.errors import ClusterError
from promote.kustomize import render
from promote.reconcile import healing, passes, pruning, rollback, verdicts, verifying, windowgate
from promote.reconcile import status as status_mod
from promote.reconcile.desired import DesiredState, ResolverFor, SecretResolver, StageFailed, stage
from promote.reconcile.metrics import Metrics
from promote.reconcile.source import GitSource
from promote.reconcile.status import Stage, SyncState
from promote.reconcile.trust import TrustGate

log = logging.getLogger(__name__)


# The agent's settings and a pass's report live in ``reconcile/passes.py``; named here too.
AgentSettings = passes.AgentSettings
PassReport = passes.PassReport


def _digest(obj: dict[str, Any]) -> str:
    """Identity of what we would apply, without the revision annotation (see drift.py)."""
    shape = drift.comparable(obj)
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()


class Agent(verifying.Verifying, healing.Healing):
    def __init__(
        self,
        *,
        settings: AgentSettings,
        source: GitSource,
        cluster: client.Cluster,
        kustomize: render.Kustomize,
        resolver: SecretResolver | None = None,
        metrics: Metrics | None = None,
        work_dir: Path | None = None,
        trust: TrustGate | None = None,
        resolver_for: ResolverFor | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.cluster = cluster
        self.kustomize = kustomize
        self.resolver = resolver
        self.metrics = metrics or Metrics()
        self.status = status_mod.EnvStatus(env=settings.env)
        self.verification_settings: config.VerificationConfig | None = None
        self.rollback_mode: config.RollbackMode = "pr"  # the deployed revision's
        self.rollback_cache = source.cache_root  # the rollback's work repository goes here
        self.pending_rollback: rollback.Failure | None = None  # verifying.roll_back_failed
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests inject one
        self._last_failure: tuple[str | None, str, str] | None = None  # last SyncFailed event
        self._status_restored = False  # the published status' last sync time read back once
        self.desired_state = DesiredState(
            env=settings.env,
            namespace=settings.namespace,
            source=source,
            kustomize=kustomize,
            resolver=resolver,
            work_dir=work_dir,
            resolver_for=resolver_for,
        )
        self.trust = trust  # None: the environment requires no approvals, nothing to verify
        self.windows = windowgate.WindowGate(
            source, cluster, self.metrics, env=settings.env, namespace=settings.namespace,
            verifier=trust.verifier if trust else None, work_dir=work_dir,
            rendered=self.desired_state.settings_at,
        )  # fmt: skip
        self.cache = LiveCache(
            cluster, label_selector=apply.selector(settings.env), on_event=self._on_event
        )
        self._desired: dict[str, dict[str, Any]] = {}  # last good desired state, by key
        self._equal_verdicts: dict[str, tuple[str, str]] = {}  # key -> (digest, resourceVersion)
        self._applied: dict[str, str] = {}  # key -> digest of the desired object last applied
        self._verdicts = verdicts.Verdicts()  # in sync / health, until either side changes
        self._lock = threading.RLock()  # one writer: a pass or a heal, never both
        # Keys a watch reported, in order, once each; kept while healing is off (during the
        # first pass, or as a standby) so nothing seen then is lost when healing starts.
        self._heal_queue: dict[str, None] = {}
        self._heal_wakeup = threading.Event()
        self.healing_enabled = False
        self.sync_settings = config.SyncConfig()  # the deployed revision's, after each pass

    @property
    def self_heal(self) -> bool:
        """Revert drift at once: the command line's choice, else the deployed revision's."""
        if self.settings.self_heal is not None:
            return self.settings.self_heal
        return self.sync_settings.self_heal

    # --- the pass ---------------------------------------------------------------------------
    def run_pass(self, *, dry_run: bool = False, head: str | None = None) -> PassReport:
        """One pass; ``head``: the branch head the loop fetched just now (not fetched again)."""
        started, report = time.monotonic(), PassReport()
        try:
            report.head = report.revision = head or self.desired_state.fetch()
            found = self._verified(report)
            report.admission = stage(
                Stage.VERIFY, self.windows.admit_in, self.status, found, self.clock()
            )
            revision = report.revision = report.admission.revision
            built = self.desired_state.build(revision)
            if built.images != self.status.images:
                self.status.healthy_since = None  # a soak starts over with new images
            self.status.images = built.images
            self.sync_settings = built.sync
            self.verification_settings, self.rollback_mode = built.verification, built.rollback
            desired = stage(
                Stage.COMPARE,
                apply.scope,
                self.cluster,
                built.objects,
                namespace=self.settings.namespace,
            )
            report.objects = len(desired)
            with self._lock:
                self._verdicts.desired_is(built.objects)  # the same list: nothing changed
                self._compare(desired, report, dry_run=dry_run)
                env, ns = self.settings.env, self.settings.namespace
                previous = stage(
                    Stage.APPLY, apply.read_inventory, self.cluster, env=env, namespace=ns
                )
                recorded = previous
                if not dry_run:
                    recorded = self._record(previous, desired, report)
                    self._apply(desired, report)
                    # Kinds whose CRDs this pass made served are watched from now on.
                    stage(Stage.APPLY, self._ensure_watches, desired)
                self._prune(desired, previous, recorded, report, dry_run=dry_run)
                if not dry_run:
                    self._desired = {client.object_key(o): o for o in desired}
                self._assess(desired, report)
        except StageFailed as exc:
            report.error = exc
            self.metrics.failures.labels(self.settings.env, exc.stage).inc()
            log.warning("%s: pass failed at %s: %s", self.settings.env, exc.stage, exc.cause)
        report.duration_s = time.monotonic() - started
        if not dry_run:
            self._publish(report)
        return report

    def _verified(self, report: PassReport) -> str:
        """The revision this pass may deploy: the head once verified, else V (DESIGN §4)."""
        assert report.head is not None
        if self.trust is None:
            return report.head
        decision = stage(
            Stage.VERIFY, self.trust.decide_in, self.cluster, report.head, self.settings.namespace
        )
        self.metrics.verify_duration.labels(self.settings.env).observe(
            self.trust.verifier.cost.seconds
        )
        report.verdict, report.revision = decision.verdict, decision.deploy
        return decision.deploy

    def _compare(self, desired: list[dict[str, Any]], report: PassReport, *, dry_run: bool) -> None:
        stage(Stage.COMPARE, self._ensure_namespace, dry_run=dry_run)
        stage(Stage.COMPARE, self._ensure_watches, desired)
        for obj in desired:
            key = client.object_key(obj)
            live = self.cache.get(key)
            if self._verdicts.in_sync(key, live):
                continue
            paths = drift.differences(obj, live)
            if paths and live is not None:
                paths = self._confirm(obj, live, paths, report)
            if not paths:
                self._verdicts.found_in_sync(key, live)
            else:
                report.out_of_sync[key] = paths
                report.diffs.append((key, live, obj))

    def _confirm(
        self, obj: dict[str, Any], live: dict[str, Any], paths: list[str], report: PassReport
    ) -> list[str]:
        try:
            return self._confirmed_drift(obj, live)
        except statuses.Immutable as exc:
            # The change needs the object replaced: one outcome among the others, not a
            # failure of the comparison (the apply reports it, or replaces on opt-in).
            report.replace[client.object_key(obj)] = exc.message
            return paths
        except ClusterError as exc:
            raise StageFailed(Stage.COMPARE, exc) from exc

    def _confirmed_drift(self, obj: dict[str, Any], live: dict[str, Any]) -> list[str]:
        """A local difference is drift only if a server-side dry run agrees (defaulting and
        quantity normalisation make a naive comparison lie). An "equal" verdict holds until
        the desired object or the live one (its resourceVersion) changes, so an object the
        server normalises is dry-run once, not on every pass."""
        key = client.object_key(obj)
        stamp = (_digest(obj), str((live.get("metadata") or {}).get("resourceVersion", "")))
        if self._equal_verdicts.get(key) == stamp:
            return []
        paths = drift.confirmed(obj, self.cluster.apply(obj, force=True, dry_run=True), live)
        if paths:
            self._equal_verdicts.pop(key, None)
        else:
            self._equal_verdicts[key] = stamp
        return paths

    def _ensure_namespace(self, *, dry_run: bool) -> None:
        rt = self.cluster.resource("v1", "Namespace")
        if not dry_run and self.cluster.get(rt, None, self.settings.namespace) is None:
            self.cluster.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": self.settings.namespace},
                }
            )

    def _apply(self, desired: list[dict[str, Any]], report: PassReport) -> None:
        todo = []
        for obj in desired:
            key = client.object_key(obj)
            stale = key in report.out_of_sync  # the digest only when it matters (json.dumps)
            if stale and (self.self_heal or self._applied.get(key) != _digest(obj)):
                todo.append(obj)
        results = apply.apply_objects(
            self.cluster, todo, mode=apply.ApplyMode.FORCE, workers=self.settings.workers
        )
        errors = [r.error for r in results if r.error is not None]
        for r, obj in zip(results, todo, strict=True):
            if r.live is not None:
                report.produced[r.key] = r.live
            if r.error is None:
                self._applied[r.key] = _digest(obj)
                report.applied.append(r.key)
                report.out_of_sync.pop(r.key, None)
        self.metrics.objects_applied.labels(self.settings.env).inc(len(report.applied))
        for obj in desired:  # objects in sync count as applied at this digest
            key = client.object_key(obj)
            if key not in report.out_of_sync and key not in self._applied:
                self._applied[key] = _digest(obj)
        if errors:
            raise StageFailed(Stage.APPLY, errors[0])

    def _record(
        self, previous: list[str] | None, desired: list[dict[str, Any]], report: PassReport
    ) -> list[str]:
        """Write the inventory before applying (see ``pruning.record``)."""
        return pruning.record(
            self.cluster,
            previous,
            [client.object_key(o) for o in desired],
            env=self.settings.env,
            namespace=self.settings.namespace,
            revision=report.revision or "",
        )

    def _prune(
        self,
        desired: list[dict[str, Any]],
        previous: list[str] | None,
        recorded: list[str] | None,
        report: PassReport,
        *,
        dry_run: bool,
    ) -> None:
        """Delete what left Git; ``previous`` is the inventory the pass started from (the
        mass-prune guard's measure), ``recorded`` what it says now."""

        def deleted(key: str) -> None:
            report.pruned.append(key)
            self._applied.pop(key, None)

        prune = self.sync_settings.prune if self.settings.prune is None else self.settings.prune
        outcome = pruning.prune_objects(
            self.cluster,
            [client.object_key(o) for o in desired],
            previous=previous,
            recorded=recorded,
            env=self.settings.env,
            namespace=self.settings.namespace,
            enabled=prune,
            allow_mass_prune=self.settings.allow_mass_prune,
            dry_run=dry_run,
            revision=report.revision or "",
            on_deleted=deleted,
        )
        report.prune_blocked = outcome.blocked
        report.pruned.extend(outcome.would_delete)

    def _assess(self, desired: list[dict[str, Any]], report: PassReport) -> None:
        keys = (client.object_key(o) for o in desired)
        statuses = self._verdicts.health({k: self._latest(k, report) for k in keys})
        report.health = str(health.aggregate(statuses.values()))
        report.health_details = {
            client.describe_key(k): f"{s.health}: {s.message}" if s.message else str(s.health)
            for k, s in statuses.items()
            if s.health != health.Health.HEALTHY
        }

    def _latest(self, key: str, report: PassReport) -> dict[str, Any] | None:
        """The object as this pass left it: what the apply returned, unless the watch cache
        already holds the same object at least as far along (same uid, generation no older).
        The cache alone lags an apply, and knows nothing of a kind a new CRD just made served.
        """
        made, seen = report.produced.get(key), self.cache.get(key)
        if made is None or seen is None:
            return seen or made
        m, s = made.get("metadata") or {}, seen.get("metadata") or {}
        if s.get("uid") == m.get("uid") and s.get("generation", 0) >= m.get("generation", 0):
            return seen
        return made

    # --- status -----------------------------------------------------------------------------
    def _restore_status(self) -> None:
        """Carry the published status' last successful sync time into a new process (a
        `promote sync`, a restart, a new leader), so a failed first pass does not erase it."""
        if not self._status_restored:
            self._status_restored = True
            status_mod.restore_last_sync(self.cluster, self.status, self.settings.namespace)

    def _publish(self, report: PassReport) -> None:
        st, env = self.status, self.settings.env
        self._restore_status()
        with self._lock:
            if self.trust is not None and report.verdict is not None and report.head:
                self.trust.publish(
                    st, report.verdict, head=report.head, deployed=report.revision or report.head,
                    cluster=self.cluster, metrics=self.metrics, namespace=self.settings.namespace,
                )  # fmt: skip
            if report.revision:
                st.revision = report.revision
            st.objects = report.objects or st.objects
            st.prune_blocked = report.prune_blocked
            if report.error:
                st.sync = SyncState.FAILED
                st.last_error = {
                    "stage": report.error.stage,
                    "message": str(report.error.cause),
                    "at": status_mod.now_iso(),
                }
                failure = (report.revision, report.error.stage, str(report.error.cause))
                # Reported once, not at every resync; a Git outage is in the status only.
                quiet = report.error.stage is Stage.FETCH and report.error.retryable
                if failure != self._last_failure and not quiet:
                    why = f"sync of {env} failed at {report.error.stage}: {report.error.cause}"
                    status_mod.failed_event(self.cluster, env, self.settings.namespace, why)
                self._last_failure = failure
            else:
                st.sync = SyncState.OUT_OF_SYNC if report.out_of_sync else SyncState.SYNCED
                if st.unverified:
                    st.sync = SyncState.UNVERIFIED
                st.out_of_sync = sorted(client.describe_key(k) for k in report.out_of_sync)
                st.health, st.health_details = report.health, report.health_details
                st.last_error = None
                self._last_failure = None
                st.last_sync_at = status_mod.now_iso()
                if (
                    st.sync == SyncState.SYNCED
                    and health.Health.from_label(st.health) is health.Health.HEALTHY
                ):
                    st.healthy_since = st.healthy_since or st.last_sync_at
                else:
                    st.healthy_since = None
                self.metrics.last_success.labels(env).set(time.time())
            self.metrics.pass_duration.labels(env).observe(report.duration_s)
            self.metrics.out_of_sync.labels(env).set(len(report.out_of_sync))
            if report.error is None:
                self.windows.publish(st, report.admission)
                self.verify_deploy()
            self.write_status()

    def verify_deploy(self) -> None:
        super().verify_deploy()
        self.windows.record_verified(self.status, verifies=self.verification_settings is not None)

    def write_status(self) -> None:
        try:
            status_mod.write(self.cluster, self.status, namespace=self.settings.namespace)
        except ClusterError as exc:
            log.warning("%s: could not write status: %s", self.settings.env, exc)
