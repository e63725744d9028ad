"""A local Kubernetes cluster: real etcd and kube-apiserver on 127.0.0.1, and with ``nodes``
also kube-controller-manager, kube-scheduler and kwok playing the kubelet of fake Nodes.

Owns: finding the binaries (built by ``tools/ensure-controlplane`` and ``tools/ensure-kwok``),
the data directory, starting the servers on free ports with the certificates and kubeconfig
``localpki`` writes (context ``promote-local``), waiting for ``/readyz`` (and, with nodes, for
the controllers and Ready Nodes: ``localnodes``), and stopping them. Test fixtures use
:class:`LocalCluster` (a context manager whose servers die with this process); ``promote
cluster up/down`` use :func:`up`, which leaves them running detached and records them in
``<dir>/state.json``, and :func:`down`, which stops them by PID. Spawning, stopping and
tracking the processes themselves is :mod:`promote.local.clusterprocs`.

Must not: build binaries, or talk to the API beyond ``/readyz`` and Nodes (``cluster/`` does
that). With ``nodes=0`` (API only, for tests that need no rollout and for benchmarks) there is
no controller-manager, scheduler or kubelet: Pods are stored, never run, and a deleted namespace
stays Terminating. With nodes, Deployments roll out and Pods are reported Running and Ready by
kwok, but no container runs: see ``stages/stages.yaml`` for what is simulated.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promote import errors
from promote.local import clusterprocs, nodes
from promote.local import pki as localpki

log = logging.getLogger(__name__)

#: Keep in step with tools/ensure-controlplane and tools/controlplane/go.mod.
K8S_VERSION = "v1.34.4"
CONTEXT = "promote-local"
STATE_FILE = "state.json"
_BUILD_HINT = (
    "Build them once with tools/ensure-controlplane (needs Go and the module proxy; a cold "
    "build takes several minutes), or point PROMOTE_CONTROLPLANE_DIR at a directory holding them."
)
_LOG_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """Where a running control plane is and how to reach it."""

    kubeconfig: Path
    server: str  # https://127.0.0.1:<port>
    context: str
    data_dir: Path


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What :func:`up` records in ``<dir>/state.json`` so another process can stop it."""

    info: ClusterInfo
    version: str
    etcd_pid: int
    apiserver_pid: int
    etcd_port: int
    apiserver_port: int
    nodes: int = 0  # kwok Nodes; 0 is the API-only cluster
    components: dict[str, int] = field(default_factory=dict)  # controllers and kwok: name -> pid

    def pids(self) -> dict[str, int]:
        """Every process of the cluster, in start order."""
        return {"etcd": self.etcd_pid, "kube-apiserver": self.apiserver_pid, **self.components}


def find_binaries(*, controllers: bool = False) -> Path:
    """The directory holding ``kube-apiserver`` and ``etcd`` (with ``controllers``, also
    kube-controller-manager and kube-scheduler); the same order as the script."""
    names = ("kube-apiserver", "etcd", *(nodes.CONTROLLER_BINARIES if controllers else ()))
    explicit = os.environ.get("PROMOTE_CONTROLPLANE_DIR")
    if explicit:
        if _has_binaries(Path(explicit), names):
            return Path(explicit)
        raise errors.ClusterError(
            f"PROMOTE_CONTROLPLANE_DIR={explicit} does not hold executable {', '.join(names)}.",
            hint=_BUILD_HINT,
        )
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _has_binaries(Path(assets), names):
        return Path(assets)
    cache = os.environ.get("PROMOTE_CACHE") or str(Path.home() / ".cache" / "promote")
    built = Path(cache) / "controlplane" / K8S_VERSION
    if _has_binaries(built, names):
        return built
    raise errors.ClusterError(
        f"{', '.join(names)} {K8S_VERSION} are not built: {built} is missing or incomplete.",
        hint=_BUILD_HINT,
    )


def _has_binaries(directory: Path, names: tuple[str, ...]) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in names)


