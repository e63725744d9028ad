"""Rejected versions (pure; DESIGN.md §6, issue 16 item 3): records, their files, the check.

A rejection says "this version of this app must not move into any environment": it lives at
``releases/rejected/<app>/<version>.yaml`` (a digest's ``:`` spelled ``-``), outside the render
inputs (``scope.RECORDS_ROOT``), so placing one never makes an environment Unverified and
needs no approval; lifting one (removing the file) goes through a pull request that needs the
strictest environment's approvals (``scope.affected(..., lifted=...)``).

A version is an image's tag and/or digest (``overlay.Image.version``). A rejection of a tag
matches every change to that tag (with any digest); one of a digest matches that digest under
any tag. This module parses and writes the records and checks image changes against them; the
engine reads the files from main and the CLI reports. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from promote.errors import ConfigError, UsageError
from promote.kustomize import overlay, reference
from promote.promotion import plan, scope

REJECTED_DIR = f"{scope.RECORDS_ROOT}rejected"


@dataclass(frozen=True, slots=True)
class Rejection:
    app: str
    version: str  # TAG, sha256:HEX or TAG@sha256:HEX
    reason: str
    at: datetime
    by: str
    evidence: str | None = None  # a link to what showed the version bad

    @property
    def path(self) -> str:
        return record_path(self.app, self.version)

    def to_dict(self) -> dict[str, str | None]:
        """The record as ``-o json`` shows it: app, version, reason, at (ISO 8601), by,
        evidence."""
        return {
            "app": self.app,
            "version": self.version,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "by": self.by,
            "evidence": self.evidence,
        }

    def describe(self) -> str:
        why = f"{self.app} {self.version} was rejected by {self.by} on {self.at:%Y-%m-%d %H:%M}"
        why += f" UTC: {self.reason}"
        return why + (f" (evidence: {self.evidence})" if self.evidence else "")


def record_path(app: str, version: str) -> str:
    return f"{REJECTED_DIR}/{app}/{version.replace(':', '-')}.yaml"


def from_path(path: str) -> tuple[str, str] | None:
    """(app, version) of a record's path (:func:`record_path` reversed), else None."""
    rest = path.removeprefix(f"{REJECTED_DIR}/")
    app, _, file = rest.partition("/")
    if rest == path or not app or not file.endswith(".yaml") or "/" in file:
        return None
    version = file.removesuffix(".yaml").replace("sha256-", "sha256:", 1)
    return app, version


def check_version(app: str, version: str) -> None:
    """A usage error unless ``app`` is a plain name and ``version`` a tag and/or digest."""
    if not app or "/" in app or reference.name_problem(app) is not None:
        raise UsageError(f"{app!r}: name the app as an image's last path segment (e.g. web-app).")
    tag, _, digest = version.partition("@") if "@" in version else ("", "", "")
    if not digest:
        tag, digest = ("", version) if version.startswith("sha256:") else (version, "")
    problem = (reference.tag_problem(tag) if tag else None) or (
        reference.digest_problem(digest) if digest else None
    )
    if problem is not None or not (tag or digest):
        raise UsageError(f"{version!r}: {problem or 'empty version'}; write TAG, DIGEST or both.")


def dump(r: Rejection) -> str:
    doc: dict[str, Any] = {
        "app": r.app,
        "version": r.version,
        "reason": r.reason,
        "at": r.at.isoformat(),
        "by": r.by,
    }
    if r.evidence:
        doc["evidence"] = r.evidence
    return "# A rejected version: `promote unreject` lifts it (with approvals).\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


def parse(text: str, path: str) -> Rejection:
    """One record; a broken record is a config error naming the file (it still rejects
    nothing silently: the command that reads it stops)."""
    try:
        doc = yaml.safe_load(text)
        return Rejection(
            app=str(doc["app"]),
            version=str(doc["version"]),
            reason=str(doc.get("reason", "")),
            at=datetime.fromisoformat(str(doc["at"])),
            by=str(doc.get("by", "?")),
            evidence=str(doc["evidence"]) if doc.get("evidence") else None,
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not a rejection record ({exc.__class__.__name__}); it needs app, version, "
            "reason, at (ISO time) and by. Fix it, or lift it with `promote unreject`."
        ) from exc


def matches(r: Rejection, image: overlay.Image) -> bool:
    if r.app not in (image.app, image.name):
        return False
    tag, _, digest = r.version.partition("@")
    if tag.startswith("sha256:"):
        tag, digest = "", tag
    return (not tag or tag == image.new_tag) and (not digest or digest == image.digest)


def rejected(
    changes: Iterable[plan.ImageChange], records: Sequence[Rejection]
) -> list[tuple[plan.ImageChange, Rejection]]:
    """Each change that would move a rejected version into the environment, with its record."""
    return [(c, r) for c in changes for r in records if matches(r, c.new)]


def gate(changes: Iterable[plan.ImageChange], records: Sequence[Rejection]) -> plan.GateResult:
    """The ``rejected versions`` gate of a plan: blocks while any change is rejected."""
    hits = rejected(changes, records)
    if not hits:
        return plan.GateResult(
            "rejected versions", plan.GateStatus.PASSED, "no change moves a rejected version"
        )
    return plan.GateResult(
        "rejected versions", plan.GateStatus.BLOCKED, "; ".join(r.describe() for _, r in hits)
    )
