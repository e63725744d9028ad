"""What the agent already knows about each object, kept until the object changes (pure).

A no-op pass at 10,000 objects spent most of its time re-deriving what the previous pass
found: that each object is in sync (a projection and walk of desired against live) and how
healthy it is. Both follow from two inputs only: the desired object and the live one. The
live object's ``resourceVersion`` changes with every write to it (spec, labels, status, a
deletion and re-creation), so a verdict stamped with it holds exactly until the object
changes; the desired objects are unchanged while the desired state hands back the same list
(``DesiredState._prepared``), and every verdict on them is dropped when it does not.

Only "in sync" is remembered: an object out of sync is compared again on every pass, so
whatever the agent does about drift is unchanged. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from promote.cluster import health


def _version(live: dict[str, Any] | None) -> str:
    """The live object's resourceVersion; empty when it has none (never remembered)."""
    if live is None:
        return ""
    return str((live.get("metadata") or {}).get("resourceVersion") or "")


class Verdicts:
    """Objects found in sync, and health judgements, by key and live resourceVersion."""

    def __init__(self) -> None:
        self._desired: object | None = None  # the desired list the in-sync verdicts are about
        self._in_sync: dict[str, str] = {}  # key -> resourceVersion found in sync
        self._health: dict[str, tuple[str, health.HealthStatus]] = {}

    def desired_is(self, objects: object) -> None:
        """The pass's desired objects (the build's list): a different list forgets every
        in-sync verdict, since any desired object may have changed."""
        if objects is not self._desired:
            self._desired = objects
            self._in_sync = {}

    def in_sync(self, key: str, live: dict[str, Any] | None) -> bool:
        """Whether the object was found in sync with the current desired objects and has not
        changed since."""
        version = _version(live)
        return bool(version) and self._in_sync.get(key) == version

    def found_in_sync(self, key: str, live: dict[str, Any] | None) -> None:
        version = _version(live)
        if version:
            self._in_sync[key] = version

    def health(self, keyed: dict[str, dict[str, Any] | None]) -> dict[str, health.HealthStatus]:
        """``health.assess_health`` of each object, judged again only for objects that
        changed; judgements of keys not asked about are dropped."""
        kept: dict[str, tuple[str, health.HealthStatus]] = {}
        out = {}
        for key, obj in keyed.items():
            version = _version(obj)
            known = self._health.get(key)
            if version and known is not None and known[0] == version:
                status = known[1]
            else:
                status = health.assess_health(obj)
            if version:
                kept[key] = (version, status)
            out[key] = status
        self._health = kept
        return out
