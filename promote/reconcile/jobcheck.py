"""The Job check of verification after deploy: one Kubernetes Job that must succeed.

Used only by ``postdeploy`` once new images have been healthy for ``healthyFor``. The Job is
made from ``verification.job`` (its metadata and spec, as Argo Rollouts' and Kargo's job
provider write them; ``timeout`` becomes its ``activeDeadlineSeconds`` unless set), named
after the environment and the images verified, so a second judgement (the next pass, a
restart, another replica that became leader) finds the same Job instead of starting another.
It carries ``promote.dev/verification: ENV`` but not the labels of applied objects: it is no
render output, so the inventory, prune and self-heal never see it.
Earlier verification Jobs are deleted when a new one starts, except failed ones: a failed
Job is the evidence a rejection record points at.

It reports why a Job failed (its condition and the first failed container's exit), never a
log: a test's output may echo anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any

from promote import config
from promote.cluster import client, soak, statuses
from promote.errors import ClusterError

log = logging.getLogger(__name__)

LABEL = "promote.dev/verification"  # the environment whose verification made the Job


def job_name(env: str, key: str, check: config.JobCheck) -> str:
    """``promote-verify-ENV-HASH``: one name per environment, images verified and Job spec."""
    spec = json.dumps(check.spec, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{key}\0{spec}".encode()).hexdigest()[:10]
    return f"promote-verify-{env[:30].rstrip('-')}-{digest}"


def manifest(check: config.JobCheck, *, name: str, env: str, namespace: str) -> dict[str, Any]:
    """The Job: the user's metadata and spec, with a Job's usual defaults for a check (no
    retries, Pods never restarted) unless the spec says otherwise."""
    spec = copy.deepcopy(check.spec)
    spec.setdefault("backoffLimit", 0)
    # The Job controller enforces the timeout (reason DeadlineExceeded): no clock of ours.
    spec.setdefault("activeDeadlineSeconds", max(1, int(check.timeout.total_seconds())))
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**check.metadata.labels, LABEL: env},
            "annotations": dict(check.metadata.annotations),
        },
        "spec": spec,
    }


def run(
    cluster: client.Cluster,
    check: config.JobCheck,
    *,
    env: str,
    namespace: str,
    key: str,
) -> soak.CheckResult:
    """Create the Job for ``key`` (the images verified) unless it exists, and
    say whether it succeeded, failed, or still runs."""
    name = job_name(env, key, check)
    rt = cluster.resource("batch/v1", "Job")
    job = cluster.get(rt, namespace, name)
    if job is None:
        _delete_older(cluster, rt, env=env, namespace=namespace, keep=name)
        try:
            job = cluster.create(manifest(check, name=name, env=env, namespace=namespace))
            log.info("%s: created verification Job %s/%s", env, namespace, name)
        except statuses.Conflict:  # another replica made it first: judge that one
            job = cluster.get(rt, namespace, name) or {}
    return judge_job(cluster, job, namespace=namespace, name=name)


def judge_job(
    cluster: client.Cluster,
    job: dict[str, Any],
    *,
    namespace: str,
    name: str,
) -> soak.CheckResult:
    where = f"Job {namespace}/{name}"
    conditions = {
        c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }  # fmt: skip
    if "Complete" in conditions:
        return soak.CheckResult(passed=f"{where} succeeded")
    if "Failed" in conditions:
        c = conditions["Failed"]
        why = f"{c.get('reason') or 'Failed'}: {c.get('message') or ''}".rstrip(": ")
        exit_ = _failed_container(cluster, namespace, name)
        return soak.CheckResult(failed=f"{where} failed ({why}{'; ' + exit_ if exit_ else ''})")
    return soak.CheckResult(pending=f"{where} running")


def _failed_container(cluster: client.Cluster, namespace: str, name: str) -> str:
    """``container C exited N (Reason)`` of the Job's first failed Pod, or empty."""
    try:
        pods, _ = cluster.list(
            cluster.resource("v1", "Pod"), namespace=namespace, label_selector=f"job-name={name}"
        )
    except ClusterError:
        return ""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            done = (cs.get("state") or {}).get("terminated") or {}
            if done.get("exitCode"):
                reason = f" ({done['reason']})" if done.get("reason") else ""
                return f"container {cs.get('name')} exited {done['exitCode']}{reason}"
    return ""


def _delete_older(
    cluster: client.Cluster, rt: client.ResourceType, *, env: str, namespace: str, keep: str
) -> None:
    """Remove earlier verification Jobs of ``env`` (their Pods go with them), but not failed
    ones (evidence)."""
    try:
        jobs, _ = cluster.list(rt, namespace=namespace, label_selector=f"{LABEL}={env}")
        for job in jobs:
            old = (job.get("metadata") or {}).get("name")
            failed = any(
                c.get("type") == "Failed" and c.get("status") == "True"
                for c in (job.get("status") or {}).get("conditions") or []
            )
            if old and old != keep and not failed:
                cluster.delete(rt, namespace, old)
    except ClusterError as exc:  # best effort: an old Job left is only clutter
        log.warning("%s: could not remove earlier verification Jobs: %s", env, exc)
