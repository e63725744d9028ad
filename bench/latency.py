"""Benchmark: merge-to-live, with push notifications vs polling.

An environment of 1,000 objects (bench/reconcile.py's 250 apps x Deployment, Service,
ConfigMap, SOPS Secret) in a bare remote on disk, deployed by an agent loop (in this process)
against a local kube-apiserver + etcd (no nodes). Each "merge" changes one app's ConfigMap and
lands on main; its latency runs from just before the push to main to the moment the agent's
status ConfigMap reports that revision Synced (read every 10 ms). Three modes:

  pr-notified     a PR: the change is pushed to a branch first (the hook notifies the agent,
                  which renders the branch's head ahead), reviewed (the benchmark waits until
                  that render is done, then the random wait below), then merged by a
                  fast-forward push to main, which notifies the agent
  push-notified   a commit pushed straight to main, never seen before; the bare remote's
                  post-receive hook (``promote hooks install``) POSTs a signed notification to
                  the agent's /hooks/git
  polled          the same without the hook: the agent finds the revision at its next poll

One agent loop polls every ``--poll`` seconds (default 5 s, the agent's default) in every
mode; merges rotate through the modes (the hook installed, then removed), so all see the same
machine load, and each merge waits a random 0..poll s first, landing at a random point of the
poll cycle.

Run: python bench/latency.py [--apps 250] [--merges 20] [--poll 5]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyrage

from promote import config
from promote.cluster import client
from promote.git import hooks
from promote.local import controlplane
from promote.reconcile import factory, webhook
from promote.reconcile import loop as loop_mod
from promote.reconcile import status as status_mod

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reconcile  # a sibling script in bench/: its repository builder

AHEAD, NOTIFIED, POLLED = "pr-notified", "push-notified", "polled"
MODES = (AHEAD, NOTIFIED, POLLED)
LABELS = {
    AHEAD: "PR merged, notified (head rendered ahead)",
    NOTIFIED: "direct push to main, notified",
    POLLED: "direct push, polling every {poll:g} s (baseline)",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commit(work: Path, app: int, n: int) -> str:
    """One change to app ``app``'s ConfigMap, committed on top of main; its SHA."""
    f = work / "overlays" / "base" / f"app{app:03d}" / "app.yaml"  # bench/reconcile.py's layout
    text = f.read_text()
    head, _, tail = text.partition("data: {LOG_LEVEL: ")
    _level, _, rest = tail.partition(",")
    f.write_text(f"{head}data: {{LOG_LEVEL: merge{n},{rest}")
    git(work, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-am", f"merge {n}")
    return git(work, "rev-parse", "HEAD")


def merge(work: Path, app: int, n: int) -> str:
    """A direct push to main of one change; its SHA."""
    rev = commit(work, app, n)
    git(work, "push", "-q", "origin", "HEAD:main")
    return rev


def wait_synced(cluster: client.Cluster, rev: str, started: float, timeout: float = 60) -> float:
    while True:
        st = status_mod.read(cluster, env="bench", namespace="bench")
        if st is not None and st.revision == rev and st.sync == "Synced":
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{rev[:12]} not Synced within {timeout} s")
        time.sleep(0.01)


def run(
    work: Path, remote: Path, cluster: client.Cluster, *, poll_s: float, merges: int, apps: int
) -> dict[str, list[float]]:
    """One agent loop polling every ``poll_s``; merges rotate through the modes (the hook
    installed, or removed) so all see the same machine load. Returns each mode's latencies."""
    project = config.load_project(work)
    agent = factory.build_agent(
        project, "bench", factory.Overrides(repo_url=str(remote)), cluster=cluster
    )
    listen = f"127.0.0.1:{free_port()}"
    lp = loop_mod.AgentLoop(
        agent,
        loop_mod.LoopSettings(interval_s=3600, poll_s=poll_s, leader_election=False, listen=listen),
    )
    runner = threading.Thread(target=lp.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 600
    while lp.passes < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    if lp.last_report is None or lp.last_report.error:
        raise SystemExit(f"first pass failed: {lp.last_report and lp.last_report.error}")
    secret = os.environ[webhook.SECRET_ENV].encode()
    hook = remote / "hooks" / "post-receive"
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for n in range(len(MODES) * merges):
        mode = MODES[n % len(MODES)]
        if mode != POLLED:
            hooks.install_post_receive(
                remote, urls=[f"http://{listen}{webhook.PATH}"], secret=secret
            )
        elif hook.exists():
            hook.unlink()
        if mode == AHEAD:  # a PR: its branch pushed first, reviewed, then merged
            rev = commit(work, n % apps, n)
            wanted = lp.rendered_ahead + 1
            git(work, "push", "-q", "origin", f"HEAD:refs/heads/pr/{n}")
            wait_until(lambda: lp.rendered_ahead >= wanted, 120)  # noqa: B023 (called here)
        time.sleep(random.uniform(0, poll_s))  # a random point of the poll cycle
        t = time.perf_counter()
        if mode == AHEAD:
            git(work, "push", "-q", "origin", "HEAD:main")  # the merge: a fast-forward
        else:
            rev = merge(work, n % apps, n)
        times[mode].append(wait_synced(cluster, rev, t))
        print(f"merge {n + 1}/{len(MODES) * merges} ({mode}): {times[mode][-1]:.2f} s, "
              f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)  # fmt: skip
    lp.stop()
    runner.join(30)  # its caches stop before the control plane does
    return times


def wait_until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"not rendered ahead within {timeout} s")
        time.sleep(0.01)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=250)
    parser.add_argument("--merges", type=int, default=20)
    parser.add_argument("--poll", type=float, default=5.0, help="poll period without notifications")
    args = parser.parse_args()
    ident = pyrage.x25519.Identity.generate()
    with (
        tempfile.TemporaryDirectory(prefix="promote-latency-") as tmp_s,
        controlplane.LocalCluster() as info,
    ):
        tmp = Path(tmp_s)
        os.environ["SOPS_AGE_KEY"] = str(ident)
        os.environ["PROMOTE_AGENT_CACHE"] = str(tmp / "agent-cache")  # kustomize stays cached
        os.environ[webhook.SECRET_ENV] = os.urandom(16).hex()
        print(f"building an environment of {args.apps * 4} objects...", file=sys.stderr)
        work = reconcile.make_repo(tmp, args.apps, str(ident.to_public()))
        remote = tmp / "remote.git"
        git(tmp, "clone", "-q", "--bare", str(work), str(remote))
        git(work, "remote", "add", "origin", str(remote))
        cluster = client.Cluster(client.connect(kubeconfig=str(info.kubeconfig)))
        times = run(work, remote, cluster, poll_s=args.poll, merges=args.merges, apps=args.apps)
        load = os.getloadavg()

    rows = [("mode", "p50", "p99", "mean", "max", "target")]
    for mode, target in (
        (AHEAD, "p50 < 1 s"),
        (NOTIFIED, "p50 < 1 s"),
        (POLLED, f"p50 < {args.poll + 1:g} s"),
    ):
        values = times[mode]
        rows.append(
            (
                LABELS[mode].format(poll=args.poll),
                f"{statistics.median(values):.2f} s",
                f"{pct(values, 0.99):.2f} s",
                f"{statistics.mean(values):.2f} s",
                f"{max(values):.2f} s",
                target,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"\nbench/latency.py: merge -> applied and Synced, {args.apps * 4:,} objects, "
        f"{args.merges} merges per mode, {os.cpu_count()} CPUs, load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)"
    )
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
