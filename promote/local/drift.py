"""The demo's drift step: someone scales a Deployment by hand, and the prod agent reverts it.

Owns the hand-made change (the PATCH ``kubectl scale`` would send), waiting for the replicas to
come back, and finding the ``DriftReverted`` Event that records it. Must not: print (the world's
narrator does), start or stop anything, or reveal a secret value.
"""

from __future__ import annotations

import time

from promote.local import seed, world

REVERT_TIMEOUT_S = 15.0  # a watch-driven revert takes well under a second; allow a busy box


def revert_drift(w: world.World, app: str) -> str:
    """Scale prod's ``app`` by hand; return what the agent's revert looked like."""
    namespace = w.namespaces["prod"]
    want = int(w.deployment("prod", app)["spec"]["replicas"])
    hand = want + 7
    seen = {e["metadata"]["uid"] for e in w.events("prod", "DriftReverted")}
    w.narrator.command(
        f"someone$ kubectl -n {namespace} scale deployment {app} --replicas={hand}",
        "(the demo sends this PATCH to the API server itself)",
    )
    started = time.monotonic()
    w.kube().request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{app}",
        body={"spec": {"replicas": hand}},
        content_type="application/merge-patch+json",
    )
    if not world.wait_until(
        lambda: w.deployment("prod", app)["spec"]["replicas"] == want,
        timeout_s=REVERT_TIMEOUT_S,
    ):
        raise seed.DemoError(
            f"Deployment {namespace}/{app} still has {hand} replicas after "
            f"{REVERT_TIMEOUT_S:g}s; the prod agent did not revert the drift."
        )
    took = time.monotonic() - started

    def new_event() -> dict[str, object] | None:
        return next(
            (e for e in w.events("prod", "DriftReverted")
             if e["metadata"]["uid"] not in seen and e["involvedObject"]["name"] == app),
            None,
        )  # fmt: skip

    event = world.wait_until(new_event, timeout_s=10, step_s=0.2)
    if not event:
        raise seed.DemoError(f"replicas were reverted but no DriftReverted Event names {app}.")
    w.narrator.say(f"Event {event['reason']} on Deployment {namespace}/{app}: "
                   f"{event['message']}")  # fmt: skip
    return f"replicas {hand} -> {want} in {took:.2f}s; Event DriftReverted recorded"
