"""The agent's verification after deploy (DESIGN.md §6, issue 16 item 1): status, metric, Event.

Called after each pass and each health change, off the apply path: it reads only the status
the pass published, asks the pure ``cluster.soak`` judge and records the verdict for the
images deployed now (``status.verification``, the ``promote_verification_state`` gauge, and an
Event when a verdict becomes final). A final verdict stays for those images; new images start
over. Nothing here applies or changes cluster objects besides the Event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from promote import config
from promote.cluster import client, soak
from promote.reconcile import jobcheck, probe
from promote.reconcile import status as status_mod
from promote.reconcile.metrics import Metrics


def update(
    st: status_mod.EnvStatus,
    settings: config.VerificationConfig | None,
    *,
    now: datetime,
    metrics: Metrics,
    cluster: client.Cluster,
    namespace: str,
    event: Callable[..., None] = status_mod.emit_event,
) -> soak.Verdict | None:
    """Judge and record; None when the environment verifies nothing (no ``verification:``)."""
    if settings is None:
        st.verification = None
        return None
    done = st.verification
    if done and done.get("images") == st.images and done.get("state") != soak.Verification.RUNNING:
        return soak.Verdict(soak.Verification(done["state"]), str(done.get("reason", "")))
    since = _parse(st.healthy_since)
    verdict = soak.judge(
        settings.healthy_for,
        health=st.health,
        healthy_since=since,
        now=now,
        details=st.health_details,
        check=_checks(settings, st, cluster=cluster, namespace=namespace, now=now),
    )
    st.verification = {
        "state": str(verdict.state),
        "reason": verdict.reason,
        "images": dict(st.images),
        "revision": st.revision,
        "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if verdict.state is soak.Verification.VERIFIED:  # the version a rollback returns to
        st.last_verified = {k: st.verification[k] for k in ("images", "revision", "at")}
    for state in soak.Verification:
        metrics.verification.labels(st.env, str(state)).set(1.0 if state is verdict.state else 0.0)
    if verdict.final:
        images = ", ".join(f"{k}={v}" for k, v in sorted(st.images.items()))
        event(
            cluster,
            regarding=status_mod.status_object(st.env, namespace),
            reason=f"Verification{verdict.state}",
            message=f"{st.env}: {images}: {verdict.state}: {verdict.reason}",
            event_type="Normal" if verdict.state is soak.Verification.VERIFIED else "Warning",
            namespace=namespace,
        )
    return verdict


def _checks(
    settings: config.VerificationConfig,
    st: status_mod.EnvStatus,
    *,
    cluster: client.Cluster,
    namespace: str,
    now: datetime,
) -> Callable[[], soak.CheckResult] | None:
    """The HTTP check, then the Job check (created once, judged until it ends), or None."""
    if settings.http is None and settings.job is None:
        return None

    def run() -> soak.CheckResult:
        passed = []
        if settings.http is not None:
            failed = probe.http_get(settings.http)
            if failed:
                return soak.CheckResult(failed=failed)
            passed.append("the HTTP check passed")
        if settings.job is not None:
            images = ",".join(f"{k}={v}" for k, v in sorted(st.images.items()))
            job = jobcheck.run(
                cluster, settings.job, env=st.env, namespace=namespace,
                key=images,
            )  # fmt: skip
            if job.failed or job.pending:
                return job
            passed.append(job.passed)
        return soak.CheckResult(passed="; ".join(passed))

    return run


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
