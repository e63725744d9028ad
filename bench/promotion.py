"""Benchmark: `promote to staging` for 100 apps (plan + branch + commit + push + PR) and
`promote merge`, against a bare Git remote, beside a bare `git push` of the same commit.

Run: `python bench/promotion.py [--apps 100] [--repeat 5]` (what `make bench` does). Prints
the best and the median of ``--repeat`` runs: the command as a user runs it (a new process),
the same work in process (no interpreter start-up or imports), and where the time goes. Target
(issue 5): under 1.5 s each, judged on the median. Everything runs in a temporary folder: a
bare remote, a clone, a throw-away GNUPGHOME with one release manager's key.

Policies (issue 17): each run also promotes with and without three policies in policies/
(BENCH_POLICIES, on all 200 objects), back to back, and reports the median difference
(target: under 0.3 s), beside the policy step alone in process.
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
POLICY_TARGET_S = 0.3  # issue 17: what policy checks may add to `promote to`

# A few policies in the style teams write (issue 17): each applies to all 100 apps.
BENCH_POLICIES = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: registry}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [apps], apiVersions: [v1], resources: [deployments],
                     operations: [CREATE, UPDATE]}]
  validations:
  - expression: "object.spec.template.spec.containers.all(c,
      c.image.matches('^registry[.]example[.]com/') && c.image.find(':v[0-9]+') != '')"
    message: images come from registry.example.com with a version tag
  - expression: "object.spec.template.spec.containers.all(c, !has(c.resources) ||
      !has(c.resources.limits) || !('memory' in c.resources.limits) ||
      quantity(c.resources.limits.memory).isLessThan(quantity('4Gi')))"
    message: memory limits stay below 4Gi
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: registry}
spec: {policyName: registry, validationActions: [Deny]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: labelled}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [apps], apiVersions: [v1], resources: [deployments],
                     operations: [CREATE, UPDATE]}]
  validations:
  - expression: "has(object.spec.template.metadata.labels) &&
      'app' in object.spec.template.metadata.labels"
    message: pods carry an app label
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: labelled}
spec: {policyName: labelled, validationActions: [Deny]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: ports}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], resources: [services],
                     operations: [CREATE, UPDATE]}]
  validations:
  - expression: "object.spec.ports.all(p, p.port < 10000)"
    message: service ports stay below 10000
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: ports}
spec: {policyName: ports, validationActions: [Deny]}
"""


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout.strip()


def build_repo(dest: Path, apps: int, armored_key: str, opener_key: str) -> None:
    """The tests' 100-app layout (dev -> staging -> prod; staging needs 1 of rm1..rm3), with
    rm1's public key and the key of `bench`, the registered developer who opens the PRs."""
    many_apps(dest, apps, staging_required=1)
    (dest / "keys/release-managers/rm1.asc").write_text(armored_key)
    (dest / "keys/developers").mkdir(parents=True, exist_ok=True)
    (dest / "keys/developers/bench.asc").write_text(opener_key)


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
        for person in ("rm1", "bench"):
            sh(
                *gpg_base,
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                f"{person} <{person}@example.com>",
                "ed25519",
                "sign",
                "never",
                cwd=root,
            )
        key = sh(*gpg_base, "--armor", "--export", "rm1@example.com", cwd=root)
        opener = sh(*gpg_base, "--armor", "--export", "bench@example.com", cwd=root)
        work = root / "work"
        build_repo(work, apps, key + "\n", opener + "\n")
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
        refs = sh(
            "git",
            "for-each-ref",
            "--format=%(refname)",
            "refs/promote/",
            "refs/heads/promote/",
            cwd=self.remote,
        ).split()
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

    def set_policies(self, on: bool) -> None:
        """Put BENCH_POLICIES on main (a commit), or take that commit back off."""
        if on:
            (self.clone / "policies").mkdir(exist_ok=True)
            (self.clone / "policies/bench.yaml").write_text(BENCH_POLICIES)
            sh("git", "add", "-A", cwd=self.clone)
            sh("git", "commit", "-qm", "policies", cwd=self.clone)
        else:
            sh("git", "reset", "-q", "--hard", "HEAD~1", cwd=self.clone)
        sh("git", "push", "-q", "-f", "origin", "HEAD:main", cwd=self.clone)

    def policy_check(self) -> dict[str, float]:
        """The policy step alone, in process: load and compile (beside the renders in a plan),
        then evaluate on staging's after-render (on the plan's path)."""
        from promote.promotion import policies

        with engine.session(self.clone) as s:
            env = s.project.env("staging")
            text = s.read_overlay(env)[0]
            before = after = s.render_variants(env.overlay_dir, [text])[0]
            started = time.perf_counter()
            checker = policies.prepare(s.root)
            prep = time.perf_counter() - started
            run, found = timed(
                lambda: checker.check("staging", after, namespace="staging", before=before)
            )
        assert found == [], found
        return {
            "policies: load + compile (beside the renders)": prep,
            "policies: evaluate 200 objects (on the plan's path)": run,
        }

    def in_process(self) -> dict[str, float]:
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        with engine.session(self.clone) as s:
            out["fetch + export main"] = time.perf_counter() - t0
            out["plan (2 renders: target, source)"], p = timed(
                lambda: propose.plan_promotion(s, "staging")
            )
            out["branch+commit+push+PR"], pr = timed(
                lambda: propose.open_pull_request(
                    s,
                    p,  # type: ignore[arg-type]
                    opener="bench",
                    signer=gpg.Signer(gnupghome=str(self.gnupg)),
                )
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
            add(
                "kustomize build staging (with its 100 images)",
                timed(lambda: kz.build(b.clone / "overlays/staging"))[0],
            )
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
            for kind in ("after a --dry-run", "cold"):  # each pair back to back: less noise
                pair = []
                for on in (False, True):
                    if on:
                        b.set_policies(True)
                    b.reset()
                    if kind != "cold":
                        b.cli("to", "staging", "--dry-run")
                    pair.append(b.cli("to", "staging"))
                    if on:
                        b.set_policies(False)
                add(f"promote to staging ({kind}), 3 policies", pair[1])
                add(f"policy checks add ({kind})", pair[1] - pair[0])
            b.reset()
            b.set_policies(True)
            for name, value in b.policy_check().items():
                add(name, value)
            b.set_policies(False)
            b.reset()
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(n) for n in rows)
    print(
        f"promote promotion benchmark: {args.apps} apps, {args.repeat} runs, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'step'.ljust(width)}     best   median  target {TARGET_S}s (on the median)")
    for name, values in rows.items():
        best, median = min(values), statistics.median(values)
        mark = ""
        if name.startswith(("promote to", "promote merge")):
            mark = "ok" if median < TARGET_S else "OVER"
        print(f"{name.ljust(width)}  {best:7.3f}  {median:7.3f}  {mark}")
    for kind in ("after a --dry-run", "cold"):
        added = statistics.median(rows[f"policy checks add ({kind})"])
        mark = "ok" if added < POLICY_TARGET_S else "OVER"
        print(
            f"policy checks add to `promote to` ({kind}): {added:+.3f} s, the median of "
            f"paired runs (target {POLICY_TARGET_S} s): {mark}"
        )


if __name__ == "__main__":
    main()
