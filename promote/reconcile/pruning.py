"""The prune stage of a pass: delete what an environment no longer declares, and track the rest.

The set difference itself is ``cluster.inventory.plan_prune`` (pure, with the mass-prune
guard); this module sequences it against the cluster: before a pass applies anything, it
records every object the pass may create (:func:`record`: a pass that fails half-way never
leaves an object nobody tracks); afterwards it deletes only objects that still carry our
manager and environment labels (custom resources before their CRDs) and writes the new
inventory. With prune off, or blocked by the guard, objects stay tracked so a later pass can
still prune them. It never decides what is desired (the agent passes the keys) and keeps no
state between passes: the agent's bookkeeping of applied objects stays in ``agent.py``,
told of each deletion through ``on_deleted``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from promote.cluster import apply, client, inventory
from promote.reconcile.desired import stage
from promote.reconcile.status import Stage


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    blocked: str | None = None  # why the mass-prune guard stopped this prune
    would_delete: tuple[str, ...] = ()  # a dry run's deletions (nothing was deleted)


def record(
    cluster: client.Cluster,
    previous: Sequence[str] | None,
    keys: Sequence[str],
    *,
    env: str,
    namespace: str,
    revision: str,
) -> list[str]:
    """Write the inventory before applying: what it listed plus every key this pass may
    create; returns what it now says. Raises StageFailed(APPLY)."""
    tracked = sorted(set(previous or ()) | set(keys))
    if previous is None or tracked != sorted(set(previous)):
        stage(
            Stage.APPLY,
            apply.write_inventory,
            cluster,
            tracked,
            env=env,
            namespace=namespace,
            revision=revision,
        )
    return tracked


def prune_objects(
    cluster: client.Cluster,
    keys: Sequence[str],
    *,
    previous: Sequence[str] | None,
    recorded: Sequence[str] | None,
    env: str,
    namespace: str,
    enabled: bool,
    allow_mass_prune: bool,
    dry_run: bool,
    revision: str,
    on_deleted: Callable[[str], None],
) -> PruneOutcome:
    """Prune what ``previous`` (the inventory the pass started from: the mass-prune guard's
    measure) tracks but ``keys`` (the desired objects) no longer hold; ``recorded`` is what
    the inventory says now. Raises StageFailed(PRUNE); deletions before a failure have been
    reported to ``on_deleted``.
    """
    tracked = list(keys)
    outcome = PruneOutcome()
    if enabled and previous:
        plan = inventory.plan_prune(previous, tracked, allow_mass_prune=allow_mass_prune)
        if plan.blocked:
            outcome = PruneOutcome(blocked=plan.reason)
            tracked = sorted(set(tracked) | set(plan.delete))  # keep tracking what we kept
        elif dry_run:
            outcome = PruneOutcome(would_delete=tuple(plan.delete))  # if they carry our labels
        else:
            for key in apply.prune_order(plan.delete):
                if stage(Stage.PRUNE, _delete_if_ours, cluster, key, env=env):
                    on_deleted(key)
    elif previous:
        tracked = sorted(set(tracked) | set(previous))  # prune off: still ours, still tracked
    if dry_run or (recorded is not None and sorted(set(recorded)) == sorted(set(tracked))):
        return outcome  # nothing to record: the inventory already says exactly this
    stage(
        Stage.PRUNE,
        apply.write_inventory,
        cluster,
        tracked,
        env=env,
        namespace=namespace,
        revision=revision,
    )
    return outcome


def _delete_if_ours(cluster: client.Cluster, key: str, *, env: str) -> bool:
    """Delete the object ``key`` if it carries our labels; True if it was deleted."""
    group, kind, ns, name = key.split("/", 3)
    rt = cluster.resource_by_group_kind(group, kind)
    if rt is None:
        return False  # the kind is no longer served (its CRD is gone): nothing left to delete
    live = cluster.get(rt, ns or None, name)
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    if (
        live is None
        or labels.get(apply.MANAGED_BY) != apply.MANAGER
        or labels.get(apply.ENV_LABEL) != env
    ):
        return False  # only objects carrying our labels are ever deleted
    return cluster.delete(rt, ns or None, name)
