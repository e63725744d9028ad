"""deploy/: the in-cluster agent manifests render with kustomize and the API server takes them."""

from __future__ import annotations

from typing import Any

import pytest

from promote.cluster import client
from promote.kustomize import render
from promote.reconcile import webhook
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_agent_takes_its_webhook_secret_from_an_optional_secret(
    env: str, control_plane: Any, namespace: str
) -> None:
    objects = render.Kustomize().build(REPO_ROOT / "deploy" / env)
    (dep,) = [o for o in objects if o["kind"] == "Deployment"]
    (agent,) = dep["spec"]["template"]["spec"]["containers"]
    env_vars = {e["name"]: e for e in agent["env"]}
    ref = env_vars[webhook.SECRET_ENV]["valueFrom"]["secretKeyRef"]
    # From a Secret, never a literal; optional, so an agent without one still starts (404
    # on /hooks/git, polling only).
    assert ref == {"name": "promote-webhook", "key": "secret", "optional": True}
    assert "value" not in env_vars[webhook.SECRET_ENV]
    assert "--listen" in agent["args"]  # the endpoint's server
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    dep["metadata"]["namespace"] = namespace
    accepted = cluster.apply(dep, force=True, dry_run=True)  # the API server's validation
    assert accepted["spec"]["template"]["spec"]["containers"][0]["env"] == agent["env"]
