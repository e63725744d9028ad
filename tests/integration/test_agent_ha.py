"""Two agents for one environment: one leader (a Lease), and failover when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from promote.cluster import client
from tests.gitops import make_repo

pytestmark = pytest.mark.integration


def _agent(work: Path, kubeconfig: Path, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PROMOTE_CACHE": str(tmp / f"cache-{name}")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promote",
            "agent",
            "--env",
            "dev",
            "-C",
            str(work),
            "--kubeconfig",
            str(kubeconfig),
            "--interval",
            "1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "wb"),
        env=env,
        start_new_session=True,
    )


def _holder(cluster: client.Cluster, ns: str) -> str | None:
    lease = cluster.get(
        cluster.resource("coordination.k8s.io/v1", "Lease"), ns, "promote-agent-dev"
    )
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def _wait(cond: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    return None


def test_one_leader_and_standby_takes_over_within_15s_after_leader_dies(
    tmp_path: Path, namespace: str, control_plane: Any
) -> None:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    a = _agent(repo.work, control_plane.kubeconfig, tmp_path, "a")
    b = None
    try:
        first = _wait(lambda: _holder(cluster, namespace), 60)
        assert first, (tmp_path / "a.log").read_text()
        assert _wait(
            lambda: cluster.get(cluster.resource("apps/v1", "Deployment"), namespace, "web-app"), 60
        )
        b = _agent(repo.work, control_plane.kubeconfig, tmp_path, "b")
        time.sleep(5)  # b is up and waiting: it must not take the lease from a live leader
        assert _holder(cluster, namespace) == first
        os.killpg(a.pid, signal.SIGKILL)  # no chance to release the lease
        killed = time.monotonic()
        second = _wait(lambda: (h := _holder(cluster, namespace)) != first and h, 20)
        took = time.monotonic() - killed
        assert second, (tmp_path / "b.log").read_text()
        assert took < 15, f"standby took over after {took:.1f}s"
        # The new leader reconciles: a deleted object comes back.
        cluster.delete(cluster.resource("v1", "Service"), namespace, "api")
        assert _wait(
            lambda: cluster.get(cluster.resource("v1", "Service"), namespace, "api"), 10
        ), (tmp_path / "b.log").read_text()
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
