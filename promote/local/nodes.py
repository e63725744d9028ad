"""The parts of the local cluster that make workloads roll out: controllers, scheduler, nodes.

Owns: finding kwok (built by ``tools/ensure-kwok``), the command lines of
kube-controller-manager, kube-scheduler and kwok next to ``localcluster``'s etcd and
kube-apiserver, the fake Node objects kwok plays the kubelet for, and waiting until the
controllers answer and every Node is Ready. kwok's behaviour (Pods Running and Ready at once,
Job Pods Succeeded, and the simulated failures) is its Stage file ``stages/stages.yaml``.

Must not: start or stop processes (``localcluster`` does, by PID), or talk to the API beyond
creating and reading Nodes (``cluster/`` does that).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promote import errors

#: Keep in step with tools/ensure-kwok and tools/kwok/go.mod.
KWOK_VERSION = "v0.8.0"
#: kube-controller-manager and kube-scheduler come from the control plane's own cache directory.
CONTROLLER_BINARIES = ("kube-controller-manager", "kube-scheduler")
#: The processes this module describes, in start order (``localcluster`` stops them reversed).
COMPONENTS = ("kube-controller-manager", "kube-scheduler", "kwok")
NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")  # what kwok's node selector matches
NODE_PREFIX = "kwok-node-"
STAGES = Path(__file__).with_name("stages") / "stages.yaml"
#: The label a Pod template carries to simulate a failure (see ``stages/stages.yaml``).
SIMULATE_LABEL = "promote.dev/simulate"
#: A container image whose name contains this never becomes ready (a Job's Pod fails).
FAILING_IMAGE_MARKER = "/failing/"
_BUILD_HINT = (
    "Build it once with tools/ensure-kwok (needs Go and the module proxy), or point "
    "PROMOTE_KWOK_DIR at a directory holding it; or start the cluster with --nodes 0."
)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    ready: bool


def find_kwok() -> Path:
    """The directory holding ``kwok``; the same order as ``tools/ensure-kwok``."""
    explicit = os.environ.get("PROMOTE_KWOK_DIR") or os.environ.get("KWOK_BIN_DIR")
    if explicit:
        if os.access(Path(explicit) / "kwok", os.X_OK):
            return Path(explicit)
        raise errors.ClusterError(f"{explicit} holds no executable kwok.", hint=_BUILD_HINT)
    cache = os.environ.get("PROMOTE_CACHE") or str(Path.home() / ".cache" / "promote")
    built = Path(cache) / "kwok" / KWOK_VERSION
    if os.access(built / "kwok", os.X_OK):
        return built
    raise errors.ClusterError(f"kwok {KWOK_VERSION} is not built: {built} is missing.",
                              hint=_BUILD_HINT)  # fmt: skip


def component_argvs(
    binaries: Path, kwok_dir: Path, *, pki: Path, kubeconfig: Path, ports: tuple[int, int]
) -> dict[str, list[str]]:
    """argv of each component, in start order; ``ports`` are the controllers' health ports.

    All three use the admin kubeconfig (system:masters): throwaway credentials on 127.0.0.1,
    and one identity keeps the certificates ``localpki`` writes to a minimum.
    """
    cm_port, sched_port = ports
    # No --authentication/authorization-kubeconfig: their health ports then serve only the
    # always-allowed /healthz, /readyz and /livez, which is all we ask of them.
    auth = [
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",  # one of each; an election only delays start-up
        "--profiling=false",
    ]
    return {
        "kube-controller-manager": [
            str(binaries / "kube-controller-manager"),
            *auth,
            f"--secure-port={cm_port}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            # nodelifecycle would taint and evict from a Node whose heartbeat lags, which a
            # busy machine can make happen to kwok: fake Nodes stay up for the cluster's life.
            "--controllers=*,-nodelifecycle,-nodeipam",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ],
        "kube-scheduler": [
            str(binaries / "kube-scheduler"),
            *auth,
            f"--secure-port={sched_port}",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ],
        "kwok": [
            str(kwok_dir / "kwok"),
            f"--kubeconfig={kubeconfig}",
            f"--config={STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={'='.join(NODE_ANNOTATION)}",
            "--manage-nodes-with-label-selector=",
            "--manage-single-node=",
            "--cidr=10.244.0.0/16",  # Pod IPs, apart from the Service range 10.0.0.0/16
            "--node-ip=10.243.0.1",
        ],
    }


class Api:
    """Just enough of the API to create and read Nodes, as ``admin``, with the stdlib."""

    def __init__(self, port: int, pki: Path) -> None:
        self._port = port
        self._context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self._port, context=self._context,
                                           timeout=5)  # fmt: skip
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        with contextlib.suppress(ValueError):
            return response.status, json.loads(raw)
        return response.status, raw.decode(errors="replace")


def create_nodes(api: Api, count: int) -> list[str]:
    """``count`` Nodes for kwok (as kwok's docs show); existing ones are kept."""
    names = [f"{NODE_PREFIX}{index}" for index in range(count)]
    for name in names:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                # ttl 0: nothing caches this Node's status. No NoSchedule taint, unlike kwok's
                # example: there are no real nodes here to keep workloads away from.
                "annotations": {
                    NODE_ANNOTATION[0]: NODE_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
        }
        status, reply = api.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise errors.ClusterError(f"creating Node {name} failed: {status} {reply}")
    return names


def list_nodes(api: Api) -> list[NodeInfo]:
    status, reply = api.request("GET", "/api/v1/nodes")
    if status != 200 or not isinstance(reply, dict):
        raise errors.ClusterError(f"listing Nodes failed: {status} {str(reply)[:200]}")
    return [_node_info(item) for item in reply.get("items") or []]


def _node_info(item: dict[str, Any]) -> NodeInfo:
    conditions = (item.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return NodeInfo(name=str(item["metadata"]["name"]), ready=ready)


def wait_ready(
    api: Api,
    *,
    nodes: int,
    ports: tuple[int, int],
    deadline: float,
    check: Callable[[], None],
) -> str:
    """Until both controllers answer ``/healthz`` and ``nodes`` Nodes are Ready; "" when so.

    ``check`` raises when a process died (so a crash fails fast); at ``deadline`` (monotonic)
    returns what was still missing instead.
    """
    missing = "nothing checked yet"
    while True:
        check()
        missing = _missing(api, nodes, ports)
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)


def _missing(api: Api, nodes: int, ports: tuple[int, int]) -> str:
    for name, port in zip(CONTROLLER_BINARIES, ports, strict=True):
        if not _healthy(port):
            return f"{name} /healthz on port {port} not ok"
    try:
        ready = sum(1 for node in list_nodes(api) if node.ready)
    except (OSError, http.client.HTTPException, errors.ClusterError) as exc:
        return f"Nodes: {exc}"
    return "" if ready >= nodes else f"{ready} of {nodes} kwok Nodes Ready"


def _healthy(port: int) -> bool:
    # Their serving certificates are self-signed at start; only 127.0.0.1 is asked.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
