"""Benchmark: resolving 200 SOPS-encrypted Secrets, cold and warm, against plain `sops -d`.

Measured in the same run, on the same files and the same age identity:

  baseline   a shell loop of `sops -d FILE > /dev/null`, one file after the other
  cold       Resolver.resolve() with an empty cache, through the persistent decryptor (sopsd,
             tools/ensure-sopsd) when it is installed
  cold, per-process   the same with PROMOTE_SOPSD=off: a `sops decrypt` process per Secret,
             in parallel threads (what promote does without sopsd)
  warm       the same resolver again: every Secret is a cache hit, no process runs

Targets (issue 4): cold within 1.2x the baseline's wall time; warm under 50 ms for all.
Each case runs --rounds times; the table shows the median and the best round.
Run: python bench/secret_resolution.py [--secrets 200] [--rounds 3] [--workers N]
(issue 19 measures --secrets 1000: one sops process per Secret against one sopsd for all).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyrage import x25519

from promote import config
from promote.kustomize import render
from promote.secrets import resolve, sops, sopsmeta, values
from promote.secrets.authoring import keys


def make_repo(root: Path, count: int, recipient: str, adapter: sops.Sops) -> Path:
    repo = root / "repo"
    (repo / "environments").mkdir(parents=True)
    (repo / "environments" / "bench.yaml").write_text(
        "overlay: overlays/bench\ncluster:\n  namespace: bench\n"
    )
    (repo / "keys" / "bench").mkdir(parents=True)
    (repo / "keys" / "bench" / keys.AGE_FILE).write_text(recipient + "\n")
    (repo / ".sops.yaml").write_text(
        keys.render_sops_config(
            [(r"overlays/bench/.*\.sops\.yaml$", sopsmeta.Recipients(age=frozenset([recipient])))]
        )
    )
    secrets = repo / "overlays" / "bench" / "secrets"
    secrets.mkdir(parents=True)
    names = [f"app-{i:03d}" for i in range(count)]
    (repo / "overlays" / "bench" / "kustomization.yaml").write_text(
        "namespace: bench\nresources:\n" + "".join(f"- secrets/{n}.sops.yaml\n" for n in names)
    )

    def encrypt(name: str) -> None:
        plain = (
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\n"
            f"stringData:\n  password: 'bench-{name}-{os.urandom(8).hex()}'\n"
            f"  username: '{name}'\n"
        ).encode()
        path = secrets / f"{name}.sops.yaml"
        path.write_bytes(
            adapter.encrypt(
                values.Plaintext(plain), filename=path, config=repo / ".sops.yaml", cwd=repo
            )
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(encrypt, names))
    return repo


def baseline(binary: Path, files: list[Path], env: dict[str, str]) -> float:
    script = 'for f in "$@"; do "$SOPS" -d "$f" > /dev/null || exit 1; done'
    started = time.perf_counter()
    subprocess.run(
        ["bash", "-c", script, "bench", *map(str, files)],
        env={**env, "SOPS": str(binary)},
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: 2 x cores")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="promote-bench-secrets-") as tmp:
        root = Path(tmp)
        identity = x25519.Identity.generate()
        key_file = root / "bench.agekey"  # outside the repository, mode 0600
        key_file.write_text(f"{identity}\n")
        key_file.chmod(0o600)
        env = sops.sops_env({"PATH": os.environ["PATH"], "SOPS_AGE_KEY_FILE": str(key_file)})
        env["HOME"] = str(root)  # no ~/.ssh or ~/.config/sops of the user's
        adapter = sops.Sops(env=env)
        per_process = sops.Sops(env=env, sopsd_binary=None)
        print(f"setting up {args.secrets} encrypted Secrets ...", file=sys.stderr)
        repo = make_repo(root, args.secrets, str(identity.to_public()), adapter)
        project = config.load_project(repo)
        objects = render.render(project.env("bench").overlay_dir)
        files = sorted((repo / "overlays" / "bench" / "secrets").glob("*.sops.yaml"))
        assert len(objects) == len(files) == args.secrets

        base, cold, warm, separate = [], [], [], []
        for _ in range(args.rounds):
            base.append(baseline(adapter.binary, files, env))
            started = time.perf_counter()
            resolve.Resolver(
                env_name="bench", sops_adapter=per_process, workers=args.workers
            ).resolve(objects)
            separate.append(time.perf_counter() - started)
            adapter.close()  # each round starts its decryptor again: its start-up is counted
            resolver = resolve.Resolver(
                env_name="bench", sops_adapter=adapter, workers=args.workers
            )
            started = time.perf_counter()
            out = resolver.resolve(objects)
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            resolver.resolve(objects)
            warm.append(time.perf_counter() - started)
            stats = resolver.cache_stats()
            assert stats.misses == args.secrets and stats.hits == args.secrets, stats
            assert all("sops" not in o and o["data"] for o in out)

    cores = os.cpu_count() or 1
    workers = args.workers or max(2, 2 * cores)
    b = statistics.median(base)
    backend = "sopsd" if adapter.sopsd else "no sopsd: sops processes"
    rows = [
        (f"baseline: {args.secrets} x `sops -d FILE` (shell loop)", base),
        (f"cold, per-process: {args.secrets} sops processes ({workers} workers)", separate),
        (f"cold: resolve {args.secrets} ({backend})", cold),
        (f"warm: resolve {args.secrets} (cache hits)", warm),
    ]
    print(f"\n{args.secrets} SOPS Secrets (age), {args.rounds} rounds, {cores} cores")
    print(f"{'case':<60} {'median':>10} {'best':>10} {'vs baseline':>12}")
    for label, times in rows:
        med = statistics.median(times)
        print(f"{label:<60} {med * 1000:>8.1f}ms {min(times) * 1000:>8.1f}ms {med / b:>11.2f}x")
    ratio = statistics.median(cold) / statistics.median(separate)
    print(f"\ncold resolve / per-process sops: {ratio:.2f}")
    cold_ok = statistics.median(cold) <= 1.2 * b
    warm_ok = statistics.median(warm) < 0.050
    print(
        f"\ntarget cold <= 1.2x baseline: {'PASS' if cold_ok else 'FAIL'}"
        f"   target warm < 50 ms: {'PASS' if warm_ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