class LocalCluster:
    """The cluster for the life of this process, or of the ``with`` block.

    ``nodes`` > 0 also runs kube-controller-manager, kube-scheduler and kwok with that many
    fake Nodes, so workloads roll out; 0 is etcd + kube-apiserver only.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        binaries: Path | None = None,
        nodes: int = 0,
        kwok_dir: Path | None = None,
        ready_timeout_s: float = 60.0,  # warm start is ~5 s; 2 busy cores can take much longer
    ) -> None:
        self._given_dir = data_dir
        self._binaries = binaries
        self._nodes = nodes
        self._kwok_dir = kwok_dir
        self._ready_timeout_s = ready_timeout_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ports: dict[str, int] = {}
        self._data_dir: Path | None = None
        self._info: ClusterInfo | None = None
        self._restart_args: tuple[list[str], Path, Path, bool] = ([], Path(), Path(), False)

    @property
    def info(self) -> ClusterInfo:
        if self._info is None:
            raise errors.ClusterError("The local cluster is not started; call start() first.")
        return self._info

    def start(self, *, detach: bool = False) -> ClusterInfo:
        """Start both servers and wait for /readyz; on failure everything started is stopped.

        ``detach`` leaves the servers running after this process exits (``promote cluster
        up``); otherwise they are stopped at exit, on SIGTERM/SIGHUP, and when we die.
        """
        if self._info is not None:
            return self._info
        binaries = self._binaries or find_binaries(controllers=self._nodes > 0)
        kwok_dir = (self._kwok_dir or nodes.find_kwok()) if self._nodes else None
        if self._given_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="promote-cluster-")).resolve()
        else:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            # Absolute: the path is in both servers' argv, which is how down() knows them.
            self._data_dir = self._given_dir.resolve()
        if not detach:
            clusterprocs.track(self)
        try:
            self._info = self._launch(binaries, self._data_dir, detach=detach)
            if kwok_dir is not None:
                self._start_nodes(binaries, kwok_dir, self._info, detach=detach)
        except BaseException:
            self.stop()
            raise
        return self._info

    def state(self) -> ClusterState:
        return ClusterState(
            info=self.info,
            version=K8S_VERSION,
            etcd_pid=self._procs["etcd"].pid,
            apiserver_pid=self._procs["kube-apiserver"].pid,
            etcd_port=self._ports["etcd"],
            apiserver_port=self._ports["kube-apiserver"],
            nodes=self._nodes,
            components={n: self._procs[n].pid for n in nodes.COMPONENTS if n in self._procs},
        )

    def stop(self) -> None:
        """Stop every process (process groups) and remove a data directory we created."""
        # Reverse start order: clients before the apiserver, the apiserver before etcd.
        for name in reversed(list(self._procs)):
            proc = self._procs.pop(name)
            clusterprocs.terminate(proc.pid, proc)
        clusterprocs.untrack(self)
        if self._given_dir is None and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        self._info = None

    def __enter__(self) -> ClusterInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _launch(self, binaries: Path, data_dir: Path, *, detach: bool) -> ClusterInfo:
        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        etcd_port, peer_port, api_port = clusterprocs.free_ports(3)
        self._ports = {"etcd": etcd_port, "kube-apiserver": api_port}
        pki = localpki.write_pki(data_dir / "pki")
        server = f"https://127.0.0.1:{api_port}"
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        etcd_argv = [
            str(binaries / "etcd"),
            f"--data-dir={data_dir / 'etcd'}",
            "--name=promote-local",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=promote-local={peer_url}",
            "--unsafe-no-fsync=true",  # throwaway data; fsync dominates apiserver write latency
        ]
        api_argv = [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={server}",
            "--service-cluster-ip-range=10.0.0.0/16",
            "--authorization-mode=RBAC",
            # ServiceAccount admission waits for a token controller the API-only cluster does
            # not run. TaintNodesByCondition would taint each new Node not-ready until the
            # node-lifecycle controller, which we do not run either (localnodes), lifts it.
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--allow-privileged=true",
            "--profiling=false",
        ]
        self._restart_args = (api_argv, logs, pki, detach)
        self._procs["etcd"] = clusterprocs.spawn(etcd_argv, logs / "etcd.log", detach=detach)
        self._procs["kube-apiserver"] = clusterprocs.spawn(
            api_argv, logs / "kube-apiserver.log", detach=detach
        )
        self._wait_ready(api_port, pki, logs)
        kubeconfig = data_dir / "kubeconfig"
        localpki.write_kubeconfig(kubeconfig, server, pki, context=CONTEXT)
        return ClusterInfo(kubeconfig=kubeconfig, server=server, context=CONTEXT, data_dir=data_dir)

    def _start_nodes(
        self, binaries: Path, kwok_dir: Path, info: ClusterInfo, *, detach: bool
    ) -> None:
        """Controllers, scheduler and kwok; the fake Nodes; wait until they all serve."""
        logs, pki = info.data_dir / "logs", info.data_dir / "pki"
        started = time.monotonic()
        cm_port, sched_port = clusterprocs.free_ports(2)
        argvs = nodes.component_argvs(
            binaries, kwok_dir, pki=pki, kubeconfig=info.kubeconfig, ports=(cm_port, sched_port)
        )
        for name, argv in argvs.items():
            self._procs[name] = clusterprocs.spawn(argv, logs / f"{name}.log", detach=detach)
        api = nodes.Api(self._ports["kube-apiserver"], pki)
        nodes.create_nodes(api, self._nodes)
        missing = nodes.wait_ready(
            api,
            nodes=self._nodes,
            ports=(cm_port, sched_port),
            deadline=started + self._ready_timeout_s,
            check=lambda: self._check_alive(logs),
        )
        if missing:
            raise _startup_error(f"not ready within {self._ready_timeout_s:g}s ({missing})", logs)
        log.info("controllers and %d nodes ready in %.1fs", self._nodes, time.monotonic() - started)

    def _check_alive(self, logs: Path) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise _startup_error(f"{name} exited with status {proc.returncode}", logs)

    def restart_apiserver(self, *, down_s: float = 0.0) -> None:
        """Stop kube-apiserver and start it again on the same port; etcd keeps the data.
        To clients this is a control-plane crash or upgrade (tests of agent recovery)."""
        api_argv, logs, pki, detach = self._restart_args
        proc = self._procs.pop("kube-apiserver")
        clusterprocs.terminate(proc.pid, proc)
        time.sleep(down_s)
        self._procs["kube-apiserver"] = clusterprocs.spawn(
            api_argv, logs / "kube-apiserver.log", detach=detach
        )
        self._wait_ready(self._ports["kube-apiserver"], pki, logs)

    def _wait_ready(self, port: int, pki: Path, logs: Path) -> None:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        started = time.monotonic()
        last = "no answer yet"
        while time.monotonic() - started < self._ready_timeout_s:
            self._check_alive(logs)
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
            try:
                conn.request("GET", "/readyz")
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                if response.status == 200:
                    log.info("control plane ready in %.1fs", time.monotonic() - started)
                    return
                last = f"/readyz {response.status}: {body.strip()[-300:]}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"/readyz: {exc}"
            finally:
                conn.close()
            time.sleep(0.2)
        raise _startup_error(
            f"kube-apiserver was not ready within {self._ready_timeout_s:g}s ({last})", logs
        )


def up(directory: Path, *, nodes: int = 0, ready_timeout_s: float = 60.0) -> ClusterState:
    """Start a detached cluster in ``directory`` with ``nodes`` kwok Nodes (0: API only), or
    return the one already running there (whatever its nodes)."""
    directory = directory.expanduser().resolve()
    existing = read_state(directory)
    if existing is not None:
        if is_running(existing):
            return existing
        down(directory)  # stale: the machine rebooted or someone killed the servers
    if directory.exists() and any(directory.iterdir()):
        raise errors.ClusterError(
            f"{directory} is not empty and holds no {STATE_FILE}; refusing to use it.",
            hint="Pick another --dir, or empty it.",
        )
    cluster = LocalCluster(data_dir=directory, nodes=nodes, ready_timeout_s=ready_timeout_s)
    try:
        cluster.start(detach=True)
        state = cluster.state()
        tmp = directory / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(state), default=str, indent=2) + "\n")
        tmp.replace(directory / STATE_FILE)
    except BaseException:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return state


def down(directory: Path) -> ClusterState | None:
    """Stop the servers :func:`up` started in ``directory`` and remove it; None if none was."""
    directory = directory.expanduser().resolve()
    state = read_state(directory)
    if state is None:
        return None
    for pid in reversed(state.pids().values()):  # kwok and the controllers first, etcd last
        if clusterprocs.owned(pid, directory):
            clusterprocs.terminate(pid, None)
    shutil.rmtree(directory, ignore_errors=True)
    return state


def read_state(directory: Path) -> ClusterState | None:
    path = directory.expanduser() / STATE_FILE
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        info = raw.pop("info")
        for key in ("kubeconfig", "data_dir"):
            info[key] = Path(info[key])
        return ClusterState(info=ClusterInfo(**info), **raw)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.ClusterError(
            f"{path} is not a state file promote wrote ({exc}).", hint="Remove the directory."
        ) from exc


def is_running(state: ClusterState) -> bool:
    directory = state.info.data_dir
    return all(clusterprocs.owned(pid, directory) for pid in state.pids().values())


def _startup_error(what: str, logs: Path) -> errors.ClusterError:
    parts = [f"The local control plane did not start: {what}."]
    for name in ("etcd", "kube-apiserver", *nodes.COMPONENTS):
        path = logs / f"{name}.log"
        if name in nodes.COMPONENTS and not path.exists():
            continue
        try:
            tail = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            tail = ["(no log)"]
        parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
    return errors.ClusterError("\n".join(parts))
