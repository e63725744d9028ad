"""The inventory: which objects an environment's agent applied, kept in a ConfigMap.

Prune is a set difference (Flux's inventory): objects in the last inventory that are no longer
desired. The maths is pure (``plan_prune``); ``read``/``write`` are the two I/O verbs, on a
ConfigMap ``promote-inventory-ENV`` in the agent's namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from promote.cluster import client

MASS_PRUNE_SHARE = 0.5  # refuse to delete more than this share of the environment in one pass


def name_for(env: str) -> str:
    return f"promote-inventory-{env}"


@dataclass(frozen=True, slots=True)
class PrunePlan:
    delete: tuple[str, ...]
    blocked: bool
    reason: str = ""


def plan_prune(
    previous: Iterable[str], desired: Iterable[str], *, allow_mass_prune: bool = False
) -> PrunePlan:
    prev, want = set(previous), set(desired)
    gone = tuple(sorted(prev - want))
    if gone and prev and not allow_mass_prune and len(gone) > len(prev) * MASS_PRUNE_SHARE:
        return PrunePlan(
            gone,
            True,
            f"refusing to prune {len(gone)} of {len(prev)} objects (more than half of the "
            "environment) in one pass; check the overlay, or run with --allow-mass-prune",
        )
    return PrunePlan(gone, False)


def read(cluster: client.Cluster, *, env: str, namespace: str) -> list[str] | None:
    rt = cluster.resource("v1", "ConfigMap")
    cm = cluster.get(rt, namespace, name_for(env))
    if cm is None:
        return None
    return list(json.loads((cm.get("data") or {}).get("objects", "[]")))


def write(
    cluster: client.Cluster, keys: Iterable[str], *, env: str, namespace: str, revision: str
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name_for(env),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "promote-agent"},
        },
        "data": {"objects": json.dumps(sorted(set(keys))), "revision": revision},
    }
    cluster.apply(body, force=True, field_manager="promote-inventory")
