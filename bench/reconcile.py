"""Benchmark: the reconcile agent vs kubectl on an environment of 1,000 objects.

250 apps x (Deployment, Service, ConfigMap, SOPS-encrypted Secret) against a local
kube-apiserver + etcd. Measured in the same run:

  first sync        agent pass into an empty namespace  vs  kubectl apply --server-side
  no-op pass        agent pass with nothing to do       vs  kubectl diff --server-side
  drift revert      p50 / p99 over 50 injected replica changes (watch-driven self-heal)
  peak RSS          of this process (the agent runs in it) from the agent's build to the end
                    of its drift phase, read before any baseline's copies are made
  verification      the agent's trust chain: a cold walk of 1,000 commits (merges and
                    signatures checked) and one new approved merge (bench/verification_cost.py)

kubectl gets the same rendered, decrypted objects on stdin (never a plaintext file).
The floor, in the same table: a plain parallel server-side apply (8 threads, no render, no
decryption, no comparison) of the same rendered, decrypted objects into a third namespace.

The peer, in the same run (bench/peer.py): gitops-engine's example agent (Argo CD's engine,
v0.7.3) on the same objects in its own namespace: first sync, no-op sync, how long a manual
change stays (it has no self-heal: until its next periodic sync).

Run: python bench/reconcile.py [--apps 250 | --objects 10000] [--no-peer] [--scratch disk]
(API-only: no nodes). The agent's scratch (exported trees, chunk folders) is where it puts it
by default, in memory (/dev/shm), unless --scratch disk; the control plane's etcd and the
agent's Git cache stay on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyrage
import yaml

from promote import config
from promote.cluster import client
from promote.local import controlplane
from promote.reconcile import factory
from promote.reconcile import loop as loop_mod
from promote.secrets import sopsd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # sibling scripts in bench/, not a package
import verification_cost


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def app_manifests(name: str, i: int) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: registry.example.com/{name}:v1.0.{i}
        resources: {{requests: {{cpu: 0.1, memory: 64Mi}}}}
        envFrom: [{{configMapRef: {{name: {name}-config}}}}, {{secretRef: {{name: {name}-db}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-config}}
data: {{LOG_LEVEL: info, INDEX: "{i}"}}
"""


def make_repo(root: Path, apps: int, age_recipient: str) -> Path:
    work = root / "work"
    (work / "environments").mkdir(parents=True)
    (work / "keys" / "bench").mkdir(parents=True)
    (work / "keys" / "bench" / "age.txt").write_text(age_recipient + "\n")
    (work / "promote.yaml").write_text("mainBranch: main\n")
    (work / "environments" / "bench.yaml").write_text(
        "overlay: overlays/bench\ncluster:\n  namespace: bench\n"
        "sync:\n  interval: 1h\n  selfHeal: true\n  prune: true\n"
    )
    (work / ".sops.yaml").write_text(
        "creation_rules:\n- path_regex: overlays/bench/.*\\.sops\\.yaml$\n"
        f"  age: {age_recipient}\n  encrypted_regex: ^(data|stringData)$\n"
        "  mac_only_encrypted: true\n"
    )
    ov = work / "overlays" / "bench"
    base = work / "overlays" / "base"
    sops = Path(sys.executable).parent / "sops"

    # Per-app folders, as a user with thousands of objects lays them out: overlays/base/<app>/
    # holds the app's manifests, overlays/bench/<app>/ its base plus this environment's
    # Secret; the environment's kustomization lists the folders (kustomize/shards.py builds
    # such an overlay in chunks). No `namespace:`: the agent puts objects in its namespace.
    def one(i: int) -> str:
        name = f"app{i:03d}"
        (base / name).mkdir(parents=True)
        (base / name / "app.yaml").write_text(app_manifests(name, i))
        (base / name / "kustomization.yaml").write_text("resources:\n- app.yaml\n")
        (ov / name).mkdir(parents=True)
        (ov / name / "kustomization.yaml").write_text(
            f"resources:\n- ../../base/{name}\n- db.sops.yaml\n"
        )
        plain = (
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-db\ntype: Opaque\n"
            f"stringData:\n  password: bench-{os.urandom(8).hex()}\n"
        )
        out = subprocess.run(
            [
                str(sops),
                "encrypt",
                "--filename-override",
                f"overlays/bench/{name}/db.sops.yaml",
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
                "/dev/stdin",
            ],
            input=plain.encode(),
            capture_output=True,
            cwd=work,
            check=True,
        ).stdout
        (ov / name / "db.sops.yaml").write_bytes(out)
        return name

    with ThreadPoolExecutor(4) as pool:
        names = list(pool.map(one, range(apps)))
    (ov / "kustomization.yaml").write_text("resources:\n" + "".join(f"- {n}\n" for n in names))
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "bench")
    return work


