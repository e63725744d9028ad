"""Fixtures and builders shared by the promotion tests: real Git remotes, real GnuPG keys.

Not a test module by content: pytest collects it (its name matches) and finds no tests. The
other promotion test modules import from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import copy_example

KEY_NAMES = ("rm1", "rm2", "rm3", "dev1", "mallory")
DEVELOPERS = ("dev1",)  # registered in keys/developers/ (the others in keys/release-managers/)
CANARY = "CANARY-5eb1d7-do-not-print"
ENC = "ENC[AES256_GCM,data:{data},iv:aXY=,tag:dGFn,type:str]"


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


@dataclass(frozen=True)
class Keys:
    home: Path  # a GNUPGHOME holding every secret key
    public: dict[str, str]  # name -> ASCII-armoured public key
    fingerprints: dict[str, str]


@pytest.fixture(scope="session")
def gpg_keys() -> Iterator[Keys]:
    home = Path(tempfile.mkdtemp(prefix="promote-gnupg-"))
    home.chmod(0o700)
    public, fprs = {}, {}
    base = ["gpg", "--homedir", str(home), "--batch"]
    try:
        for name in KEY_NAMES:
            subprocess.run(
                [*base, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                 f"{name} <{name}@example.com>", "ed25519", "sign", "never"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            public[name] = subprocess.run(
                [*base, "--armor", "--export", f"{name}@example.com"],
                check=True, capture_output=True, text=True, timeout=60,
            ).stdout  # fmt: skip
            listing = subprocess.run(
                [*base, "--with-colons", "--list-keys", f"{name}@example.com"],
                check=True, capture_output=True, text=True, timeout=60,
            ).stdout  # fmt: skip
            fprs[name] = next(
                ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")
            )
        yield Keys(home, public, fprs)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class GitOps:
    remote: Path  # the bare repository: the only "server"
    clone: Path  # the user's working clone
    env: dict[str, str] = field(default_factory=dict)  # for run_cli
    keys: Keys | None = None  # the people's GnuPG keys, when the test registered them

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.clone)

    def main_file(self, path: str) -> str:
        self.git("fetch", "-q", "origin")
        return self.git("show", f"origin/main:{path}")

    def commit_and_push(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")


def publish(work: Path, tmp: Path, *, name: str = "gitops") -> GitOps:
    """Commit ``work`` as main of a new bare remote and clone it (user alice)."""
    remote = tmp / f"{name}.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp)
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("-c", "user.name=ci", "-c", "user.email=ci@example.com", "commit", "-q", "-m", "init",
        cwd=work)  # fmt: skip
    git("push", "-q", str(remote), "main", cwd=work)
    clone = tmp / f"{name}-clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp)
    git("config", "user.name", "alice", cwd=clone)
    git("config", "user.email", "alice@example.com", cwd=clone)
    return GitOps(remote, clone)


def install_keys(
    work: Path, keys: Keys, names: tuple[str, ...] = ("rm1", "rm2", "rm3", "dev1")
) -> None:
    for name in names:
        folder = work / ("keys/developers" if name in DEVELOPERS else "keys/release-managers")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.asc").write_text(keys.public[name])


def example_gitops(tmp: Path, keys: Keys | None = None) -> GitOps:
    """The example layout (staging: 1 of rm1, rm2; prod: 2 of rm1, rm2) with keys and a
    SOPS-like Secret in every environment whose ciphertext carries a canary."""
    work = copy_example(tmp / "work")
    if keys:
        install_keys(work, keys)
    for env in ("dev", "staging", "prod"):
        write_secret(work, env, "db", {"password": CANARY, "user": CANARY + "-user"})
    return publish(work, tmp)


def write_secret(work: Path, env: str, name: str, values: dict[str, str]) -> None:
    data = "".join(f"  {k}: {ENC.format(data=v)}\n" for k, v in values.items())
    (work / f"overlays/{env}/{name}.sops.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\n"
        f"stringData:\n{data}sops:\n  mac: ENC[AES256_GCM,data:{CANARY}-mac,type:str]\n"
        "  encrypted_regex: ^(data|stringData)$\n  version: 3.9.0\n"
    )
    kz = work / f"overlays/{env}/kustomization.yaml"
    text = kz.read_text()
    entry = f"- {name}.sops.yaml\n"
    if entry not in text:
        kz.write_text(text.replace("- ../base/api\n", "- ../base/api\n" + entry, 1))


def many_apps(dest: Path, n: int, *, staging_required: int = 0, prod_required: int = 2) -> Path:
    """A repository with ``n`` small apps (a Deployment and a Service each)."""
    apps = [f"app{i:03d}" for i in range(n)]
    (dest / "environments").mkdir(parents=True)
    (dest / "keys/release-managers").mkdir(parents=True)
    (dest / "promote.yaml").write_text("mainBranch: main\nremote: origin\n")
    for app in apps:
        base = dest / "overlays/base" / app
        base.mkdir(parents=True)
        (base / "kustomization.yaml").write_text("resources:\n- deployment.yaml\n- service.yaml\n")
        (base / "deployment.yaml").write_text(
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n"
            f"  selector:\n    matchLabels: {{app: {app}}}\n  template:\n    metadata:\n"
            f"      labels: {{app: {app}}}\n    spec:\n      containers:\n      - name: {app}\n"
            f"        image: {app}\n"
        )
        (base / "service.yaml").write_text(
            f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\nspec:\n"
            f"  selector: {{app: {app}}}\n  ports:\n  - port: 80\n"
        )
    policies = {"staging": staging_required, "prod": prod_required}
    for env, upstream, tag in (("dev", None, "v2.0.0"), ("staging", "dev", "v1.0.0"),
                               ("prod", "staging", "v1.0.0")):  # fmt: skip
        lines = [f"# {env}", f"overlay: overlays/{env}", "cluster:", f"  namespace: {env}"]
        if upstream:
            lines.insert(1, f"upstream: {upstream}")
            lines += [
                "approvals:",
                f"  required: {policies[env]}",
                "  approvers: [rm1, rm2, rm3]",
            ]
        (dest / f"environments/{env}.yaml").write_text("\n".join(lines) + "\n")
        kz = dest / f"overlays/{env}/kustomization.yaml"
        kz.parent.mkdir(parents=True)
        kz.write_text(
            f"namespace: {env}\nresources:\n"
            + "".join(f"- ../base/{a}\n" for a in apps)
            + "# promoted images\nimages:\n"
            + "".join(
                f"- name: {a}\n  newName: registry.example.com/{a}\n  newTag: {tag}\n" for a in apps
            )
        )
    return dest


def push_to_branch(
    ops: GitOps,
    branch: str,
    edit: Callable[[Path], None],
    *,
    message: str = "an extra commit",
    sign_as: str | None = None,
) -> str:
    """Commit ``edit`` (applied to a fresh clone of ``branch``) on top of the branch and push it,
    as someone with push access would: with plain git, signed by ``sign_as``'s key if given."""
    work = Path(tempfile.mkdtemp(prefix="promote-push-"))
    try:
        git("clone", "-q", "-b", branch, str(ops.remote), str(work / "c"), cwd=work)
        clone = work / "c"
        edit(clone)
        git("add", "-A", cwd=clone)
        args = ["-c", "user.name=someone", "-c", "user.email=someone@example.com"]
        if sign_as:
            assert ops.keys is not None
            fpr = ops.keys.fingerprints[sign_as]
            args += ["-c", f"user.signingkey={fpr}", "-c", "gpg.format=openpgp"]
        proc = subprocess.run(
            ["git", *args, "commit", "-q", *(["-S"] if sign_as else []), "-m", message],
            cwd=clone, capture_output=True, text=True, check=False, timeout=60,
            env={**os.environ, **({"GNUPGHOME": str(ops.keys.home)} if ops.keys else {})},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        git("push", "-q", "origin", f"HEAD:{branch}", cwd=clone)
        return git("rev-parse", "HEAD", cwd=clone)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def replace_in(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    return edit
