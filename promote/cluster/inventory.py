"""The inventory maths: which applied objects are no longer desired (pure).

Prune is a set difference (Flux's inventory): objects in the last inventory that are no longer
desired, refused when it would delete more than half of the environment at once. Object keys
are strings (``client.object_key`` of objects whose scope came from discovery, ``apply.scope``).
No I/O here: the inventory is stored by :mod:`promote.cluster.apply` (``read_inventory``/
``write_inventory``, a ConfigMap ``promote-inventory-ENV`` in the agent's namespace).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MASS_PRUNE_SHARE = 0.5  # refuse to delete more than this share of the environment in one pass


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
