"""Benchmark: a new image for 100 apps from dev to prod through the gated environments.

The tests' 100-app layout (``many_apps``: a Deployment and a Service each; staging needs 1
approval, prod 2, from rm1..rm3) in a bare remote on disk; three agents (dev; staging and
prod verifying, trust pinned at the first commit) run as loops in this process against one
local kube-apiserver + etcd (no nodes: no Pods, so health stays Progressing; we wait for
Synced). Notifications: the remote's post-receive hook (``promote hooks install``) wakes the
agents; they also poll every 5 s.

Steps, each timed on the machine (humans instant: each command starts when the previous
step ended): ``promote set-image dev`` (all 100 apps, a new tag) → dev Synced → ``promote to
staging`` → ``promote approve`` (rm1) → ``promote merge`` → staging Synced → ``promote to
prod`` → two approvals (rm1, rm2) → ``promote merge`` → prod Synced. The commands run as a
user runs them (new processes, signed with GnuPG). No soak gate, no verification duration
and no window are configured (all zero / open).

Run: python bench/pipeline.py [--apps 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from promote import config
from promote.cluster import client
from promote.git import hooks
from promote.local import controlplane
from promote.reconcile import factory, webhook
from promote.reconcile import loop as loop_mod
from promote.reconcile import status as status_mod

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/
from tests.integration.test_promotion_helpers import many_apps

TARGET_S = 20.0


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}"
            f"{proc.stdout[-2000:]}"
        )
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pipeline:
    def __init__(self, root: Path, apps: int) -> None:
        self.root = root
        self.apps = apps
        gnupg = root / "gnupg"
        gnupg.mkdir(mode=0o700)
        base = ["gpg", "--homedir", str(gnupg), "--batch"]
        work = root / "work"
        many_apps(work, apps, staging_required=1, prod_required=2)
        (work / "keys/developers").mkdir(parents=True, exist_ok=True)
        for name, folder in (("rm1", "release-managers"), ("rm2", "release-managers"),
                             ("ci", "developers")):  # fmt: skip
            sh(*base, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
               f"{name} <{name}@example.com>", "ed25519", "sign", "never", cwd=root)  # fmt: skip
            key = sh(*base, "--armor", "--export", f"{name}@example.com", cwd=root)
            (work / f"keys/{folder}/{name}.asc").write_text(key + "\n")
        self.remote = root / "remote.git"
        sh("git", "init", "-q", "--bare", "-b", "main", str(self.remote), cwd=root)
        sh("git", "init", "-q", "-b", "main", cwd=work)
        sh("git", "add", "-A", cwd=work)
        sh("git", "-c", "user.name=ci", "-c", "user.email=ci@x", "commit", "-qm", "init", cwd=work)
        sh("git", "push", "-q", str(self.remote), "main", cwd=work)
        self.pin = sh("git", "rev-parse", "HEAD", cwd=work)
        self.clone = root / "clone"
        sh("git", "clone", "-q", str(self.remote), str(self.clone), cwd=root)
        sh("git", "config", "user.name", "ci", cwd=self.clone)
        sh("git", "config", "user.email", "ci@example.com", cwd=self.clone)
        self.env = {**os.environ, "GNUPGHOME": str(gnupg), "PROMOTE_USER": "ci"}
        self.loops: list[tuple[loop_mod.AgentLoop, threading.Thread]] = []

    def cli(self, *args: str, user: str = "ci") -> dict[str, object]:
        argv = [sys.executable, "-m", "promote", *args, "-C", str(self.clone), "-o", "json"]
        out = sh(*argv, cwd=self.clone, env={**self.env, "PROMOTE_USER": user})
        return dict(json.loads(out)) if out else {}

    def head(self) -> str:
        return sh("git", "rev-parse", "main", cwd=self.remote)

    def start_agents(self, cluster: client.Cluster) -> None:
        project = config.load_project(self.clone)
        urls = []
        for env in ("dev", "staging", "prod"):
            # One Git cache each, as agents in separate processes or pods have (three in one
            # process would share one folder and race on it).
            os.environ["PROMOTE_AGENT_CACHE"] = str(self.root / f"agent-cache-{env}")
            ov = factory.Overrides(repo_url=str(self.remote))
            if env != "dev":
                ov = factory.Overrides(repo_url=str(self.remote), trust_from=self.pin)
            agent = factory.build_agent(project, env, ov, cluster=cluster)
            listen = f"127.0.0.1:{free_port()}"
            urls.append(f"http://{listen}{webhook.PATH}")
            lp = loop_mod.AgentLoop(
                agent,
                loop_mod.LoopSettings(interval_s=3600, leader_election=False, listen=listen),
            )
            t = threading.Thread(target=lp.run, daemon=True)
            t.start()
            self.loops.append((lp, t))
        secret = os.environ[webhook.SECRET_ENV].encode()
        hooks.install_post_receive(self.remote, urls=urls, secret=secret)
        for env in ("dev", "staging", "prod"):
            self.wait_synced(cluster, env, self.pin, timeout=600)

    def stop_agents(self) -> None:
        for lp, _ in self.loops:
            lp.stop()
        for _, t in self.loops:
            t.join(30)

    @staticmethod
    def wait_synced(cluster: client.Cluster, env: str, rev: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status_mod.read(cluster, env=env, namespace=env)
            if st is not None and st.revision == rev and st.sync == "Synced":
                return
            time.sleep(0.01)
        raise SystemExit(f"{env} did not report {rev[:12]} Synced within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument(
        "--baseline",
        metavar="TREE",
        help="first run this benchmark as the promote source tree TREE has it (e.g. a "
        "worktree of main), in a child process, and print its table before this one's",
    )
    args = parser.parse_args()
    if args.baseline:
        tree = Path(args.baseline).resolve()
        proc = subprocess.run(
            [sys.executable, str(tree / "bench" / "pipeline.py"), "--apps", str(args.apps)],
            env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
            check=False, timeout=1800,
        )  # fmt: skip
        table = proc.stdout.strip() or proc.stderr[-2000:]
        print(f"baseline: the code of {tree}\n{table}\n\nthis tree:", flush=True)
    root = Path(tempfile.mkdtemp(prefix="promote-pipeline-"))
    os.environ[webhook.SECRET_ENV] = os.urandom(16).hex()
    os.environ["PROMOTE_RENDER_STORE"] = str(root / "renders")  # no renders of earlier runs
    steps: list[tuple[str, float]] = []

    def step(name: str, fn: object) -> object:
        t = time.perf_counter()
        out = fn()  # type: ignore[operator]
        steps.append((name, time.perf_counter() - t))
        return out

    try:
        p = Pipeline(root, args.apps)
        with controlplane.LocalCluster() as info:
            cluster = client.Cluster(client.connect(kubeconfig=str(info.kubeconfig)))
            print(f"first sync of 3 environments x {args.apps} apps...", file=sys.stderr)
            p.start_agents(cluster)
            images = [f"app{i:03d}=v3.0.0" for i in range(args.apps)]
            try:
                step("promote set-image dev (100 apps, push to main)",
                     lambda: p.cli("set-image", "dev", *images))  # fmt: skip
                rev = p.head()
                step("dev Synced", lambda: p.wait_synced(cluster, "dev", rev))
                pr = step("promote to staging (PR)", lambda: p.cli("to", "staging"))
                number = str(pr["pullRequest"]["number"])  # type: ignore[index]
                step("promote approve (rm1)", lambda: p.cli("approve", number, user="rm1"))
                step("promote merge (staging)", lambda: p.cli("merge", number))
                rev = p.head()
                step("staging Synced", lambda: p.wait_synced(cluster, "staging", rev))
                pr = step("promote to prod (PR)", lambda: p.cli("to", "prod"))
                number = str(pr["pullRequest"]["number"])  # type: ignore[index]
                step("promote approve (rm1)", lambda: p.cli("approve", number, user="rm1"))
                step("promote approve (rm2)", lambda: p.cli("approve", number, user="rm2"))
                step("promote merge (prod)", lambda: p.cli("merge", number))
                rev = p.head()
                step("prod Synced", lambda: p.wait_synced(cluster, "prod", rev))
                deployments = cluster.resource("apps/v1", "Deployment")
                dep = cluster.get(deployments, "prod", "app000")
                image = dep["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]
                assert image.endswith(":v3.0.0"), image
            finally:
                p.stop_agents()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "gpg-agent"],
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    total = sum(s for _, s in steps)
    width = max(len(n) for n, _ in steps)
    print(
        f"\nbench/pipeline.py: image to prod, {args.apps} apps x 3 environments, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; humans instant, no soak gate, "
        "verification duration 0, no window closed; agents notified by the remote's hook"
    )
    for name, secs in steps:
        print(f"{name.ljust(width)}  {secs:6.2f} s")
    verdict = "ok" if total < TARGET_S else "OVER"
    print(f"{'total'.ljust(width)}  {total:6.2f} s  (target < {TARGET_S:g} s: {verdict})")


if __name__ == "__main__":
    main()
