"""The soak gate's view of the agents: each environment's status, read from its cluster.

The promotion side receives a :class:`~promote.promotion.plan.StatusReader`; this is the one
that reads ``promote-status-ENV`` (what the agent publishes) with the environment's cluster
settings from the project the promotion was planned on (main), never the local checkout. The
Kubernetes client is imported only when a gate asks: most promotions have no soak gate.
"""

from __future__ import annotations

from datetime import datetime

from promote import config
from promote.errors import PromoteError
from promote.promotion import plan


class AgentStatusReader:
    """``reader(env) -> EnvStatus | None``; an unreachable cluster or no agent yet is None."""

    def __init__(
        self, project: config.Project, *, kubeconfig: str | None = None, context: str | None = None
    ) -> None:
        self._project = project
        self._kubeconfig = kubeconfig  # --kubeconfig/--context: over the environment file's
        self._context = context

    def __call__(self, env: str) -> plan.EnvStatus | None:
        from promote.cluster import health
        from promote.reconcile import factory
        from promote.reconcile import status as status_mod

        environment = self._project.env(env)
        try:
            ov = factory.Overrides(kubeconfig=self._kubeconfig, context=self._context)
            cluster = factory.connect_env(environment, ov)
            namespace = environment.config.cluster.namespace
            st = status_mod.read(cluster, env=env, namespace=namespace)
        except PromoteError:
            return None
        if st is None:
            return None
        since = (
            datetime.fromisoformat(st.healthy_since.replace("Z", "+00:00"))
            if st.healthy_since
            else None
        )
        return plan.EnvStatus(
            env=env,
            synced=st.sync == status_mod.SyncState.SYNCED,
            healthy=health.Health.from_label(st.health) is health.Health.HEALTHY,
            images=dict(st.images),
            since=since,
            revision=st.revision,
            verified=_verified(st.verification),
        )


def _verified(found: dict[str, object] | None) -> dict[str, str] | None:
    """The images of a Verified verdict (what auto-promotion may move on)."""
    images = (found or {}).get("images")
    if not found or found.get("state") != "Verified" or not isinstance(images, dict):
        return None
    return {str(k): str(v) for k, v in images.items()}
