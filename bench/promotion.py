"""Benchmark: `promote to staging` for 100 apps (plan + branch + commit + push + PR) and
`promote merge`, against a bare Git remote, beside a bare `git push` of the same commit.

Run: `python bench/promotion.py [--apps 100] [--repeat 5]` (what `make bench` does). Prints
the best and the median of ``--repeat`` runs: the command as a user runs it (a new process),
the same work in process (no interpreter start-up or imports), and where the time goes. Target
(issue 5): under 1.5 s each, judged on the median. Everything runs in a temporary folder: a
bare remote, a clone, a throw-away GNUPGHOME with one release manager's key.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from promote.kustomize import imagetag, render
from promote.promotion import engine, propose, review
from promote.secrets import gpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/
from tests.integration.test_promotion_helpers import many_apps

TARGET_S = 1.5


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout.strip()


def build_repo(dest: Path, apps: int, armored_key: str) -> None:
    """The tests' 100-app layout (dev -> staging -> prod; staging needs 1 of rm1..rm3), with
    rm1's public key."""
    many_apps(dest, apps, staging_required=1)
    (dest / "keys/release-managers/rm1.asc").write_text(armored_key)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


class Bench:
    def __init__(self, root: Path, apps: int) -> None:
        self.root = root
        self.gnupg = root / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        gpg_base = ["gpg", "--homedir", str(self.gnupg), "--batch"]
        sh(*gpg_base, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
           "rm1 <rm1@example.com>", "ed25519", "sign", "never", cwd=root)  # fmt: skip
        key = sh(*gpg_base, "--armor", "--export", "rm1@example.com", cwd=root)
        work = root / "work"
        build_repo(work, apps, key + "\n")
        self.remote = root / "remote.git"
        sh("git", "init", "-q", "--bare", "-b", "main", str(self.remote), cwd=root)
        sh("git", "init", "-q", "-b", "main", cwd=work)
        sh("git", "add", "-A", cwd=work)
        sh("git", "-c", "user.name=ci", "-c", "user.email=ci@x", "commit", "-qm", "init", cwd=work)
        sh("git", "push", "-q", str(self.remote), "main", cwd=work)
        self.clone = root / "clone"
        sh("git", "clone", "-q", str(self.remote), str(self.clone), cwd=root)
        sh("git", "config", "user.name", "bench", cwd=self.clone)
        sh("git", "config", "user.email", "bench@example.com", cwd=self.clone)
        self.env = {**os.environ, "GNUPGHOME": str(self.gnupg), "PROMOTE_USER": "bench"}

    def stripped_build(self, kz: render.Kustomize) -> float:
        """One kustomize build of staging without its ``images:`` (what a plan runs twice: for
        the target and the source; the images are applied in Python by ``imagetag``)."""
        text = (self.clone / "overlays/staging/kustomization.yaml").read_text()
        parts = imagetag.split(text, "overlays/staging/kustomization.yaml")
        assert parts is not None
        copy = self.clone / "overlays/.bench-stripped"  # beside it: ../base/ still resolves
        shutil.copytree(self.clone / "overlays/staging", copy)
        try:
            (copy / "kustomization.yaml").write_text(parts.text)
            return timed(lambda: kz.build(copy))[0]
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def cli(self, *args: str) -> float:
        repo = ["-C", str(self.clone)] if args[0] != "--version" else []
        argv = [sys.executable, "-m", "promote", *args, *repo]
        return timed(lambda: sh(*argv, cwd=self.clone, env=self.env))[0]

    def reset(self) -> None:
        """Forget PRs, branches and renders so the next promotion starts cold."""
        refs = sh("git", "for-each-ref", "--format=%(refname)", "refs/promote/",
                  "refs/heads/promote/", cwd=self.remote).split()  # fmt: skip
        for ref in refs:
            sh("git", "update-ref", "-d", ref, cwd=self.remote)
        shutil.rmtree(self.clone / ".git/promote", ignore_errors=True)

    def approve(self, number: int) -> None:
        with engine.session(self.clone) as s:
            review.approve(s, number, approver="rm1", signer=gpg.Signer(gnupghome=str(self.gnupg)))

    def git_push_baseline(self) -> float:
        """A bare `git push` of the promotion commit to a new branch (what Git alone costs)."""
        with engine.session(self.clone) as s:
            p = propose.plan_promotion(s, "staging")
            tree = s.repo.write_tree({p.overlay_file: p.overlay_after.encode()}, base=s.sha)
            commit = s.repo.commit(tree, [s.sha], "baseline", author=s.repo.identity())
        ref = f"refs/heads/bench/{time.monotonic_ns()}"
        return timed(lambda: sh("git", "push", "-q", "origin", f"{commit}:{ref}", cwd=self.clone))[
            0
        ]

    def in_process(self) -> dict[str, float]:
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        with engine.session(self.clone) as s:
            out["fetch + export main"] = time.perf_counter() - t0
            out["plan (2 renders: target, source)"], p = timed(
                lambda: propose.plan_promotion(s, "staging")
            )
            out["branch+commit+push+PR"], pr = timed(
                lambda: propose.open_pull_request(s, p, author="bench")  # type: ignore[arg-type]
            )
        out["promote to (in process)"] = time.perf_counter() - t0
        self.approve(pr.number)  # type: ignore[attr-defined]
        t1 = time.perf_counter()
        with engine.session(self.clone) as s:
            review.merge(s, pr.number)  # type: ignore[attr-defined]
        out["promote merge (in process)"] = time.perf_counter() - t1
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="promote-bench-"))
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    try:
        b = Bench(root, args.apps)
        kz = render.Kustomize()
        for _ in range(args.repeat):
            add("git push (baseline, same commit)", b.git_push_baseline())
            add("kustomize build staging (with its 100 images)", timed(
                lambda: kz.build(b.clone / "overlays/staging"))[0])  # fmt: skip
            add("kustomize build staging without images:", b.stripped_build(kz))
            add("promote --version (start-up only)", b.cli("--version"))
            b.reset()
            add("promote to staging (cold)", b.cli("to", "staging"))
            b.reset()
            b.cli("to", "staging", "--dry-run")
            add("promote to staging (after a --dry-run)", b.cli("to", "staging"))
            b.approve(1)
            add("promote merge 1", b.cli("merge", "1"))
            sh("git", "push", "-q", "-f", "origin", "HEAD:main", cwd=b.clone)  # undo the merge
            b.reset()
            for name, value in b.in_process().items():
                add(name, value)
            sh("git", "push", "-q", "-f", "origin", "HEAD:main", cwd=b.clone)
            b.reset()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "gpg-agent"],
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(n) for n in rows)
    print(f"promote promotion benchmark: {args.apps} apps, {args.repeat} runs, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'step'.ljust(width)}     best   median  target {TARGET_S}s (on the median)")
    for name, values in rows.items():
        best, median = min(values), statistics.median(values)
        mark = ""
        if name.startswith(("promote to", "promote merge")):
            mark = "ok" if median < TARGET_S else "OVER"
        print(f"{name.ljust(width)}  {best:7.3f}  {median:7.3f}  {mark}")


if __name__ == "__main__":
    main()
