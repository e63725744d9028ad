"""``promote to ENV --live``: the planned after-render, dry-run against ENV's cluster.

Before a PR opens, each object of the target's render after the change is sent to the
environment's API server as the agent would send it (server-side apply, field manager
``promote``, our labels), with ``dryRun=All``: admission runs (ValidatingAdmissionPolicies
installed in the cluster, webhooks, schema validation) and nothing is stored. A rejection
blocks the promotion (exit 3) naming environment, object and the server's message; what would
change in the cluster (the dry-run result against the live object, on the fields the render
sets) is the live diff.

- The cluster settings (kubeconfig, context, namespace) are main's, never the checkout's; for
  an environment that requires approvals, only when main's inputs for it are verified (the
  agent's own rules, ``reconcile/verify.py``), so credentials never go to a server that an
  unapproved commit named.
- Secrets are never decrypted: each value is replaced by a placeholder before the dry run
  (admission still sees every key), and a Secret's diff compares keys, never values, live
  values included.
- No credentials, an unreachable cluster or an unverified main: the check says so and the
  promotion goes on as without ``--live``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promote import config
from promote.cluster import apply, client, drift, statuses
from promote.errors import ClusterError, ClusterUnavailable, GitError, PromoteError
from promote.forge import local as local_forge
from promote.promotion import diff, engine, plan
from promote.reconcile import factory, proofs
from promote.reconcile.verify import Verifier

log = logging.getLogger(__name__)

PLACEHOLDER = "promote-placeholder"  # every Secret value in a live dry run
NOT_COMPARED = "<not compared>"  # a Secret value in the live diff (keys are compared)
_SOPS_FIELDS = ("sops",)


class LiveState(enum.StrEnum):
    CHECKED = "checked"
    UNAVAILABLE = "unavailable"  # no credentials, unreachable, or main not verified


@dataclass(frozen=True, slots=True)
class Rejection:
    object: str  # "apps/v1 Deployment staging/web-app"
    message: str  # the API server's, without the request prefix

    def __str__(self) -> str:
        return f"{self.object}: {self.message}"


@dataclass(frozen=True, slots=True)
class LiveCheck:
    env: str
    state: LiveState
    reason: str = ""  # why it is unavailable
    server: str = ""  # the API server's version
    rejections: tuple[Rejection, ...] = ()
    diff: tuple[diff.ObjectDiff, ...] = ()
    unchecked: tuple[str, ...] = ()  # objects the server could not dry-run
    prunes: tuple[str, ...] = ()  # objects the agent would delete (in its inventory only)

    @property
    def blocks(self) -> bool:
        return bool(self.rejections)

    def gate(self) -> plan.GateResult | None:
        """The plan's gate: blocked by admission rejections; None when nothing was checked."""
        if self.state is not LiveState.CHECKED:
            return None
        if not self.rejections:
            return plan.GateResult(
                "live", plan.GateStatus.PASSED, f"{self.env}'s cluster admits every object"
            )
        shown = "; ".join(f"{self.env}: {r}" for r in self.rejections)
        return plan.GateResult(
            "live", plan.GateStatus.BLOCKED, f"{self.env}'s cluster rejects: {shown}"
        )

    def note(self) -> str:
        if self.state is LiveState.UNAVAILABLE:
            return f"live: {self.env}'s cluster not checked: {self.reason}"
        extra = f"; not dry-run: {'; '.join(self.unchecked)}" if self.unchecked else ""
        return (
            f"live: {self.env}'s cluster ({self.server}): {len(self.diff)} object(s) would "
            f"change, {len(self.prunes)} would be pruned{extra}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "state": str(self.state),
            "reason": self.reason,
            "server": self.server,
            "rejections": [{"object": r.object, "message": r.message} for r in self.rejections],
            "diff": [{"object": d.ref, "action": str(d.action), "text": d.text} for d in self.diff],
            "unchecked": list(self.unchecked),
            "prunes": list(self.prunes),
        }


def check_plan(
    s: engine.Session, p: plan.Plan, *, overrides: factory.Overrides | None = None
) -> LiveCheck | None:
    """The live check of ``p``'s target after the change (None when the plan changes nothing).
    ``overrides``: the command line's --kubeconfig/--context over main's cluster settings."""
    if p.empty or not p.overlay_after:
        return None
    env = s.project.env(p.target)
    why = untrusted(s, env)
    if why:
        return LiveCheck(env.name, LiveState.UNAVAILABLE, reason=why)
    after = s.render_variants(env.overlay_dir, [p.overlay_after])[0]
    try:
        cluster = factory.connect_env(env, overrides or factory.Overrides())
        version = cluster.server_version()
    except ClusterError as exc:
        return LiveCheck(env.name, LiveState.UNAVAILABLE, reason=exc.message)
    try:
        return dry_run(cluster, env, after, revision=s.sha, server=version)
    except ClusterUnavailable as exc:
        return LiveCheck(env.name, LiveState.UNAVAILABLE, reason=exc.message)


def fold(p: plan.Plan, found: LiveCheck | None) -> plan.Plan:
    """``p`` with the live check as a gate (rejections block) and a note (what it found)."""
    if found is None:
        return p
    gate = found.gate()
    return dataclasses.replace(
        p, gates=(*p.gates, *([gate] if gate else [])), notes=(*p.notes, found.note())
    )


