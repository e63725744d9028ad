"""``promote init``: write the layout of DESIGN §1 into a new or empty directory.

It writes only public, example material (no keys, no secrets) and runs ``git init`` when the
directory is not a repository yet.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from promote.errors import GitError, UsageError

_IGNORED = {".git", ".gitignore", "README.md", ".DS_Store"}


def _env_file(name: str, upstream: str | None) -> str:
    lines = [f"# environments/{name}.yaml (see README: Configuration)"]
    if upstream:
        lines.append(f"upstream: {upstream}")
    lines += [
        f"overlay: overlays/{name}",
        "cluster:",
        f"  context: {name}            # kubeconfig context of this environment's cluster",
        f"  namespace: {name}",
    ]
    if upstream:
        lines += [
            "approvals:",
            "  required: 0     # raise once approvers are listed (prod: 2)",
            "  approvers: []   # names of keys/release-managers/<name>.asc",
            "  allowSelfApproval: false",
        ]
    lines += ["sync:", "  interval: 60s", "  selfHeal: true", "  prune: true", ""]
    return "\n".join(lines)


_BASE = {
    "overlays/base/app/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        "- deployment.yaml\n- service.yaml\n"
    ),
    "overlays/base/app/deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  labels:\n"
        "    app.kubernetes.io/name: app\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n"
        "      app.kubernetes.io/name: app\n  template:\n    metadata:\n      labels:\n"
        "        app.kubernetes.io/name: app\n    spec:\n      containers:\n      - name: app\n"
        "        image: app\n        ports:\n        - containerPort: 8080\n          name: http\n"
    ),
    "overlays/base/app/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\nspec:\n  selector:\n"
        "    app.kubernetes.io/name: app\n  ports:\n  - name: http\n    port: 80\n"
        "    targetPort: http\n"
    ),
}

_PROJECT = """# promote.yaml: repository-wide settings (see README: Configuration)
mainBranch: main
remote: origin
forge:
  type: local          # pull requests live in the Git remote itself; or gitea / github
policy:
  allowLatest: []      # environments where an image may be untagged or :latest
"""

_KEYS_README = """# keys/{env}: PUBLIC recipients of the {env} environment only

`age.txt` (age1... lines), `*.asc` (PGP public keys), `vault-transit.txt` (transit key URIs).
`promote keys init {env}` creates an age identity: the private half is written OUTSIDE this
repository; only the public recipient lands here. `promote keys sync` regenerates .sops.yaml.
"""

_RM_README = """# keys/release-managers: public PGP keys of the people who may approve promotions

One `<name>.asc` per release manager; `<name>` is what `approvals.approvers` lists. Exactly one
public key per file, and no key (or subkey) in two files: `promote validate` refuses both.
"""

_DEV_README = """# keys/developers: public PGP keys of the people who open promotions

One `<name>.asc` per developer (`gpg --armor --export you@example.com`), exactly one public
key. `promote to` signs the PR it opens with it: that signature, not a flag, says who opened
it, and nobody who opened a PR or wrote a commit of it counts as its approver.
"""


def _overlay(name: str) -> str:
    return (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {name}\nresources:\n- ../base/app\n"
        "# Promoted by `promote to`; only these entries change in a promotion.\n"
        "images:\n- name: app\n  newName: registry.example.com/acme/app\n  newTag: v0.1.0\n"
    )


def plan_files(envs: list[str]) -> dict[str, str]:
    files = {"promote.yaml": _PROJECT, **_BASE}
    for i, env in enumerate(envs):
        upstream = envs[i - 1] if i else None
        files[f"environments/{env}.yaml"] = _env_file(env, upstream)
        files[f"overlays/{env}/kustomization.yaml"] = _overlay(env)
        files[f"keys/{env}/README.md"] = _KEYS_README.format(env=env)
    files["keys/release-managers/README.md"] = _RM_README
    files["keys/developers/README.md"] = _DEV_README
    files[".gitignore"] = "# never commit private keys or decrypted files\n*.agekey\n*.dec.yaml\n"
    return files


def init_project(target: Path, envs: list[str]) -> list[str]:
    """Write the layout into ``target``; return the relative paths written."""
    if not envs or len(set(envs)) != len(envs):
        raise UsageError("--envs must list distinct environment names, e.g. dev,staging,prod.")
    for env in envs:
        if not env.replace("-", "").isalnum() or env.lower() != env:
            raise UsageError(
                f"--envs: {env!r} is not a valid name; use lower-case letters, digits and dashes."
            )
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a directory; choose another path.")
    existing = [p.name for p in target.iterdir()] if target.exists() else []
    clutter = sorted(set(existing) - _IGNORED)
    if clutter:
        raise UsageError(
            f"{target} is not empty ({', '.join(clutter[:5])}); `promote init` only writes into "
            "a new or empty directory. Choose an empty one."
        )
    files = plan_files(envs)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel == ".gitignore" and path.exists():
            continue
        path.write_text(text, encoding="utf-8")
    if not (target / ".git").exists():
        try:
            subprocess.run(["git", "init", "-q", "-b", "main", str(target)], check=True)
        except OSError as exc:  # no git on PATH
            raise GitError(
                f"{target}: files written, but `git init` cannot run: git is not found on PATH.",
                hint="Install git, then run `git init -b main` in it.",
            ) from exc
        except subprocess.CalledProcessError as exc:
            raise GitError(
                f"{target}: files written, but `git init` failed (exit {exc.returncode}).",
                hint="Run `git init -b main` in it to see why.",
            ) from exc
    return sorted(files)
