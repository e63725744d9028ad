"""A real Gitea server for integration tests (pytest plugin).

Register it once, e.g. in ``tests/conftest.py``::

    pytest_plugins = ["tests.gitea_fixture"]

(``tests`` must be importable: run ``python -m pytest`` from the repository root, or set
``pythonpath = ["."]`` under ``[tool.pytest.ini_options]``). ``from tests.gitea_fixture import
gitea`` also works.

The binary is built from Go modules by ``tools/ensure-gitea`` and cached; a cold build takes
many minutes, so CI should run ``tools/ensure-gitea`` before pytest (the per-test timeout also
covers fixture setup). ``PROMOTE_GITEA_DIR`` may point at a directory made by that script.

The session fixture ``gitea`` starts Gitea on a free 127.0.0.1 port with SQLite in a temporary
directory, creates the admin ``promote-admin``, the release managers ``rm1`` and ``rm2`` and the
developer ``dev1`` (each with an API token of scope ``all``), the organisation ``platform`` and
the empty repository ``platform/gitops`` (default branch ``main``) on which rm1, rm2 and dev1 are
write collaborators. ``GiteaServer.push_tree(directory)`` commits a directory's content to a
branch.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from promote.local import processes

REPO_ROOT = Path(__file__).resolve().parent.parent
ENSURE_GITEA = REPO_ROOT / "tools" / "ensure-gitea"
STARTUP_DEADLINE_S = 60.0
ORG = "platform"
REPO = "gitops"

__all__ = ["GiteaServer", "GiteaUser", "gitea", "start_gitea"]


@dataclass(frozen=True)
class GiteaUser:
    name: str
    password: str
    email: str
    token: str
    admin: bool = False

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


@dataclass
class GiteaServer:
    """A running Gitea. ``url`` has no trailing slash; ``api_url`` is ``url + "/api/v1"``."""

    url: str
    port: int
    version: str
    binary: Path
    static_root: Path
    workdir: Path
    config: Path
    log_path: Path
    admin: GiteaUser
    rm1: GiteaUser
    rm2: GiteaUser
    dev1: GiteaUser
    repo: str = f"{ORG}/{REPO}"
    default_branch: str = "main"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # -- addresses -------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def users(self) -> dict[str, GiteaUser]:
        return {u.name: u for u in (self.admin, self.rm1, self.rm2, self.dev1)}

    @property
    def clone_url(self) -> str:
        """HTTP clone URL of ``repo`` with the admin's credentials (basic auth, token)."""
        return self.clone_url_for(self.admin)

    def clone_url_for(self, user: GiteaUser | str, repo: str | None = None) -> str:
        u = self.users[user] if isinstance(user, str) else user
        host = self.url.removeprefix("http://")
        return f"http://{quote(u.name, safe='')}:{u.token}@{host}/{repo or self.repo}.git"

    def api(self, user: GiteaUser | str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client on ``api_url`` authenticated with ``user``'s token (admin default)."""
        u = self.admin if user is None else (self.users[user] if isinstance(user, str) else user)
        return httpx.Client(base_url=self.api_url, headers=u.auth_headers, timeout=30.0, **kwargs)

    # -- administration --------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``gitea --config app.ini ARGS`` (e.g. ``"admin", "user", "list"``)."""
        proc = subprocess.run(
            [
                str(self.binary),
                "--config",
                str(self.config),
                "--work-path",
                str(self.workdir),
                *args,
            ],
            env=_gitea_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"gitea {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def create_repo(
        self,
        name: str,
        *,
        org: str = ORG,
        collaborators: dict[str, str] | None = None,
        default_branch: str = "main",
    ) -> str:
        """Create ``org/name`` (empty) and add collaborators (default: rm1, rm2, dev1 write)."""
        if collaborators is None:
            collaborators = {u.name: "write" for u in (self.rm1, self.rm2, self.dev1)}
        with self.api() as c:
            r = c.post(
                f"/orgs/{org}/repos",
                json={
                    "name": name,
                    "default_branch": default_branch,
                    "private": False,
                    "auto_init": False,
                },
            )
            _check(r)
            for user, permission in collaborators.items():
                _check(
                    c.put(
                        f"/repos/{org}/{name}/collaborators/{user}", json={"permission": permission}
                    )
                )
        return f"{org}/{name}"

    def push_tree(
        self,
        directory: str | os.PathLike[str],
        *,
        branch: str | None = None,
        message: str = "Initial layout",
        user: GiteaUser | str | None = None,
        repo: str | None = None,
    ) -> str:
        """Commit ``directory``'s content as the whole tree of ``branch`` and push it.

        The branch is created (from nothing) if it does not exist; otherwise the commit goes on
        top of it and replaces its content. Returns the new commit SHA.
        """
        src = Path(directory)
        if not src.is_dir():
            raise NotADirectoryError(src)
        u = self.admin if user is None else (self.users[user] if isinstance(user, str) else user)
        branch = branch or self.default_branch
        url = self.clone_url_for(u, repo)
        with tempfile.TemporaryDirectory(prefix="gitea-push-") as tmp:
            wt = Path(tmp) / "wt"
            git(tmp, "clone", "--quiet", url, str(wt))
            has_branch = git(wt, "ls-remote", "--heads", "origin", branch).strip() != ""
            if has_branch:
                git(wt, "checkout", "--quiet", "-B", branch, f"origin/{branch}")
            else:
                git(wt, "checkout", "--quiet", "--orphan", branch)
            for child in wt.iterdir():
                if child.name == ".git":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            shutil.copytree(
                src, wt, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(".git")
            )
            git(wt, "add", "-A")
            git(
                wt,
                "-c",
                f"user.name={u.name}",
                "-c",
                f"user.email={u.email}",
                "commit",
                "--quiet",
                "--allow-empty",
                "-m",
                message,
            )
            git(wt, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
            sha = git(wt, "rev-parse", "HEAD").strip()
        self.wait_for_branch(branch, sha, repo=repo)
        return sha

    def wait_for_branch(
        self, branch: str, sha: str, *, repo: str | None = None, timeout_s: float = 30.0
    ) -> None:
        """Wait until Gitea has processed a push: ``branch`` of ``repo`` is at ``sha`` in the API.

        Gitea updates its database (branch table, the repository's "empty" flag) from a queue
        after the push returns; an API call made in between may see the old state (404, or a
        500 for the first push to an empty repository).
        """
        repo = repo or self.repo
        deadline = time.monotonic() + timeout_s
        last = ""
        with self.api() as c:
            while time.monotonic() < deadline:
                r = c.get(f"/repos/{repo}")
                if r.status_code == 200 and not r.json().get("empty", True):
                    b = c.get(f"/repos/{repo}/branches/{quote(branch, safe='/')}")
                    if b.status_code == 200 and b.json()["commit"]["id"] == sha:
                        return
                    last = f"branch: HTTP {b.status_code} {b.text[:200]}"
                else:
                    last = f"repo: HTTP {r.status_code} {r.text[:200]}"
                time.sleep(0.1)
        raise TimeoutError(f"{repo}@{branch} did not reach {sha} within {timeout_s} s ({last})")

    @staticmethod
    def git(cwd: str | os.PathLike[str], *args: str) -> str:
        """Run git non-interactively in ``cwd``; returns stdout, raises on failure."""
        return git(cwd, *args)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, deadline_s: float = STARTUP_DEADLINE_S) -> None:
        """(Re)start the server on the same port and data; returns once the API answers."""
        if self.running:
            return
        self._proc = _spawn(self.binary, self.config, self.workdir, self.log_path)
        self.version = _wait_ready(self._proc, self.url, self.log_path, deadline_s)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout_s``)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


