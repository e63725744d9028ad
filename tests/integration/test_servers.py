"""Smoke tests proving the servers the suite runs are the real ones: kube-apiserver + etcd with
server-side apply, conflicts, watches and Leases; OpenBao with KV v2 and transit."""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import pytest
from kubernetes import client, watch

from tests.helpers import run_cli

if TYPE_CHECKING:
    from tests.conftest import ControlPlane, OpenBao

pytestmark = pytest.mark.integration

APPLY = "application/apply-patch+yaml"


def _deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def test_deployment_created_with_the_official_client_reads_back(
    control_plane: ControlPlane, namespace: str
) -> None:
    apps = client.AppsV1Api(control_plane.api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web", "nginx:1.27"))

    got = apps.read_namespaced_deployment("web", namespace)

    assert got.spec.template.spec.containers[0].image == "nginx:1.27"
    assert got.metadata.uid  # assigned by the server
    assert got.spec.strategy.type == "RollingUpdate"  # defaulted by the server


def test_pod_is_stored_without_a_token_controller(
    control_plane: ControlPlane, namespace: str
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="one"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )

    core.create_namespaced_pod(namespace, pod)

    assert core.read_namespaced_pod("one", namespace).status.phase == "Pending"  # no scheduler


def test_rbac_denies_a_user_without_bindings(control_plane: ControlPlane, namespace: str) -> None:
    core = client.CoreV1Api(control_plane.api_client)

    with pytest.raises(client.ApiException) as denied:
        core.list_namespaced_config_map(namespace, _headers={"Impersonate-User": "nobody"})

    assert denied.value.status == 403


def test_second_field_manager_conflicting_apply_gets_409(
    control_plane: ControlPlane, namespace: str
) -> None:
    apps = client.AppsV1Api(control_plane.api_client)
    apps.patch_namespaced_deployment(
        "web",
        namespace,
        _deployment("web", "nginx:1.27"),
        field_manager="promote",
        _content_type=APPLY,
    )

    with pytest.raises(client.ApiException) as conflict:
        apps.patch_namespaced_deployment(
            "web",
            namespace,
            _deployment("web", "nginx:1.28"),
            field_manager="someone-else",
            _content_type=APPLY,
        )

    assert conflict.value.status == 409
    status = json.loads(conflict.value.body)
    assert status["reason"] == "Conflict"
    assert "promote" in status["message"]
    managers = {
        entry.manager
        for entry in apps.read_namespaced_deployment("web", namespace).metadata.managed_fields
    }
    assert managers == {"promote"}


def test_watch_receives_modified_after_a_patch(control_plane: ControlPlane, namespace: str) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    created = core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"mode": "a"}),
    )
    core.patch_namespaced_config_map("settings", namespace, {"data": {"mode": "b"}})

    seen = []
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=created.metadata.resource_version,
        timeout_seconds=10,
    )
    for event in stream:
        seen.append((event["type"], event["object"].data))
        if event["type"] == "MODIFIED":
            break

    assert ("MODIFIED", {"mode": "b"}) in seen


def test_lease_is_created_and_renewed_with_optimistic_concurrency(
    control_plane: ControlPlane, namespace: str
) -> None:
    leases = client.CoordinationV1Api(control_plane.api_client)
    now = datetime.datetime.now(datetime.UTC)
    lease = leases.create_namespaced_lease(
        namespace,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="promote-agent-dev"),
            spec=client.V1LeaseSpec(
                holder_identity="agent-1",
                lease_duration_seconds=15,
                acquire_time=now,
                renew_time=now,
            ),
        ),
    )
    stale_version = lease.metadata.resource_version

    lease.spec.renew_time = now + datetime.timedelta(seconds=5)
    renewed = leases.replace_namespaced_lease("promote-agent-dev", namespace, lease)

    assert renewed.spec.renew_time > now
    assert renewed.metadata.resource_version != stale_version
    lease.metadata.resource_version = stale_version  # a rival holding the old version loses
    lease.spec.holder_identity = "agent-2"
    with pytest.raises(client.ApiException) as conflict:
        leases.replace_namespaced_lease("promote-agent-dev", namespace, lease)
    assert conflict.value.status == 409


def test_openbao_kv2_write_then_read(openbao: OpenBao) -> None:
    bao = hvac.Client(url=openbao.address, token=openbao.token)
    path = f"promote-tests/{uuid.uuid4().hex}"
    bao.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"password": "s3cr3t"}, mount_point="secret"
    )

    read = bao.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )

    assert read["data"]["data"] == {"password": "s3cr3t"}
    assert read["data"]["metadata"]["version"] == 1


def test_openbao_transit_encrypt_then_decrypt(openbao: OpenBao) -> None:
    bao = hvac.Client(url=openbao.address, token=openbao.token)
    mount = f"transit-{uuid.uuid4().hex[:8]}"
    bao.sys.enable_secrets_engine("transit", path=mount)
    bao.secrets.transit.create_key(name="promote", mount_point=mount)
    plaintext = base64.b64encode(b"hello promote").decode()

    ciphertext = bao.secrets.transit.encrypt_data(
        name="promote", plaintext=plaintext, mount_point=mount
    )["data"]["ciphertext"]
    decrypted = bao.secrets.transit.decrypt_data(
        name="promote", ciphertext=ciphertext, mount_point=mount
    )["data"]["plaintext"]

    assert ciphertext.startswith("vault:v1:")
    assert base64.b64decode(decrypted) == b"hello promote"


def test_cluster_up_gives_a_kubeconfig_kubectl_can_use_then_down(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed; this test checks the kubeconfig with it")
    directory = tmp_path / "cluster"
    try:
        up = run_cli("cluster", "up", "--dir", str(directory), "--nodes", "2")
        assert up.code == 0, up.stderr
        lines = [line for line in up.stdout.splitlines() if line.startswith("kubeconfig: ")]
        kubeconfig = lines[0].removeprefix("kubeconfig: ")
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout

        got = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", "ns", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.returncode == 0, got.stderr
        assert "namespace/default" in got.stdout.split()

        status = run_cli("cluster", "status", "--dir", str(directory), "-o", "json")
        assert status.json()["running"] is True
        assert status.json()["nodes"] == [
            {"name": "kwok-node-0", "ready": True},
            {"name": "kwok-node-1", "ready": True},
        ]
        pids = status.json()["pids"]
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        shown = run_cli("cluster", "status", "--dir", str(directory))
        assert "node kwok-node-1: Ready" in shown.stdout, shown.stdout
    finally:
        down = run_cli("cluster", "down", "--dir", str(directory))
    assert down.code == 0, down.stderr
    assert not directory.exists()
    assert not any(_running(pid) for pid in pids.values())


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie waits for init, it is gone


def test_cluster_up_with_no_nodes_runs_only_the_api(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    try:
        up = run_cli("cluster", "up", "--dir", str(directory), "--nodes", "0", "-o", "json")
        assert up.code == 0, up.stderr
        doc = up.json()
        assert set(doc["pids"]) == {"etcd", "kube-apiserver"} and doc["nodes"] == []
        shown = run_cli("cluster", "status", "--dir", str(directory))
        assert "no nodes: API only" in shown.stdout, shown.stdout
    finally:
        down = run_cli("cluster", "down", "--dir", str(directory))
    assert down.code == 0, down.stderr
    assert not any(_running(pid) for pid in doc["pids"].values())
