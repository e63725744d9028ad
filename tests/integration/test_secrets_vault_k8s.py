"""Vault Kubernetes auth against the real kube-apiserver and a real OpenBao dev server.

Service account tokens come from the TokenRequest API (kube-apiserver serves it itself, no
controller-manager needed). OpenBao reviews each login's JWT with that same JWT (no reviewer
token), so the service accounts are bound to ``system:auth-delegator``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from promote import config, errors
from promote.kustomize import render
from promote.secrets import files, resolve
from tests.conftest import ControlPlane, OpenBao

pytestmark = pytest.mark.integration

CANARY = "CANARY-vault-k8s-5b17a9"
AGENT = "promote-agent"
OTHER = "someone-else"


@pytest.fixture
def service_accounts(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    """AGENT and OTHER in the test namespace, both allowed to call TokenReview."""
    from kubernetes import client

    core = client.CoreV1Api(control_plane.api_client)
    rbac = client.RbacAuthorizationV1Api(control_plane.api_client)
    for name in (AGENT, OTHER):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    binding = f"{namespace}-auth-delegator"
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=binding),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="system:auth-delegator",
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)
                for name in (AGENT, OTHER)
            ],
        )
    )
    yield
    with contextlib.suppress(client.ApiException):
        rbac.delete_cluster_role_binding(binding)


def _token_file(control_plane: ControlPlane, namespace: str, name: str, path: Path) -> str:
    """A TokenRequest token (default audiences) for ``name``, written to ``path`` (0600)."""
    from kubernetes import client

    core = client.CoreV1Api(control_plane.api_client)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    status = core.create_namespaced_service_account_token(name, namespace, request).status
    assert status is not None
    jwt = str(status.token)
    path.touch(mode=0o600)
    path.write_text(jwt, encoding="utf-8")
    return jwt


@pytest.fixture
def k8s_auth(openbao: OpenBao, control_plane: ControlPlane, namespace: str) -> tuple[str, str]:
    """(mount, role): a Kubernetes auth mount of this test's own, its role bound to AGENT."""
    root = hvac.Client(url=openbao.address, token=openbao.token)
    suffix = uuid.uuid4().hex[:8]
    mount, role, policy = f"k8s-{suffix}", f"promote-{suffix}", f"promote-k8s-{suffix}"
    root.sys.enable_auth_method("kubernetes", path=mount)
    ca = (control_plane.info.data_dir / "pki" / "ca.crt").read_text(encoding="utf-8")
    root.auth.kubernetes.configure(
        kubernetes_host=control_plane.info.server,
        kubernetes_ca_cert=ca,
        disable_local_ca_jwt=True,
        mount_point=mount,
    )
    root.sys.create_or_update_policy(
        name=policy,
        policy=f'path "secret/data/promote-k8s/{suffix}/*" {{ capabilities = ["read"] }}',
    )
    root.auth.kubernetes.create_role(
        name=role,
        bound_service_account_names=[AGENT],
        bound_service_account_namespaces=[namespace],
        policies=[policy],
        mount_point=mount,
    )
    root.secrets.kv.v2.create_or_update_secret(
        path=f"promote-k8s/{suffix}/db", secret={"password": CANARY}, mount_point="secret"
    )
    return mount, role


def _project(repo: Path, openbao: OpenBao, mount: str, role: str) -> config.Project:
    env = repo / "environments/dev.yaml"
    vault_yaml = (
        f"{{address: {openbao.address}, auth: kubernetes, role: {role}, authMount: {mount}}}"
    )
    env.write_text(env.read_text() + f"secrets:\n  vault: {vault_yaml}\n")
    suffix = mount.removeprefix("k8s-")
    body = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\nstringData:\n"
        f"  password: vault:secret/promote-k8s/{suffix}/db#password\n"
    )
    (repo / "overlays/dev/api-secret.yaml").write_text(body)
    kz = repo / "overlays/dev/kustomization.yaml"
    kz.write_text(
        kz.read_text().replace("- ../base/api\n", "- ../base/api\n- api-secret.yaml\n", 1)
    )
    return config.load_project(repo)


def _resolve(project: config.Project, token_path: Path) -> list[dict[str, Any]]:
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "VAULT_K8S_TOKEN_PATH": str(token_path),
    }
    res = resolve.Resolver.for_environment(
        project.env("dev"),
        environ=environ,
        sources=lambda: files.sources(project, project.env("dev")),
    )
    return res.resolve(render.render(project.env("dev").overlay_dir))


@pytest.mark.usefixtures("service_accounts")
def test_kubernetes_auth_resolves_and_refuses_an_unbound_service_account(
    secrets_repo: Path,
    tmp_path: Path,
    openbao: OpenBao,
    control_plane: ControlPlane,
    namespace: str,
    k8s_auth: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    mount, role = k8s_auth
    project = _project(secrets_repo, openbao, mount, role)
    assert "VAULT_TOKEN" not in os.environ  # secrets_home removed it; only the JWT logs in

    agent_path = tmp_path / "agent.jwt"
    agent_jwt = _token_file(control_plane, namespace, AGENT, agent_path)
    out = _resolve(project, agent_path)
    secret = next(o for o in out if o["kind"] == "Secret" and o["metadata"]["name"] == "api")
    assert base64.b64decode(secret["data"]["password"]) == CANARY.encode()

    other_path = tmp_path / "other.jwt"
    other_jwt = _token_file(control_plane, namespace, OTHER, other_path)
    with pytest.raises(errors.VaultError) as caught:
        _resolve(project, other_path)
    message = str(caught.value)
    assert "Vault refused the login" in message and "kubernetes login" in message
    assert not caught.value.retryable

    captured = capsys.readouterr()
    seen = [message, repr(caught.value), caplog.text, captured.out, captured.err]
    seen += [str(caught.value.__cause__), str(caught.value.__context__)]
    for jwt in (agent_jwt, other_jwt):
        assert all(jwt not in text for text in seen)
    assert CANARY not in caplog.text