# -- helpers ----------------------------------------------------------------------------------
def git(cwd: str | os.PathLike[str], *args: str) -> str:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": "true",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def _check(r: httpx.Response) -> httpx.Response:
    if r.is_error:
        raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}")
    return r


def _gitea_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITEA_")}
    # Gitea refuses to run as root without this (CI and dev machines here run as root).
    env["GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT"] = "true"
    return env


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<no log: {exc}>"


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the server was started in its own session: pgid == pid


def locate_gitea() -> Path:
    """The directory holding ``gitea`` + templates/options (built and cached on first use)."""
    override = os.environ.get("PROMOTE_GITEA_DIR")
    if override:
        d = Path(override)
        if not (d / "gitea").is_file():
            raise FileNotFoundError(f"PROMOTE_GITEA_DIR={override} has no gitea binary")
        return d
    proc = subprocess.run([str(ENSURE_GITEA)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{ENSURE_GITEA} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _write_config(path: Path, *, port: int, static_root: Path, workdir: Path) -> None:
    data = workdir / "data"
    ini = f"""\
APP_NAME = promote-test
RUN_USER = {getpass.getuser()}
RUN_MODE = prod
WORK_PATH = {workdir}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:{port}/
STATIC_ROOT_PATH = {static_root}
APP_DATA_PATH = {data}
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false

[database]
DB_TYPE = sqlite3
PATH = {data}/gitea.db
SQLITE_JOURNAL_MODE = WAL
LOG_SQL = false

[repository]
ROOT = {workdir}/repositories
DEFAULT_BRANCH = main
DEFAULT_PRIVATE = public

[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(32)}
INTERNAL_TOKEN = {secrets.token_hex(48)}
PASSWORD_COMPLEXITY = off
MIN_PASSWORD_LENGTH = 8
PASSWORD_CHECK_PWN = false

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false
ENABLE_NOTIFY_MAIL = false
DEFAULT_KEEP_EMAIL_PRIVATE = false
DEFAULT_ALLOW_CREATE_ORGANIZATION = true
NO_REPLY_ADDRESS = noreply.localhost

[mailer]
ENABLED = false

[lfs]
PATH = {data}/lfs

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[actions]
ENABLED = false

[packages]
ENABLED = false

[webhook]
ALLOWED_HOST_LIST = loopback,private

[cron.update_checker]
ENABLED = false

[oauth2]
ENABLED = false

[log]
MODE = console
LEVEL = Info
ROOT_PATH = {workdir}/log
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ini)


def _spawn(binary: Path, config: Path, workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(binary), "--config", str(config), "--work-path", str(workdir), "web"],
            cwd=workdir,
            env=_gitea_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, deadline_s: float) -> str:
    deadline = time.monotonic() + deadline_s
    last_error = "no attempt"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"gitea exited with {proc.returncode} during startup; log tail:\n"
                    f"{_tail(log_path, 60)}"
                )
            try:
                r = client.get(f"{url}/api/v1/version")
                if r.status_code == 200:
                    return str(r.json()["version"])
                last_error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.2)
    _signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=10)
    raise RuntimeError(
        f"gitea did not answer {url}/api/v1/version within {deadline_s:.0f} s "
        f"(last: {last_error}); log tail:\n{_tail(log_path, 60)}"
    )


_TOKEN_RE = re.compile(r"Access token was successfully created\.\.\. (\S+)")


def _create_user(binary: Path, config: Path, workdir: Path, name: str, *, admin: bool) -> GiteaUser:
    password = f"pw-{secrets.token_hex(10)}"
    email = f"{name}@example.com"
    args = [
        str(binary),
        "--config",
        str(config),
        "--work-path",
        str(workdir),
        "admin",
        "user",
        "create",
        "--username",
        name,
        "--password",
        password,
        "--email",
        email,
        "--must-change-password=false",
        "--access-token",
        "--access-token-name",
        "promote-tests",
        "--access-token-scopes",
        "all",
    ]
    if admin:
        args.append("--admin")
    proc = subprocess.run(
        args, env=_gitea_env(), capture_output=True, text=True, timeout=120, check=False
    )
    m = _TOKEN_RE.search(proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(
            f"gitea admin user create {name} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return GiteaUser(name=name, password=password, email=email, token=m.group(1), admin=admin)


def start_gitea(workdir: Path, static_dir: Path | None = None) -> GiteaServer:
    """Start and provision a Gitea in ``workdir`` (must be empty or absent). Caller stops it."""
    static_dir = static_dir or locate_gitea()
    binary = static_dir / "gitea"
    workdir.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    config = workdir / "custom" / "conf" / "app.ini"
    _write_config(config, port=port, static_root=static_dir, workdir=workdir)
    log_path = workdir / "gitea.log"
    url = f"http://127.0.0.1:{port}"

    proc = _spawn(binary, config, workdir, log_path)
    try:
        version = _wait_ready(proc, url, log_path, STARTUP_DEADLINE_S)
        admin = _create_user(binary, config, workdir, "promote-admin", admin=True)
        rm1, rm2, dev1 = (
            _create_user(binary, config, workdir, n, admin=False) for n in ("rm1", "rm2", "dev1")
        )
        server = GiteaServer(
            url=url,
            port=port,
            version=version,
            binary=binary,
            static_root=static_dir,
            workdir=workdir,
            config=config,
            log_path=log_path,
            admin=admin,
            rm1=rm1,
            rm2=rm2,
            dev1=dev1,
            _proc=proc,
        )
        with server.api() as c:
            _check(c.post("/orgs", json={"username": ORG, "visibility": "public"}))
        server.create_repo(REPO)
    except BaseException:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        raise
    return server


@pytest.fixture(scope="session")
def gitea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GiteaServer]:
    """A provisioned, running Gitea for the whole session (see the module docstring)."""
    workdir = tmp_path_factory.mktemp("gitea")
    try:
        server = start_gitea(workdir)
    except Exception as exc:
        pytest.fail(f"could not start Gitea: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
