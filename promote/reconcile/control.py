"""Release control of each environment, as ``promote status`` and the dashboard's matrix show it.

Holds and the rejected versions an environment runs come from main's records
(``engine.read_hold``, ``engine.read_rejections``, ``rejections.matches``); the agent's
verification and trust chain (why it is Unverified, which commit and files) from its published
status (``reconcile/status.py``); merge windows from ``promotion.windows.state``. Both callers
come here so the page and the command never disagree. Nothing is written; the clock is a
parameter; main's files are read from a project the caller loaded (a session or an export).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from promote import config
from promote.kustomize import overlay
from promote.promotion import engine, rejections, windows
from promote.reconcile import status as status_mod

KNOWN = set(status_mod.EnvStatus.__dataclass_fields__)


def main_records(
    project: config.Project, images: Mapping[str, Sequence[overlay.Image]]
) -> dict[str, Any]:
    """``{"holds": {env: text}, "running_rejected": {(env, app): text}}`` from main's records;
    ``images``: each environment's images on main (the caller's parse of its overlays)."""
    records = engine.read_rejections(project)
    running: dict[tuple[str, str], str] = {}
    for env, found in images.items():
        for image in found:
            for r in records:
                if rejections.matches(r, image):
                    running[(env, image.app)] = r.describe()
    holds = {
        e: h.describe()
        for e in project.pipeline()
        if (h := engine.read_hold(project, e)) is not None
    }
    return {"holds": holds, "running_rejected": running}


def release_state(
    main: dict[str, Any], env: str, entry: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """One environment's release control: the agent's verification, trust chain and a revision
    waiting for a merge window, the hold (``main["holds"]``, from :func:`main_records`), the
    merge windows of ``main["project"]`` now, and any state the agent reports that this code
    does not know yet (its name and message, as given: a newer agent's state is shown)."""
    status = entry.get("status") or {}
    if env in main["project"].broken:  # its file does not load: its error, nothing else
        empty = dict.fromkeys(("verification", "unverified", "outOfWindow", "hold", "windows"))
        return {**empty, "error": str(main["project"].broken[env]), "other": []}
    cfg = main["project"].env(env).config.windows
    window = windows.state(cfg, now) if cfg.any else None
    extra = []
    for key in sorted(set(status) - KNOWN):
        value = status[key]
        if isinstance(value, dict) and "state" in value:
            text = value.get("message") or value.get("reason") or ""
            extra.append({"name": key, "state": str(value["state"]), "message": str(text)})
        elif isinstance(value, str | int | bool) and value not in ("", None):
            extra.append({"name": key, "state": str(value), "message": ""})
    return {
        "error": None,
        "verification": status.get("verification"),
        "unverified": status.get("unverified"),
        "outOfWindow": status.get("window"),  # a new revision waits (reconcile/windowgate.py)
        "hold": main["holds"].get(env),
        "windows": None
        if window is None
        else {
            "open": window.open,
            "text": window.describe(),
            "nextOpening": window.next_opening.isoformat() if window.next_opening else None,
        },
        "other": extra,
    }


def mark_rejected(rows: list[dict[str, Any]], records: dict[str, Any]) -> None:
    """Set each release-matrix cell's ``rejected`` (the record's text, or None): the version
    that environment runs on main was rejected."""
    for row in rows:
        for env, cell in row["environments"].items():
            cell["rejected"] = records["running_rejected"].get((env, row["app"]))


def describe(env: str, state: dict[str, Any]) -> list[str]:
    """One line per release-control fact of ``env`` (:func:`release_state`), for people."""
    if state.get("error"):
        return [f"{env}: {state['error']}"]
    lines = [f"{env}: on hold: {state['hold']}"] if state["hold"] else []
    found = state["unverified"]
    if found:
        files = f" (changes {', '.join(found['files'])})" if found.get("files") else ""
        lines.append(
            f"{env}: Unverified: the agent refuses commit {str(found.get('commit', '?'))[:12]}"
            f"{files}: {found.get('reason', '')}; it keeps the last verified revision"
        )
    waiting = state["outOfWindow"]
    if waiting:
        lines.append(f"{env}: OutOfWindow: {waiting.get('message', '')}")
    win = state["windows"]
    if win is not None:
        lines.append(f"{env}: merge windows {'open' if win['open'] else 'closed'}: {win['text']}")
    lines += [f"{env}: {o['name']}: {o['state']} {o['message']}".rstrip() for o in state["other"]]
    return lines