def note(what: str, seconds: float) -> None:
    """Each measurement on stderr as soon as it is made: a 10,000-object run takes the better
    part of an hour on a loaded machine, and one stopped before its table still says this."""
    print(f"  {what}: {seconds:.2f} s", file=sys.stderr, flush=True)


def kubectl(kubeconfig: Path, *args: str, stdin: bytes) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"kubectl {args[0]} failed: {proc.stderr.decode()[-500:]}")
    return time.perf_counter() - started


def ssa_floor(cluster: client.Cluster, desired: list[dict[str, object]]) -> float:
    """The physical floor: the objects kubectl got, server-side applied by 8 threads into the
    namespace ``bench-floor``; nothing rendered, decrypted or compared."""
    objs = json.loads(json.dumps(desired))
    for o in objs:
        o["metadata"]["namespace"] = "bench-floor"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-floor"}})
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda o: cluster.apply(o, force=True), objs))
    return time.perf_counter() - t


def agent_scratch(where: str, tmp: Path) -> None:
    """Where the agent exports trees and writes kustomize's chunk folders. ``tmpfs`` is its
    default (``archive.scratch_dir``: /dev/shm unless $TMPDIR names a place; the shipped
    Deployment sets TMPDIR to a memory-backed /tmp); ``disk`` sets TMPDIR to ``tmp``, beside
    the repository and the agent's Git cache. On this machine's ext4 disk, writing a
    1,000-object tree takes 0.3-0.8 s (about 25 ms in memory)."""
    if where == "disk":
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None  # read $TMPDIR again
    print(f"the agent's scratch: {where}", file=sys.stderr)


