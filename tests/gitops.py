"""A GitOps repository for tests: a bare remote and a working clone of the example layout."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import copy_example


def app_manifests(name: str, data: str = 'A: "1"') -> str:
    """One app's Deployment ``name`` and ConfigMap ``name-config`` (``data``: its entries in
    flow style) as one YAML file: what the chunked-render tests put in each base folder."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: registry.example.com/{name}:v1
        envFrom: [{{configMapRef: {{name: {name}-config}}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-config}}
data: {{{data}}}
"""


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class GitOpsRepo:
    remote: Path
    work: Path

    def commit_all(self, message: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.work / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))


def make_repo(tmp: Path, *, namespace_map: dict[str, str] | None = None) -> GitOpsRepo:
    """Bare remote + clone seeded with the example; ``namespace_map`` renames each
    environment's namespace (env file and overlay) so tests do not share one."""
    remote = tmp / "remote.git"
    work = tmp / "work"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    copy_example(work)
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.name", "Test Dev")
    git(work, "config", "user.email", "dev@example.com")
    git(work, "remote", "add", "origin", str(remote))
    for env, ns in (namespace_map or {}).items():
        env_file = work / "environments" / f"{env}.yaml"
        old_ns = next(
            line.split(":", 1)[1].strip()
            for line in env_file.read_text().splitlines()
            if line.strip().startswith("namespace:")
        )
        env_file.write_text(
            env_file.read_text().replace(f"namespace: {old_ns}", f"namespace: {ns}")
        )
        kz = work / "overlays" / env / "kustomization.yaml"
        kz.write_text(kz.read_text().replace(f"namespace: {old_ns}", f"namespace: {ns}"))
    repo = GitOpsRepo(remote, work)
    repo.commit_all("initial layout")
    return repo


def make_deployments_available(cluster: Any, ns: str, names: tuple[str, ...]) -> None:
    """Set status as a Deployment controller would (the test cluster runs none)."""
    for name in names:
        dep = cluster.get(cluster.resource("apps/v1", "Deployment"), ns, name)
        n = dep["spec"]["replicas"]
        cluster.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/status",
            body={
                "status": {
                    "observedGeneration": dep["metadata"]["generation"],
                    "replicas": n,
                    "updatedReplicas": n,
                    "readyReplicas": n,
                    "availableReplicas": n,
                }
            },
            content_type="application/merge-patch+json",
        )
