"""Verification after deploy as the agent runs it, and the rollback a failed one starts.

A mixin of :class:`promote.reconcile.agent.Agent` (it shares the agent's lock, status, clock
and cluster). :meth:`Verifying.verify_deploy` judges the images deployed now
(``postdeploy``); a verdict that turns Failed leaves a pending rollback, which
:meth:`Verifying.roll_back_failed` carries out (``rollback``) outside the lock, once per
failed revision: the loop calls it after each pass and each re-judgement, never the apply
path. :meth:`Verifying.recheck` judges again between passes while a verdict is Running (a
soak ending, a Job finishing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from promote import config
from promote.cluster import client, soak
from promote.errors import PromoteError
from promote.reconcile import passes, postdeploy, rollback
from promote.reconcile import status as status_mod
from promote.reconcile.metrics import Metrics
from promote.reconcile.source import GitSource

log = logging.getLogger(__name__)

RETRY_S = 30.0  # a rollback that failed (Git or the forge unreachable, no key) is retried


class Verifying:
    """The verification verbs; the attributes below are the agent's."""

    settings: passes.AgentSettings
    cluster: client.Cluster
    metrics: Metrics
    status: status_mod.EnvStatus
    source: GitSource
    clock: Callable[[], datetime]
    verification_settings: config.VerificationConfig | None
    rollback_mode: config.RollbackMode
    rollback_cache: Path  # where the rollback's work repository lives
    pending_rollback: rollback.Failure | None
    _lock: threading.RLock
    _rollback_retry_at = 0.0  # monotonic time before which a failed rollback is not retried
    _rollback_error = ""  # the last failure reported (an Event once per distinct failure)

    def write_status(self) -> None:
        raise NotImplementedError

    def verify_deploy(self) -> None:
        """Verification after deploy, from the status just published (off the apply path)."""
        st, ns = self.status, self.settings.namespace
        verdict = postdeploy.update(
            st, self.verification_settings, now=self.clock(), metrics=self.metrics,
            cluster=self.cluster, namespace=ns,
        )  # fmt: skip
        if verdict is None or verdict.state is not soak.Verification.FAILED:
            return
        failed = str((st.verification or {}).get("revision") or st.revision or "")
        images = dict((st.verification or {}).get("images") or st.images)
        verified = str((st.last_verified or {}).get("revision") or "")
        if not failed or (st.rollback or {}).get("images") == images:
            return  # done for these images (main moves on with the records it wrote)
        if not verified or verified == failed:  # said once, in the status
            log.warning("%s: verification failed, but no earlier version was verified", st.env)
            st.rollback = {
                "failed": failed, "images": images, "verified": None, "rejected": [],
                "pr": None, "merged": False, "at": status_mod.now_iso(),
                "message": "no rollback: no earlier version of this environment was verified",
            }  # fmt: skip
            return
        evidence = (
            f"revision {failed[:12]} in {st.env}; Event VerificationFailed on ConfigMap "
            f"{ns}/{status_mod.configmap_name(st.env)} (kubectl -n {ns} get events "
            "--field-selector reason=VerificationFailed)"
        )
        self.pending_rollback = rollback.Failure(
            st.env, failed, images, verified, verdict.reason, evidence
        )

    def recheck(self) -> None:
        """Judge a Running verdict again (no pass needed); publish it when it changed."""
        with self._lock:
            before = dict(self.status.verification or {})
            if before.get("state") != str(soak.Verification.RUNNING):
                return
            self.verify_deploy()
            after = self.status.verification or {}
            if (after.get("state"), after.get("reason")) != (before["state"], before["reason"]):
                self.write_status()

    def roll_back_failed(self) -> rollback.Outcome | None:
        """Carry out the pending rollback (see ``rollback``); its outcome goes into the
        status and an Event. A failure is reported once and tried again RETRY_S later."""
        failure = self.pending_rollback
        if failure is None or time.monotonic() < self._rollback_retry_at:
            return None
        ns = self.settings.namespace
        try:
            work = rollback.work_repo(
                self.source.repo, self.source.url, self.rollback_cache,
                env=failure.env, rev=failure.revision,
            )  # fmt: skip
            outcome = rollback.roll_back(work, failure, mode=self.rollback_mode, now=self.clock())
        except PromoteError as exc:
            self._rollback_retry_at = time.monotonic() + RETRY_S
            said = f"{failure.env}: rollback of {failure.revision[:12]} failed: {exc}"
            log.warning("%s", said)
            if said != self._rollback_error:
                self._rollback_error = said
                status_mod.emit_event(
                    self.cluster, regarding=status_mod.status_object(failure.env, ns),
                    reason="RollbackFailed", event_type="Warning", namespace=ns, message=said,
                )  # fmt: skip
            return None
        with self._lock:  # a judgement meanwhile sees it done (verify_deploy runs locked)
            self.status.rollback = outcome.to_dict(failure, status_mod.now_iso())
            self.pending_rollback = None
            self.write_status()
        rejected = ", ".join(outcome.rejected) or "nothing"
        status_mod.emit_event(
            self.cluster, regarding=status_mod.status_object(failure.env, ns),
            reason="RollbackMerged" if outcome.merged else "RollbackOpened",
            event_type="Warning", namespace=ns,
            message=f"{failure.env}: rejected {rejected}; {outcome.message}",
        )  # fmt: skip
        return outcome
