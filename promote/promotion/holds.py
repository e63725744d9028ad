"""Holds (pure; DESIGN.md §6, issue 16 item 5): an environment paused for auto-promotion.

``promote hold ENV --reason R`` writes ``releases/holds/<env>.yaml``; ``promote resume ENV``
removes it. Like rejections, holds are records outside the render inputs (``scope``): placing
or removing one never makes an environment Unverified. A hold stops nothing a person does by
hand (``promote to`` still opens PRs under the environment's approval policy); it is shown in
every plan into the environment, and it is what auto-promotion must respect. No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import yaml

from promote.errors import ConfigError
from promote.promotion import scope

HOLDS_DIR = f"{scope.RECORDS_ROOT}holds"


@dataclass(frozen=True, slots=True)
class Hold:
    env: str
    reason: str
    at: datetime
    by: str

    @property
    def path(self) -> str:
        return record_path(self.env)

    def describe(self) -> str:
        return (
            f"{self.env} is on hold since {self.at:%Y-%m-%d %H:%M} UTC by {self.by}: {self.reason}"
        )


def record_path(env: str) -> str:
    return f"{HOLDS_DIR}/{env}.yaml"


def dump(h: Hold) -> str:
    doc = {"env": h.env, "reason": h.reason, "at": h.at.isoformat(), "by": h.by}
    return "# A hold: auto-promotion into this environment pauses until `promote resume`.\n" + (
        yaml.safe_dump(doc, sort_keys=False)
    )


def parse(text: str, path: str) -> Hold:
    try:
        doc = yaml.safe_load(text)
        return Hold(
            env=str(doc["env"]),
            reason=str(doc.get("reason", "")),
            at=datetime.fromisoformat(str(doc["at"])),
            by=str(doc.get("by", "?")),
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not a hold record ({exc.__class__.__name__}); it needs env, reason, at "
            "(ISO time) and by. Fix it, or remove it with `promote resume ENV`."
        ) from exc