def untrusted(s: engine.Session, env: config.Environment) -> str:
    """Why main's settings for ``env`` cannot be trusted with its credentials ("" if they
    can): an environment that requires approvals needs main verified from the first commit,
    as ``promote history`` judges it."""
    if not env.config.approvals.required:
        return ""
    roots = s.repo.run_text("rev-list", "--first-parent", "--max-parents=0", s.sha, what="git")
    try:  # `promote trust` records live on the remote (as for `promote history`)
        s.repo.fetch(s.remote, [f"+{proofs.TRUST_PREFIX}*:{proofs.TRUST_PREFIX}*"])
    except GitError as exc:
        log.info("trust records not fetched (%s); reading the local copies", exc)
    verifier = Verifier(s.repo, env=env.name, records=local_forge.tracked_records(s.remote))
    try:
        verdict = verifier.check(anchor=roots.split()[-1], verified=[], revision=s.sha)
    except PromoteError as exc:
        return f"main could not be verified ({exc.message})"
    finally:
        verifier.close()
    if verdict.verified:
        return ""
    return (
        f"main's inputs for {env.name} are not verified ({verdict.summary()}), so its cluster "
        "settings are not trusted with credentials"
    )


def dry_run(
    cluster: client.Cluster,
    env: config.Environment,
    objects: Sequence[dict[str, Any]],
    *,
    revision: str,
    server: str = "",
) -> LiveCheck:
    """Dry-run ``objects`` (rendered, Secrets still encrypted) as the agent would apply them."""
    ns = env.config.cluster.namespace
    wanted = apply.prepare([with_placeholders(o) for o in objects], env=env.name, revision=revision)
    scoped = apply.scope(cluster, wanted, namespace=ns)
    results = apply.apply_objects(cluster, scoped, mode=apply.ApplyMode.DRY_RUN, workers=4)
    by_key = {client.object_key(o): o for o in scoped}
    rejected, unchecked, before, after = [], [], [], []
    for r in results:
        name = client.describe_key(r.key)
        if isinstance(r.error, statuses.Immutable):
            unchecked.append(f"{name}: needs replacing ({_server_message(r.error)})")
        elif isinstance(r.error, statuses.Invalid):
            rejected.append(Rejection(diff.describe(by_key[r.key]), _server_message(r.error)))
        elif isinstance(r.error, ClusterUnavailable):
            raise r.error
        elif r.error is not None:
            unchecked.append(f"{name}: {_server_message(r.error)}")
        elif r.live is not None:
            desired = by_key[r.key]
            old = _live(cluster, desired)
            after.append(_shown(desired, r.live))
            if old is not None:
                before.append(_shown(desired, old))
    changed = diff.diff_objects(before, after, default_namespace=ns)
    return LiveCheck(
        env.name,
        LiveState.CHECKED,
        server=server,
        rejections=tuple(rejected),
        diff=tuple(changed),
        unchecked=tuple(unchecked),
        prunes=tuple(_prunes(cluster, env.name, ns, set(by_key))),
    )


def with_placeholders(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret with every value replaced by :data:`PLACEHOLDER` and sops' metadata gone: the
    ciphertext is never decrypted and never sent; other objects as they are."""
    if obj.get("kind") != "Secret":
        return obj
    out = {k: v for k, v in obj.items() if k not in _SOPS_FIELDS}
    encoded = base64.b64encode(PLACEHOLDER.encode()).decode("ascii")
    if isinstance(obj.get("data"), dict):
        out["data"] = dict.fromkeys(obj["data"], encoded)
    if isinstance(obj.get("stringData"), dict):
        out["stringData"] = dict.fromkeys(obj["stringData"], PLACEHOLDER)
    return out


def _shown(desired: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """``found`` on the fields ``desired`` sets, named as ``desired``; a Secret's values are
    masked (the placeholders and the live values alike: keys are what compares)."""
    shape = drift.comparable(desired)
    out = copy.deepcopy(drift.project(shape, drift.secret_to_data(found)))
    meta = desired.get("metadata") or {}
    out.setdefault("metadata", {})
    out["metadata"].update({k: meta[k] for k in ("name", "namespace") if k in meta})
    out["apiVersion"], out["kind"] = desired.get("apiVersion"), desired.get("kind")
    if desired.get("kind") == "Secret":
        out.pop("stringData", None)
        out["data"] = dict.fromkeys((found.get("data") or {}) | (found.get("stringData") or {}),
                                    NOT_COMPARED)  # fmt: skip
    return out


def _live(cluster: client.Cluster, desired: dict[str, Any]) -> dict[str, Any] | None:
    meta = desired.get("metadata") or {}
    return cluster.get(cluster.resource_of(desired), meta.get("namespace"), meta["name"])


def _prunes(cluster: client.Cluster, env: str, ns: str, keys: set[str]) -> list[str]:
    """What the agent's inventory lists and the render no longer has."""
    recorded = apply.read_inventory(cluster, env=env, namespace=ns) or []
    return [client.describe_key(k) for k in recorded if k not in keys]


def _server_message(exc: ClusterError) -> str:
    """The API server's words: our request prefix ("apply Kind ns/name: rejected as
    invalid: ") is dropped, the message names the object already."""
    text = exc.message
    for marker in (": rejected as invalid: ", ": rejected: "):
        if marker in text:
            return text.split(marker, 1)[1]
    return text
