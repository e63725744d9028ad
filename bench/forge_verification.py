"""The agent's verification cost on Gitea (issue 13 item 5): an incremental pass with one new
merge since the last verified revision, with the forge's answers asked over HTTP and with
them read from the agent's cache directory (a later pass or a restarted agent).

A real Gitea (built from Go modules, ``tools/ensure-gitea``) on 127.0.0.1 holds the example
layout; each merge is a PR changing prod's tag, approved by rm1 and merged by Gitea (merge
commit). The agent's side reads a mirror of the repository and asks Gitea with a read-only
token (``read:repository``, ``read:issue``, ``read:user``).

Run: python bench/forge_verification.py [--passes 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from promote import config  # noqa: E402
from promote.reconcile import forgeproofs  # noqa: E402
from promote.reconcile.source import GitSource  # noqa: E402
from promote.reconcile.verify import Verifier  # noqa: E402
from tests.gitea_fixture import GiteaServer, start_gitea  # noqa: E402
from tests.helpers import copy_example  # noqa: E402

PROD_KZ = "overlays/prod/kustomization.yaml"


def _merge_approved(gitea: GiteaServer, repo: str, tmp: Path, tag: str) -> str:
    wt = tmp / f"wt-{uuid.uuid4().hex[:6]}"
    gitea.git(tmp, "clone", "-q", gitea.clone_url_for("dev1", repo), str(wt))
    kz = wt / PROD_KZ
    old = kz.read_text().split("newTag:", 1)[1].split()[0]
    kz.write_text(kz.read_text().replace(f"newTag: {old}", f"newTag: {tag}", 1))
    branch = f"promote/prod/{uuid.uuid4().hex[:8]}"
    gitea.git(
        wt, "-c", "user.name=dev1", "-c", "user.email=dev1@example.com", "commit", "-qam", tag
    )
    gitea.git(wt, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    head = gitea.git(wt, "rev-parse", "HEAD").strip()
    gitea.wait_for_branch(branch, head, repo=repo)
    with gitea.api("dev1") as c:
        n = c.post(f"/repos/{repo}/pulls", json={"base": "main", "head": branch, "title": tag})
        number = n.json()["number"]
    with gitea.api("rm1") as c:
        c.post(
            f"/repos/{repo}/pulls/{number}/reviews", json={"event": "APPROVED", "commit_id": head}
        ).raise_for_status()
    with gitea.api("dev1") as c:
        deadline = time.monotonic() + 30
        while (
            c.post(f"/repos/{repo}/pulls/{number}/merge", json={"Do": "merge"}).status_code != 200
        ):
            assert time.monotonic() < deadline, "Gitea did not merge"
            time.sleep(0.2)
        sha = str(c.get(f"/repos/{repo}/pulls/{number}").json()["merge_commit_sha"])
    shutil.rmtree(wt)
    return sha


def _token(gitea: GiteaServer) -> str:
    u = gitea.rm1
    r = httpx.post(
        f"{gitea.api_url}/users/{u.name}/tokens",
        auth=(u.name, u.password),
        json={"name": "bench-agent", "scopes": ["read:repository", "read:issue", "read:user"]},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["sha1"])


def measure(passes: int) -> dict[str, float | int | str]:
    import os

    with tempfile.TemporaryDirectory(prefix="promote-bench-forge-") as tmp_s:
        tmp = Path(tmp_s)
        gitea = start_gitea(tmp / "gitea")
        try:
            repo = gitea.create_repo("bench")
            work = copy_example(tmp / "layout")
            (work / "promote.yaml").write_text(
                f"forge: {{type: gitea, url: '{gitea.url}', repo: {repo}, tokenEnv: BENCH_TOKEN}}\n"
            )
            env_file = work / "environments/prod.yaml"
            env_file.write_text(env_file.read_text().replace("required: 2", "required: 1"))
            pin = gitea.push_tree(work, repo=repo)
            os.environ["BENCH_TOKEN"] = _token(gitea)
            cfg = config.load_project(work).config
            src = GitSource(
                f"{gitea.url}/{repo}.git", branch="main", cache_root=tmp / "agent", history=True
            )
            v = _merge_approved(gitea, repo, tmp, "v9.0.0")
            src.fetch()
            cache = tmp / "agent"
            cold: list[float] = []
            warm: list[float] = []
            calls: list[int] = []
            for i in range(passes):
                new = _merge_approved(gitea, repo, tmp, f"v9.1.{i}")
                src.fetch()
                for sample, label in ((cold, "http"), (warm, "cached")):
                    proofs = forgeproofs.for_project(
                        cfg, "prod", src.repo, url=src.url, cache_root=cache
                    )
                    assert proofs is not None
                    verifier = Verifier(src.repo, env="prod", proof_source=proofs)
                    assert verifier.check(anchor=pin, verified=[pin], revision=v).verified
                    before = proofs.lookup.calls
                    verdict = verifier.check(anchor=v, verified=[pin, v], revision=new)
                    assert verdict.verified, verdict.summary()
                    sample.append(verifier.cost.seconds)
                    if label == "http":
                        calls.append(proofs.lookup.calls - before)
                    else:
                        assert proofs.lookup.calls == before  # nothing asked: the disk cache
                    verifier.close()
                    proofs.lookup.forge.disconnect()
                v = new
            return {
                "gitea": gitea.version,
                "passes": passes,
                "incremental_http_ms": statistics.median(cold) * 1000,
                "incremental_cached_ms": statistics.median(warm) * 1000,
                "forge_calls_per_new_merge": statistics.median(calls),
            }
        finally:
            gitea.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=7)
    print(json.dumps(measure(parser.parse_args().passes), indent=2))


if __name__ == "__main__":
    main()