def reset_peak_rss() -> None:
    """Set this process's peak resident set size (VmHWM) to its current size: writing 5 to
    /proc/self/clear_refs (Linux >= 4.0, proc(5)). getrusage's ru_maxrss cannot be reset."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (VmHWM of /proc/self/status, in kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drift_latency(cluster: client.Cluster, app: int) -> float:
    """Seconds from a replica change of Deployment ``app{app:03d}`` in namespace ``bench`` to
    its revert by the agent's watch (SystemExit after 10 s)."""
    path = f"/apis/apps/v1/namespaces/bench/deployments/app{app:03d}"
    return peer.revert_seconds(cluster, path, limit_s=10, poll_s=0.005, what="promote")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=250)
    parser.add_argument("--objects", type=int, help="total objects (4 per app); sets --apps")
    parser.add_argument("--drifts", type=int, default=50)
    parser.add_argument("--verify-commits", type=int, default=1000)
    parser.add_argument("--verify-only", action="store_true", help="only the verification cost")
    parser.add_argument(
        "--scratch",
        choices=("tmpfs", "disk"),
        default="tmpfs",
        help="the agent's scratch: tmpfs (its default: /dev/shm, or a memory-backed TMPDIR "
        "as the shipped Deployment sets) or disk (TMPDIR beside the repository)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip gitops-engine's agent")
    parser.add_argument(
        "--peer-resync",
        type=int,
        default=60,
        help="its --resync-seconds; above its sync time (600 at 10,000 objects)",
    )
    args = parser.parse_args()
    if args.objects:
        args.apps = max(1, args.objects // 4)
    # The trust chain's cost (issue 13): no cluster needed, reported first.
    verification_cost.report(verification_cost.measure(args.verify_commits))
    if args.verify_only:
        return
    # Before PROMOTE_CACHE points into the run's scratch folder (the tools' cache is not).
    peer_agent = None if args.no_peer else peer.binary()
    # The persistent sops decryptor (tools/ensure-sopsd), found in the tools' cache now;
    # PROMOTE_SOPSD=off measures one sops process per Secret instead.
    decryptor = sopsd.find_sopsd()
    os.environ["PROMOTE_SOPSD"] = str(decryptor) if decryptor else "off"
    print(f"decrypting with {decryptor or 'one sops process per Secret'}", file=sys.stderr)
    ident = pyrage.x25519.Identity.generate()
    with (
        tempfile.TemporaryDirectory(prefix="promote-bench-") as tmp_s,
        controlplane.LocalCluster() as info,
    ):
        tmp = Path(tmp_s)
        os.environ["SOPS_AGE_KEY"] = str(ident)  # key material in memory/env only
        os.environ["PROMOTE_CACHE"] = str(tmp / "cache")
        print(f"building an environment of {args.apps * 4} objects...", file=sys.stderr)
        work = make_repo(tmp, args.apps, str(ident.to_public()))
        os.sync()  # the fixture's writes flushed: its writeback is not the agent's to pay
        agent_scratch(args.scratch, tmp)
        reset_peak_rss()  # the repository built above and the verification walk are not the agent
        project = config.load_project(work)
        cluster = client.Cluster(client.connect(kubeconfig=str(info.kubeconfig)))
        agent = factory.build_agent(project, "bench", factory.Overrides(), cluster=cluster)

        # agent: first sync
        t = time.perf_counter()
        report = agent.run_pass()
        first_sync = time.perf_counter() - t
        if report.error:
            raise SystemExit(f"agent pass failed: {report.error}")
        note("promote first sync", first_sync)
        # no-op pass
        noop = []
        for _ in range(3):
            t = time.perf_counter()
            r = agent.run_pass()
            noop.append(time.perf_counter() - t)
            note("promote no-op pass", noop[-1])
            assert not r.applied, r.applied
        noop_s = statistics.median(noop)

        # drift revert latency (watch-driven)
        lp = loop_mod.AgentLoop(
            agent, loop_mod.LoopSettings(interval_s=3600, poll_s=30, leader_election=False)
        )
        agent.healing_enabled = True
        threading.Thread(target=lp.run, daemon=True).start()
        time.sleep(1)
        latencies = []
        for i in range(args.drifts):
            latencies.append(drift_latency(cluster, i % args.apps))
        lp.stop()
        agent.cache.stop()  # before the control plane goes away
        time.sleep(0.5)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        rss_mb = peak_rss_mb()  # the agent's phases only: before any baseline's copies
        # The cold decryption inside that pass, measured alone: a new resolver (empty cache)
        # over the same rendered, still encrypted objects.
        assert report.revision is not None
        entry = agent.desired_state.renders.find(agent.source.blobs(report.revision))
        assert entry is not None, "the first sync's render is cached"
        encrypted = entry.objects
        resolver = factory.resolver_at_revision(project, project.env("bench"))
        t = time.perf_counter()
        resolver.resolve(encrypted, env="bench")
        sops_s = time.perf_counter() - t
        getattr(resolver, "close", lambda: None)()  # its sops decryptor
        note("sops decryption alone", sops_s)
        # rendered + decrypted objects for kubectl, in another namespace, over stdin
        desired = [dict(o) for o in agent._desired.values()]
        for o in desired:
            o["metadata"] = {k: v for k, v in o["metadata"].items() if k in ("name", "labels")}
            o["metadata"]["namespace"] = "bench-kubectl"
        cluster.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-kubectl"}}
        )
        # plain str (decrypted values are a redacting str subclass), YAML for kubectl
        stdin = yaml.safe_dump_all(json.loads(json.dumps(desired))).encode()
        k_apply = kubectl(info.kubeconfig, "apply", "--server-side", "-f", "-", stdin=stdin)
        note("kubectl apply --server-side", k_apply)
        floor_s = ssa_floor(cluster, desired)
        note("the floor (parallel SSA)", floor_s)
        k_diff = kubectl(info.kubeconfig, "diff", "--server-side", "-f", "-", stdin=stdin)
        note("kubectl diff --server-side", k_diff)
        argo = None
        if peer_agent is not None:
            print("gitops-engine's agent on the same objects...", file=sys.stderr)
            argo = peer.measure(
                info.kubeconfig, cluster, desired, agent=peer_agent, resync_s=args.peer_resync
            )

    rows = [
        (
            f"first sync ({args.apps * 4:,} objects)",
            f"{first_sync:.2f} s",
            f"kubectl apply --server-side {k_apply:.2f} s",
            f"{first_sync / k_apply:.2f}x (target <= 0.5x)",
        ),
        (
            "  vs the floor: parallel SSA (8 threads)",
            f"{first_sync:.2f} s",
            f"no render/decrypt/compare {floor_s:.2f} s; sops decrypt {sops_s:.2f} s",
            f"{first_sync / (2 * floor_s + sops_s):.2f} of 2 x floor + sops (target <= 1)",
        ),
        (
            "no-op pass",
            f"{noop_s:.2f} s",
            f"kubectl diff --server-side {k_diff:.2f} s",
            f"{k_diff / noop_s:.1f}x faster (target < 2 s)",
        ),
        ("drift revert p50", f"{p50 * 1000:.0f} ms", "-", "target < 1000 ms"),
        ("drift revert p99", f"{p99 * 1000:.0f} ms", "-", "target < 2000 ms"),
        ("agent peak RSS (its phases, this process)", f"{rss_mb:.0f} MB", "-", "target < 400 MB"),
    ]
    if argo is not None:
        rows += [
            (
                "peer: first sync",
                f"{first_sync:.2f} s",
                f"gitops-engine agent {argo['first_sync']:.2f} s (start, cache, dry run, apply)",
                f"promote/peer {first_sync / argo['first_sync']:.2f}",
            ),
            (
                "peer: first sync without decryption",
                f"{first_sync - sops_s:.2f} s",
                "the peer is given decrypted objects; promote decrypts in its pass",
                f"promote/peer {(first_sync - sops_s) / argo['first_sync']:.2f}",
            ),
            (
                "peer: no-op pass",
                f"{noop_s:.2f} s",
                f"gitops-engine agent {argo['noop']:.2f} s (median of 3)",
                f"promote/peer {noop_s / argo['noop']:.3f}",
            ),
            (
                "peer: a manual change stays",
                f"{p50:.2f} s (p50)",
                f"gitops-engine agent {argo['drift_stays']:.1f} s "
                f"(no self-heal: next resync, every {args.peer_resync} s)",
                f"promote/peer {p50 / argo['drift_stays']:.4f}",
            ),
            ("peer: peak RSS", f"{rss_mb:.0f} MB", f"gitops-agent {argo['rss_mb']:.0f} MB", "-"),
        ]
    load = os.getloadavg()
    rows.append(("load average (1/5/15 min)", " / ".join(f"{x:.1f}" for x in load), "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(
        "\nbench/reconcile.py: promote agent vs kubectl, "
        f"{args.apps * 4} objects, {args.drifts} drifts, the agent's scratch on {args.scratch}"
    )
    for row in [("measure", "promote", "baseline", "ratio"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
