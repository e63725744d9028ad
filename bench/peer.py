"""The peer in bench/reconcile.py: Argo CD's engine, gitops-engine's example agent (v0.7.3).

``gitops-agent`` (built by tools/ensure-gitops-engine) syncs a directory of manifests in a Git
work tree into a cluster with Argo CD's cluster cache, diff and sync; a sync starts at its
start, every ``--resync-seconds`` and on ``POST /api/v1/sync``, and ends with a table of the
resources on stdout, which is how this module times it. It has no self-heal: a manual change
stays until the next periodic sync.

It gets the same rendered, decrypted objects as kubectl and the floor, in its own namespace.
It can only read files, so they are written into a Git work tree under /dev/shm (memory, not
disk), removed when it stops; the Secret values are the benchmark's own random strings.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ENSURE = Path(__file__).resolve().parent.parent / "tools" / "ensure-gitops-engine"


def binary() -> Path:
    out = subprocess.run([str(ENSURE)], capture_output=True, text=True, check=True).stdout
    return Path(out.strip()) / "gitops-agent"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """One gitops-agent process over ``objects`` in ``namespace``."""

    def __init__(
        self,
        kubeconfig: Path,
        objects: list[dict[str, Any]],
        namespace: str,
        *,
        resync_s: int,
        agent: Path,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="promote-peer-", dir="/dev/shm")
        self.repo = Path(self._tmp.name)
        docs = json.loads(json.dumps(objects))  # plain str (decrypted values are a subclass)
        for o in docs:
            o["metadata"]["namespace"] = namespace
        (self.repo / "manifests.yaml").write_text(yaml.safe_dump_all(docs))
        for args in (("init", "-q"), ("add", "-A"), ("commit", "-qm", "bench")):
            subprocess.run(
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
                cwd=self.repo,
                check=True,
                capture_output=True,
            )
        self.port = _free_port()
        self._argv = [
            str(agent),
            str(self.repo),
            "--kubeconfig",
            str(kubeconfig),
            "--namespaced",
            "--default-namespace",
            namespace,
            "--port",
            str(self.port),
            "--resync-seconds",
            str(resync_s),
        ]
        self._syncs: list[float] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None

    def start(self, *, timeout_s: float = 1800) -> float:
        """Start the agent; seconds until its first sync ended (start and cache included)."""
        started = time.perf_counter()
        # Its log (klog, stderr) lists every task; nothing of it is needed here.
        self._proc = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self._wait_sync(0, timeout_s) - started

    def sync_now(self, *, timeout_s: float = 1800) -> float:
        """Ask for a sync over its API; seconds from its start until it ended. The API answers
        once the loop took the request, that is when the sync starts: a sync its timer started
        before (at 10,000 objects one can take longer than the period) has ended by then."""
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/sync", timeout=timeout_s)
        started = time.perf_counter()
        with self._cond:
            seen = len(self._syncs)
        return self._wait_sync(seen, timeout_s) - started

    def syncs(self) -> int:
        return len(self._syncs)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        self._tmp.cleanup()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith("RESOURCE"):  # the header of the table printed after a sync
                with self._cond:
                    self._syncs.append(time.perf_counter())
                    self._cond.notify_all()

    def _wait_sync(self, seen: int, timeout_s: float) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._syncs) > seen, timeout=timeout_s):
                raise SystemExit(f"gitops-agent: no sync ended within {timeout_s:.0f} s")
            return self._syncs[seen]


def _note(what: str, seconds: float) -> None:
    print(f"  {what}: {seconds:.2f} s", file=sys.stderr, flush=True)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def revert_seconds(cluster: Any, path: str, *, limit_s: float, poll_s: float, what: str) -> float:
    """Seconds from setting the replicas of the Deployment at API ``path`` to 4 until they are
    1 again (reverted by an agent), looked at every ``poll_s``; SystemExit after ``limit_s``."""
    started = time.perf_counter()
    cluster.request(
        "PATCH",
        path,
        body={"spec": {"replicas": 4}},
        content_type="application/merge-patch+json",
    )
    while cluster.request("GET", path)["spec"]["replicas"] != 1:
        if time.perf_counter() - started > limit_s:
            raise SystemExit(f"{what}: drift on {path} not reverted within {limit_s:.0f} s")
        time.sleep(poll_s)
    return time.perf_counter() - started


def measure(
    kubeconfig: Path,
    cluster: Any,
    objects: list[dict[str, Any]],
    *,
    agent: Path,
    namespace: str = "bench-peer",
    resync_s: int = 60,
    noops: int = 3,
) -> dict[str, float]:
    """First sync, no-op sync (median), how long one manual change stays, peak RSS."""
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    peer = Peer(kubeconfig, objects, namespace, resync_s=resync_s, agent=agent)
    try:
        first = peer.start()
        _note("gitops-agent first sync", first)
        noops_s = []
        for _ in range(noops):
            noops_s.append(peer.sync_now())
            _note("gitops-agent no-op sync", noops_s[-1])
        noop = sorted(noops_s)[noops // 2]
        name = next(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        stays = revert_seconds(
            cluster, path, limit_s=2 * resync_s + 600, poll_s=0.1, what="gitops-agent"
        )
        _note("gitops-agent: a manual change stayed", stays)
        assert peer._proc is not None
        rss = _peak_rss_mb(peer._proc.pid)
    finally:
        peer.stop()
    return {"first_sync": first, "noop": noop, "drift_stays": stays, "rss_mb": rss}
