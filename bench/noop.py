"""Benchmark: the agent's no-op pass at N objects, profiled, or two code trees side by side.

The environment of ``bench/reconcile.py`` (N/4 apps of Deployment, Service, ConfigMap, SOPS
Secret) on the API-only local control plane; a first sync, then no-op passes.

  python bench/noop.py --objects 10000 --passes 5 [--profile out.pstats]
      passes in this process (``promote`` from PYTHONPATH); cProfile of the passes after the
      first no-op pass (which confirms one object per app with a dry run once)
  python bench/noop.py --objects 10000 --compare /work/main /work/wt-x --passes 9
      two child processes, each with its own control plane, one per code tree (PYTHONPATH);
      their no-op passes interleaved (a, b, a, b, ...) so both see the same machine load

Each child ends with its drift revert p50 / p99 and its peak RSS.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyrage

from promote import config
from promote.cluster import client
from promote.local import controlplane
from promote.reconcile import agent as agent_mod
from promote.reconcile import factory
from promote.reconcile import loop as loop_mod

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reconcile  # sibling script in bench/, not a package


def drift_latencies(
    agent: agent_mod.Agent, cluster: client.Cluster, apps: int, n: int
) -> list[float]:
    """Seconds from a replica change to its revert by the watch, ``n`` times, sorted."""
    lp = loop_mod.AgentLoop(
        agent, loop_mod.LoopSettings(interval_s=3600, poll_s=3600, leader_election=False)
    )
    agent.healing_enabled = True
    threading.Thread(target=lp.run, daemon=True).start()
    time.sleep(1)
    out = []
    for i in range(n):
        path = f"/apis/apps/v1/namespaces/bench/deployments/app{(i * 37) % apps:03d}"
        t = time.perf_counter()
        cluster.request(
            "PATCH",
            path,
            body={"spec": {"replicas": 4}},
            content_type="application/merge-patch+json",
        )
        while cluster.request("GET", path)["spec"]["replicas"] != 1:
            if time.perf_counter() - t > 10:
                raise SystemExit(f"drift on {path} not reverted within 10 s")
            time.sleep(0.005)
        out.append(time.perf_counter() - t)
    lp.stop()
    return sorted(out)


def serve(args: argparse.Namespace) -> None:
    """Set up, first sync, then one no-op pass per ``pass`` line on stdin (its seconds on
    stdout); ``drift`` measures drift revert and peak RSS and ends."""
    ident = pyrage.x25519.Identity.generate()
    with (
        tempfile.TemporaryDirectory(prefix="promote-noop-") as tmp_s,
        controlplane.LocalCluster() as info,
    ):
        tmp = Path(tmp_s)
        os.environ["SOPS_AGE_KEY"] = str(ident)
        os.environ["PROMOTE_CACHE"] = str(tmp / "cache")
        work = reconcile.make_repo(tmp, args.apps, str(ident.to_public()))
        project = config.load_project(work)
        cluster = client.Cluster(client.connect(kubeconfig=str(info.kubeconfig)))
        agent = factory.build_agent(project, "bench", factory.Overrides(), cluster=cluster)
        t = time.perf_counter()
        report = agent.run_pass()
        if report.error:
            raise SystemExit(f"first sync failed: {report.error}")
        print(f"first {time.perf_counter() - t:.3f}", flush=True)
        prof = cProfile.Profile() if args.profile else None
        for line in sys.stdin:
            if line.strip() == "pass":
                if prof is not None:
                    prof.enable()
                t = time.perf_counter()
                r = agent.run_pass()
                took = time.perf_counter() - t
                if prof is not None:
                    prof.disable()
                if r.error or r.applied:
                    raise SystemExit(f"not a no-op pass: {r.error} {r.applied[:3]}")
                print(f"pass {took:.3f}", flush=True)
            elif line.strip() == "drift":
                lat = drift_latencies(agent, cluster, args.apps, args.drifts)
                p50 = lat[len(lat) // 2]
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"drift {p50:.3f} {p99:.3f} {rss:.0f}", flush=True)
                break
        agent.cache.stop()
        if prof is not None:
            prof.dump_stats(args.profile)


def child(tree: str, args: argparse.Namespace, profile: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=tree)
    argv = [sys.executable, __file__, "--serve", "--apps", str(args.apps)]
    argv += ["--drifts", str(args.drifts)] + (["--profile", profile] if profile else [])
    return subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(proc: subprocess.Popen[str], command: str | None) -> list[str]:
    assert proc.stdin is not None and proc.stdout is not None
    if command:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a child ended early (exit {proc.wait()})")
    return line.split()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=250)
    parser.add_argument("--objects", type=int, help="total objects (4 per app); sets --apps")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--drifts", type=int, default=50)
    parser.add_argument("--profile", help="cProfile the no-op passes into this file")
    parser.add_argument("--compare", nargs="+", metavar="TREE", help="code trees (PYTHONPATH)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.objects:
        args.apps = max(1, args.objects // 4)
    if args.serve:
        serve(args)
        return
    trees = args.compare or [os.environ.get("PYTHONPATH", "")]
    procs = [child(t, args, args.profile if len(trees) == 1 else None) for t in trees]
    first = [float(ask(p, None)[1]) for p in procs]
    ask_all = [[float(ask(p, "pass")[1])] for p in procs]  # the first no-op pass (dry runs)
    times: list[list[float]] = [[] for _ in procs]
    for _ in range(args.passes):
        for i, p in enumerate(procs):
            times[i].append(float(ask(p, "pass")[1]))
    drift = [ask(p, "drift") for p in procs]
    for p in procs:
        p.wait()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nbench/noop.py: {args.apps * 4} objects, load average {load}")
    for i, tree in enumerate(trees):
        t = sorted(times[i])
        print(
            f"{tree}: first sync {first[i]:.1f} s; first no-op {ask_all[i][0]:.2f} s; "
            f"no-op median {statistics.median(t):.3f} s, min {t[0]:.3f}, max {t[-1]:.3f} "
            f"({len(t)} passes: {' '.join(f'{x:.2f}' for x in times[i])}); "
            f"drift p50 {float(drift[i][1]) * 1000:.0f} ms, "
            f"p99 {float(drift[i][2]) * 1000:.0f} ms; "
            f"peak RSS {drift[i][3]} MB"
        )


if __name__ == "__main__":
    main()
