"""The values of one agent: its settings, and the report of one reconcile pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promote.promotion import verification
from promote.reconcile.desired import StageFailed


@dataclass(frozen=True, slots=True)
class AgentSettings:
    env: str
    namespace: str  # default namespace of the environment's objects; status lives here too
    # None: the environment's own setting (``sync.selfHeal``/``sync.prune``) at the revision
    # being deployed; True/False: a command-line override.
    self_heal: bool | None = None
    prune: bool | None = None
    allow_mass_prune: bool = False
    workers: int = 8  # parallel applies; the API server is the bottleneck past this


@dataclass(slots=True)
class PassReport:
    revision: str | None = None
    applied: list[str] = field(default_factory=list)
    out_of_sync: dict[str, list[str]] = field(default_factory=dict)  # object -> field paths
    pruned: list[str] = field(default_factory=list)
    prune_blocked: str | None = None
    health: str = "Unknown"
    health_details: dict[str, str] = field(default_factory=dict)
    error: StageFailed | None = None
    head: str | None = None  # main's head fetched (``revision`` is V when it is Unverified)
    verdict: verification.Verdict | None = None  # None: this environment does not verify
    admission: Any = None  # windowgate.Admission: whether a new revision waits for a window
    duration_s: float = 0.0
    objects: int = 0
    diffs: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = field(default_factory=list)
    produced: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> object as applied
    replace: dict[str, str] = field(default_factory=dict)  # key -> why only replacing applies it
