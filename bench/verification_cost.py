"""The agent's verification cost (issue 13): a cold walk over 1,000 first-parent commits of
main, and an incremental pass with one new approved merge since the last verified revision.

The history is the example layout with real GnuPG keys for rm1 and rm2: three direct pushes
touching only overlays/dev for every merge of an approved prod PR (two signed approvals each,
records under refs/promote/prs/N). Verification reads the bare repository as an agent reads
its mirror. Used by ``bench/reconcile.py`` (``--verify-only`` runs just this part).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from promote.forge import base as forge_base
from promote.git import repo as git_repo
from promote.reconcile.verify import Verifier
from promote.secrets import gpg

ROOT = Path(__file__).resolve().parents[1]
PROD_KZ = "overlays/prod/kustomization.yaml"
DEV_KZ = "overlays/dev/kustomization.yaml"


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    )
    return proc.stdout.strip()


def _keys(home: Path) -> dict[str, tuple[str, str]]:
    """name -> (fingerprint, armoured public key), secret keys in ``home``."""
    out = {}
    base = ["gpg", "--homedir", str(home), "--batch"]
    for name in ("rm1", "rm2"):
        subprocess.run(
            [*base, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
             f"{name} <{name}@example.com>", "ed25519", "sign", "never"],
            check=True, capture_output=True,
        )  # fmt: skip
        public = subprocess.run(
            [*base, "--armor", "--export", f"{name}@example.com"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        out[name] = (gpg.key_fingerprints(public)[0], public)
    return out


class History:
    """A work clone whose main grows by dev pushes and approved prod merges."""

    def __init__(self, tmp: Path) -> None:
        self.work = tmp / "work"
        self.home = tmp / "gnupg"
        self.home.mkdir(mode=0o700)
        self.keys = _keys(self.home)
        self.signer = gpg.Signer(gnupghome=str(self.home))
        self.work.mkdir()
        for part in ("promote.yaml", "environments", "overlays", "keys"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, self.work / part)
        for name, (_, public) in self.keys.items():
            (self.work / "keys/release-managers" / f"{name}.asc").write_text(public)
        _git(self.work.parent, "init", "-q", "-b", "main", str(self.work))
        _git(self.work, "config", "user.name", "bench")
        _git(self.work, "config", "user.email", "bench@example.com")
        self.pin = self._commit("initial layout")
        self.repo = git_repo.Repo.open(self.work)
        self.prs = 0
        self.n = 0

    def _commit(self, message: str) -> str:
        _git(self.work, "add", "-A")
        _git(self.work, "commit", "-q", "-m", message)
        return _git(self.work, "rev-parse", "HEAD")

    def _bump(self, path: str) -> None:
        self.n += 1
        f = self.work / path
        lines = f.read_text().splitlines(keepends=True)
        i = next(i for i, ln in enumerate(lines) if "newTag:" in ln)
        lines[i] = f"  newTag: v0.{self.n}.0\n"
        f.write_text("".join(lines))

    def dev_push(self) -> str:
        self._bump(DEV_KZ)
        return self._commit(f"dev {self.n}")

    def approved_merge(self) -> str:
        self.prs += 1
        _git(self.work, "checkout", "-q", "-b", f"pr{self.prs}")
        self._bump(PROD_KZ)
        head = self._commit(f"promote prod {self.n}")
        _git(self.work, "checkout", "-q", "main")
        self.dev_push()  # main moves on: the PR merges with a merge commit
        _git(self.work, "merge", "-q", "--no-ff", "-m", f"Merge PR #{self.prs}", head)
        self._record(self.prs, head)
        return _git(self.work, "rev-parse", "HEAD")

    def _record(self, number: int, head: str) -> None:
        at = datetime.now(UTC).replace(microsecond=0)
        approvals = []
        for name, (fpr, _) in self.keys.items():
            payload = forge_base.approval_payload(
                pr=number, env="prod", head_sha=head, approver=name, at=at
            )
            sig = self.signer.sign(payload.encode(), fingerprints=[fpr], who=name)
            approvals.append({"approver": name, "payload": payload, "signature": sig})
        doc = {"number": number, "env": "prod", "author": "dev1", "images": [],
               "approvals": approvals}  # fmt: skip
        tree = self.repo.write_tree({"pr.json": json.dumps(doc).encode()})
        commit = self.repo.commit(tree, [], f"PR #{number}", author=self.repo.identity())
        self.repo.set_ref(f"refs/promote/prs/{number}", commit)


def measure(commits: int = 1000) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="promote-bench-verify-") as tmp:
        os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
        h = History(Path(tmp))
        started = time.monotonic()
        while int(_git(h.work, "rev-list", "--first-parent", "--count", "HEAD")) <= commits:
            h.approved_merge()  # two first-parent steps (a dev push, the merge)
            h.dev_push()
            h.dev_push()
        head = _git(h.work, "rev-parse", "HEAD")
        built = time.monotonic() - started
        verifier = Verifier(h.repo, env="prod")
        cold = verifier.check(anchor=h.pin, verified=[h.pin], revision=head)
        assert cold.verified, cold.summary()
        cold_cost = verifier.cost
        new = h.approved_merge()
        verifier.evidence.reload_records()
        incr = verifier.check(anchor=head, verified=[h.pin, head], revision=new)
        assert incr.verified, incr.summary()
        verifier.close()
        return {
            "built_s": built,
            "cold_s": cold_cost.seconds,
            "cold_steps": cold_cost.steps,
            "cold_merges": cold_cost.merges,
            "cold_signatures": cold_cost.signatures,
            "cold_snapshots": cold_cost.snapshots,
            "incremental_ms": verifier.cost.seconds * 1000,
            "incremental_steps": verifier.cost.steps,
            "incremental_signatures": verifier.cost.signatures,
        }


def report(result: dict[str, float | int]) -> None:
    print(
        f"verification: cold walk of {result['cold_steps']} first-parent commits "
        f"({result['cold_merges']} merges, {result['cold_signatures']} signatures checked, "
        f"{result['cold_snapshots']} configuration snapshots): {result['cold_s']:.2f}s; "
        f"incremental pass (one new approved merge, {result['incremental_steps']} steps, "
        f"{result['incremental_signatures']} signatures): {result['incremental_ms']:.1f} ms "
        f"(target < 50 ms)"
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    report(measure(n))
