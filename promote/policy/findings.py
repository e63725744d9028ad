"""What a policy check found, as plain values (pure, and cheap to import: no CEL here).

The plan, ``validate`` and ``merge`` carry these; only :mod:`promote.policy.evaluate` makes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Outcome(enum.StrEnum):
    VIOLATED = "violated"
    NOT_EVALUATED = "not evaluated"  # offline we cannot decide; blocks where it would deny


@dataclass(frozen=True, slots=True)
class Finding:
    env: str
    object: str  # "apps/v1 Deployment shop/web"
    policy: str
    binding: str
    actions: tuple[str, ...]  # the binding's validationActions (Deny for config errors)
    outcome: Outcome
    message: str  # the rule's own message, or why it was not evaluated

    @property
    def blocks(self) -> bool:
        return "Deny" in self.actions

    def __str__(self) -> str:
        how = "denied" if self.blocks else "/".join(a.lower() for a in self.actions)
        what = "not evaluated: " if self.outcome is Outcome.NOT_EVALUATED else ""
        return (
            f"{self.env}: {self.object}: policy {self.policy} (binding {self.binding}, "
            f"{how}): {what}{self.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "object": self.object,
            "policy": self.policy,
            "binding": self.binding,
            "actions": list(self.actions),
            "outcome": str(self.outcome),
            "message": self.message,
            "blocks": self.blocks,
        }
