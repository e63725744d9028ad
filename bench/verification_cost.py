"""The agent's verification cost (issue 13): a cold walk over 1,000 first-parent commits of
main, and an incremental pass with one new approved merge since the last verified revision.

The history is the example layout with real GnuPG keys for rm1, rm2 (release managers) and
dev1 (a developer): three direct pushes touching only overlays/dev for every merge of an
approved prod PR, written as ``promote to prod`` writes one (a commit whose plan trailers
reproduce it, a record under refs/promote/prs/N signed by its opener dev1, two approvals
signed for its scope). Verification reads the repository as an agent reads its mirror.
Used by ``bench/reconcile.py`` (``--verify-only`` runs just this part).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from promote.forge import base as forge_base
from promote.forge import records
from promote.git import repo as git_repo
from promote.promotion import provenance
from promote.reconcile.verify import Verifier
from promote.secrets import gpg

ROOT = Path(__file__).resolve().parents[1]
PROD_KZ = "overlays/prod/kustomization.yaml"
DEV_KZ = "overlays/dev/kustomization.yaml"
INCREMENTAL_PASSES = 7


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    )
    return proc.stdout.strip()


def _keys(home: Path) -> dict[str, tuple[str, str]]:
    """name -> (fingerprint, armoured public key), secret keys in ``home``."""
    out = {}
    base = ["gpg", "--homedir", str(home), "--batch"]
    for name in ("rm1", "rm2", "dev1"):
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
            folder = "keys/developers" if name == "dev1" else "keys/release-managers"
            (self.work / folder).mkdir(parents=True, exist_ok=True)
            (self.work / folder / f"{name}.asc").write_text(public)
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

    def graph(self) -> None:
        """The commit-graph, as the agent's mirror keeps it (``fetch.writeCommitGraph``)."""
        _git(self.work, "commit-graph", "write", "--reachable", "--split")

    def dev_push(self) -> str:
        self._bump(DEV_KZ)
        return self._commit(f"dev {self.n}")

    def approved_merge(self) -> str:
        self.prs += 1
        self.n += 1
        base = _git(self.work, "rev-parse", "HEAD")
        _git(self.work, "checkout", "-q", "-b", f"pr{self.prs}")
        image = f"web-app=v0.{self.n}.0"
        kz = self.work / PROD_KZ
        edited = provenance.apply_images(kz.read_text(), [image], PROD_KZ)
        assert edited is not None
        kz.write_text(edited)
        head = self._commit(f"Promote to prod\n\nPromote-Env: prod\nPromote-Images: {image}")
        _git(self.work, "checkout", "-q", "main")
        self.dev_push()  # main moves on: the PR merges with a merge commit
        _git(self.work, "merge", "-q", "--no-ff", "-m", f"Merge PR #{self.prs}", head)
        self._record(self.prs, head, base, image)
        return _git(self.work, "rev-parse", "HEAD")

    def _sign(self, name: str, payload: str) -> str:
        return self.signer.sign(payload.encode(), fingerprints=[self.keys[name][0]], who=name)

    def _record(self, number: int, head: str, base: str, image: str) -> None:
        at = datetime.now(UTC).replace(microsecond=0)
        opened = forge_base.opened_payload(pr=number, env="prod", scope=["prod"], head_sha=head,
                                           base_sha=base, opener="dev1", at=at)  # fmt: skip
        draft = forge_base.PullRequestDraft(
            title=f"Promote to prod #{number}", body="", env="prod", source="staging",
            kind=forge_base.PRKind.PROMOTION, branch=f"promote/prod/{number}", base="main",
            head_sha=head, author="dev1", author_identity="dev1", source_revision=base,
            images=(image,),
        )  # fmt: skip
        doc = records.new_record(
            draft,
            number,
            created_at=at,
            opened=forge_base.Opened(opened, self._sign("dev1", opened)),
        )
        for name in ("rm1", "rm2"):
            payload = forge_base.approval_payload(
                pr=number, env="prod", head_sha=head, approver=name, at=at, scope=["prod"]
            )
            doc["approvals"].append({"payload": payload, "signature": self._sign(name, payload)})
        tree = self.repo.write_tree({records.RECORD: json.dumps(doc).encode(), records.BODY: b""})
        commit = self.repo.commit(tree, [], f"PR #{number}", author=self.repo.identity())
        self.repo.set_ref(f"{records.PR_PREFIX}{number}", commit)


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
        h.graph()
        built = time.monotonic() - started
        verifier = Verifier(h.repo, env="prod")
        cold = verifier.check(anchor=h.pin, verified=[h.pin], revision=head)
        assert cold.verified, cold.summary()
        cold_cost = verifier.cost
        passes = []  # several incremental passes: the machine is shared, one sample is noise
        for _ in range(INCREMENTAL_PASSES):
            new = h.approved_merge()
            h.graph()
            incr = verifier.check(anchor=head, verified=[h.pin, head], revision=new)
            assert incr.verified, incr.summary()
            passes.append(verifier.cost)
            head = new
        verifier.close()
        return {
            "built_s": built,
            "cold_s": cold_cost.seconds,
            "cold_steps": cold_cost.steps,
            "cold_merges": cold_cost.merges,
            "cold_signatures": cold_cost.signatures,
            "cold_snapshots": cold_cost.snapshots,
            "incremental_ms": statistics.median(c.seconds for c in passes) * 1000,
            "incremental_max_ms": max(c.seconds for c in passes) * 1000,
            "incremental_steps": passes[-1].steps,
            "incremental_signatures": passes[-1].signatures,
        }


def report(result: dict[str, float | int]) -> None:
    print(
        f"verification: cold walk of {result['cold_steps']} first-parent commits "
        f"({result['cold_merges']} merges, {result['cold_signatures']} signatures checked, "
        f"{result['cold_snapshots']} configuration snapshots): {result['cold_s']:.2f}s; "
        f"incremental pass (one new approved merge, {result['incremental_steps']} steps, "
        f"{result['incremental_signatures']} signatures): median of {INCREMENTAL_PASSES} "
        f"{result['incremental_ms']:.1f} ms, max {result['incremental_max_ms']:.1f} ms "
        f"(target < 50 ms)"
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    report(measure(n))
