"""The demo's rollout steps: health as the agents report it, soak gates, a broken build.

Owns waiting on an agent's ``/status`` for a health (kwok's Nodes make Deployments really roll
out, so an environment turns Healthy some seconds after it is Synced), waiting out a soak gate,
and the story of a bad version: CI publishes a build whose image the local cluster never makes
ready (an image name containing ``/failing/``: see ``stages/stages.yaml``), dev goes
Progressing then Degraded at its progress deadline, the soak gate refuses it into staging,
and CI reverts it.

Must not: print, start or stop anything, or reveal a secret value.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from promote.local import nodes, seed
from promote.local.seed import DemoError
from promote.local.world import World, wait_until

APP = "web-app"
BAD_TAG = "v2.5.0"
HEALTH_TIMEOUT_S = 90.0  # a rollout takes seconds; two busy cores can stretch it a lot
GOOD_REGISTRY = "registry.example.com/acme/"
BAD_REGISTRY = f"registry.example.com{nodes.FAILING_IMAGE_MARKER}"


def wait_health(w: World, env: str, want: str, *, revision: str) -> dict[str, Any]:
    """The agent's ``/status`` once it reports ``revision`` Synced with health ``want``."""

    def reached() -> dict[str, Any] | None:
        doc = w.agent_status(env) or {}
        ok = doc.get("revision") == revision and doc.get("sync") == "Synced"
        return doc if ok and doc.get("health") == want else None

    doc = wait_until(reached, timeout_s=HEALTH_TIMEOUT_S, step_s=0.25)
    if doc is None:
        last = w.agent_status(env) or {}
        raise DemoError(
            f"the {env} agent did not report {revision[:12]} {want} within "
            f"{HEALTH_TIMEOUT_S:g}s: it reports {last.get('sync')}, {last.get('health')} "
            f"{last.get('health_details') or ''}"
        )
    return dict(doc)


def wait_soaked(w: World, env: str) -> float:
    """Wait until ``env``'s agent has reported Healthy for the demo's soak; seconds waited."""
    started = time.monotonic()

    def soaked() -> bool:
        since = (w.agent_status(env) or {}).get("healthy_since")
        if not since:
            return False
        healthy_for = datetime.now(UTC) - datetime.fromisoformat(since.replace("Z", "+00:00"))
        # A second of margin: the gate reads the status ConfigMap, written a moment later.
        return healthy_for.total_seconds() >= seed.DEMO_SOAK_S + 1

    if not wait_until(soaked, timeout_s=HEALTH_TIMEOUT_S, step_s=0.25):
        raise DemoError(f"the {env} agent never reported {seed.DEMO_SOAK_S}s Healthy.")
    return time.monotonic() - started


def commit_bad_build(w: World, message: str) -> None:
    """CI pushes the broken build of web-app BAD_TAG to dev (see :func:`_ci_commit`)."""
    _ci_commit(w, message, bad=True)


def _ci_commit(w: World, message: str, *, bad: bool) -> None:
    """Edit dev's overlay in the clone as CI's build job would, commit and push to main."""
    seed.git("checkout", "-q", "main", cwd=w.clone)
    seed.git("pull", "-q", "--ff-only", "origin", "main", cwd=w.clone)
    if not bad:
        seed.git("revert", "--no-edit", "HEAD", cwd=w.clone)
    else:
        path = w.clone / "overlays" / "dev" / "kustomization.yaml"
        text = path.read_text(encoding="utf-8")
        old_name = f"newName: {GOOD_REGISTRY}{APP}"
        lines = text.splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if line.strip() == old_name), None)
        if at is None or not lines[at + 1].strip().startswith("newTag:"):
            raise DemoError(f"{path}: no `{old_name}` followed by newTag to replace.")
        lines[at] = lines[at].replace(GOOD_REGISTRY, BAD_REGISTRY)
        lines[at + 1] = lines[at + 1].split("newTag:")[0] + f"newTag: {BAD_TAG}\n"
        path.write_text("".join(lines), encoding="utf-8")
        seed.git("commit", "-q", "-am", message, cwd=w.clone)
    seed.git("push", "-q", "origin", "main", cwd=w.clone)
