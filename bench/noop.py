"""Benchmark: the agent's no-op pass at N objects, profiled, or two code trees side by side.

The environment of ``bench/reconcile.py`` (N/4 apps of Deployment, Service, ConfigMap, SOPS
Secret) on the API-only local control plane; a first sync, then no-op passes.

  python bench/noop.py --objects 10000 --passes 5 [--profile out.pstats]
      passes in this process (``promote`` from PYTHONPATH); cProfile of the passes after the
      first no-op pass (which confirms one object per app with a dry run once)
  python bench/noop.py --objects 10000 --compare /work/main /work/wt-x --passes 9
      two child processes, each with its own control plane, one per code tree (PYTHONPATH);
      their no-op passes interleaved (a, b, a, b, ...) so both see the same machine load

Then drift revert (one replica change at a time, the trees taking turns) and peak RSS.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
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


def start_healing(agent: agent_mod.Agent) -> loop_mod.AgentLoop:
    """The agent's loop, for its watch-driven self-heal (no periodic pass in the run)."""
    lp = loop_mod.AgentLoop(
        agent, loop_mod.LoopSettings(interval_s=3600, poll_s=3600, leader_election=False)
    )
    agent.healing_enabled = True
    threading.Thread(target=lp.run, daemon=True).start()
    time.sleep(1)
    return lp


def serve(args: argparse.Namespace) -> None:
    """Set up, first sync, then one no-op pass per ``pass`` line on stdin (its seconds on
    stdout); ``drift N`` changes one Deployment and prints how long its revert took; ``end``
    prints the peak RSS and ends."""
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
        gc_s = [0.0, 0.0]  # the collector's pauses: total, and when the current one began

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_s[1] = time.perf_counter()
            else:
                gc_s[0] += time.perf_counter() - gc_s[1]

        gc.callbacks.append(on_gc)
        lp: loop_mod.AgentLoop | None = None
        for line in sys.stdin:
            if line.strip() == "pass":
                if prof is not None:
                    prof.enable()
                gc_s[0] = 0.0
                t = time.perf_counter()
                r = agent.run_pass()
                took = time.perf_counter() - t
                if prof is not None:
                    prof.disable()
                if r.error or r.applied:
                    raise SystemExit(f"not a no-op pass: {r.error} {r.applied[:3]}")
                print(f"pass {took:.3f} {gc_s[0]:.3f}", flush=True)
            elif line.startswith("drift"):  # drift N: the N-th change
                if lp is None:
                    lp = start_healing(agent)
                app = (int(line.split()[1]) * 37) % args.apps
                print(f"drift {reconcile.drift_latency(cluster, app):.4f}", flush=True)
            elif line.strip() == "end":
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"rss {rss:.0f}", flush=True)
                break
        if lp is not None:
            lp.stop()
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


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


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
    gcs: list[list[float]] = [[] for _ in procs]
    for _ in range(args.passes):
        for i, p in enumerate(procs):
            answer = ask(p, "pass")
            times[i].append(float(answer[1]))
            gcs[i].append(float(answer[2]))
    drifts: list[list[float]] = [[] for _ in procs]
    for n in range(args.drifts):  # taking turns, as the passes did
        for i, p in enumerate(procs):
            drifts[i].append(float(ask(p, f"drift {n}")[1]))
    rss = [ask(p, "end")[1] for p in procs]
    for p in procs:
        p.wait()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nbench/noop.py: {args.apps * 4} objects, load average {load}")
    for i, tree in enumerate(trees):
        t = sorted(times[i])
        print(
            f"{tree}: first sync {first[i]:.1f} s; first no-op {ask_all[i][0]:.2f} s; "
            f"no-op median {statistics.median(t):.3f} s, min {t[0]:.3f}, max {t[-1]:.3f} "
            f"({len(t)} passes: {' '.join(f'{x:.2f}' for x in times[i])}; of which the "
            f"garbage collector {statistics.median(gcs[i]):.3f} s, median); "
            f"drift revert p50 {p50(drifts[i]) * 1000:.0f} ms, p99 {p99(drifts[i]) * 1000:.0f} ms "
            f"({len(drifts[i])} changes); peak RSS {rss[i]} MB"
        )


if __name__ == "__main__":
    main()
