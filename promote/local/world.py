"""The demo's world: its directory, the people in it, the ``promote`` CLI they run, the agents.

Owns the state one demo run builds up (paths, ports, PR numbers, the random secret values in
memory), running ``python -m promote ... -C clone`` as a given person (``PROMOTE_USER`` and
``GNUPGHOME`` of their own), starting each agent with only its own key in its process
environment, and the checks that read the cluster or an agent's ``/status``.

Must not: print (it tells a :class:`Narrator`), or decide the order of the story (``demo.py``).
Secret values stay in memory: they are piped to ``promote secrets set`` on stdin and compared
with what reached the cluster, never shown or written.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from promote.cluster import client
from promote.errors import PromoteError
from promote.local import controlplane, processes, seed
from promote.local.seed import DemoError

log = logging.getLogger(__name__)

ENVS = ("dev", "staging", "prod")
CLI_TIMEOUT_S = 180.0
SYNC_TIMEOUT_S = 120.0  # two busy cores: an agent's first pass can take a while
# Variables that carry key material or pick a repository, a user or a cluster: no child
# process inherits them from the caller; each gets exactly what its role needs.
_SCRUBBED = (
    "SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
    "SOPS_CONFIG", "SOPS_KEYSERVICE", "SOPS_PGP_FP", "VAULT_TOKEN", "VAULT_ADDR",
    "VAULT_SECRET_ID", "VAULT_SECRET_ID_FILE", "GNUPGHOME", "KUBECONFIG", "PROMOTE_REPO_DIR",
    "PROMOTE_USER", "PROMOTE_STATUS_FILE", "PROMOTE_CLUSTER_DIR", "PROMOTE_LOG_LEVEL",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str  # stable, for scripts: "merge-prod-refused"
    title: str  # what the narration said would happen
    ok: bool
    duration_s: float
    detail: str  # what was checked, or the error; never a secret value


class Narrator(Protocol):
    """Where the demo's story goes (the CLI prints it with rich)."""

    def begin(self, index: int, total: int, title: str) -> None: ...
    def say(self, text: str) -> None: ...
    def command(self, display: str, output: str) -> None: ...
    def end(self, result: StepResult) -> None: ...


@dataclass(frozen=True, slots=True)
class Actor:
    name: str  # PROMOTE_USER, and the name in keys/release-managers/ for approvers
    gnupghome: Path


@dataclass(frozen=True, slots=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.stdout)
        except ValueError as exc:
            raise DemoError(f"expected JSON from promote, got: {self.stdout[-300:]!r}") from exc
        return doc if isinstance(doc, dict) else {}


class World:
    """Everything one demo run has made so far; :meth:`teardown` removes it all."""

    def __init__(self, directory: Path, narrator: Narrator) -> None:
        self.dir = directory
        self.narrator = narrator
        self.remote = directory / "remote.git"
        self.clone = directory / "clone"
        self.private = directory / "keys-private"  # age identities: outside the clone
        self.cluster_dir = directory / "cluster"
        self.kubeconfig = self.cluster_dir / "kubeconfig"
        self.procs = processes.Processes()
        self.state = processes.DemoState(directory=str(directory))
        self.actors: dict[str, Actor] = {}
        self.namespaces: dict[str, str] = {}
        self.agents: dict[str, processes.Proc] = {}
        self.ports: dict[str, int] = {}
        self.cluster: client.Cluster | None = None
        self.cluster_pids: dict[str, int] = {}
        self.child_env: dict[str, str] = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.child_env.update(
            PROMOTE_CACHE=str(directory / "cache" / "cli"),  # nothing left in ~/.cache
            COLUMNS="110",
            PYTHONUNBUFFERED="1",
        )
        # In memory only: piped to `promote secrets set`, compared with the cluster's copy.
        self.passwords: dict[str, str] = {}
        self.vault_value = ""
        self.vault_tokens: dict[str, str] = {}

    # --- running promote as a person ---------------------------------------------------------

    def actor(self, name: str) -> Actor:
        return self.actors[name]

    def promote(
        self,
        *args: str,
        actor: str,
        stdin: bytes | None = None,
        expect: int = 0,
        show: bool = True,
        in_repo: bool = True,
    ) -> CliResult:
        """``python -m promote ARGS -C clone`` as ``actor``; DemoError unless exit ``expect``."""
        who = self.actor(actor)
        env = {
            **self.child_env,
            "PROMOTE_USER": who.name,
            "GNUPGHOME": str(who.gnupghome),
            "GIT_AUTHOR_NAME": who.name,
            "GIT_AUTHOR_EMAIL": f"{who.name}@example.com",
            "GIT_COMMITTER_NAME": who.name,
            "GIT_COMMITTER_EMAIL": f"{who.name}@example.com",
        }
        argv = [sys.executable, "-m", "promote", *args]
        if in_repo:  # every command but `cluster` works on the clone
            argv += ["-C", str(self.clone)]
        display = f"{who.name}$ promote {' '.join(shlex.quote(a) for a in args)}"
        try:
            proc = subprocess.run(
                argv,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                env=env,
                timeout=CLI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DemoError(f"`{display}` did not finish within {CLI_TIMEOUT_S:g}s") from exc
        result = CliResult(
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if show:  # with -o json the caller narrates what it read from the output
            text = "\n".join(t.rstrip() for t in (result.stdout, result.stderr) if t.strip())
            self.narrator.command(display, "" if "-o" in args else text)
        if result.code != expect:
            said = (result.stderr.strip() or result.stdout.strip())[-800:]
            raise DemoError(f"`{display}` exited {result.code}, expected {expect}: {said}")
        return result

    # --- agents ----------------------------------------------------------------------------

    def start_agent(
        self, env: str, *, extra_env: Mapping[str, str], trust_from: str
    ) -> processes.Proc:
        """``promote agent --env ENV --trust-from SHA`` with its own key (and nothing else) in
        its environment; trust starts at ``trust_from`` (the demo's first commit)."""
        port = processes.free_port()
        environ = {
            **self.child_env,
            # One Git cache per agent: three agents fetching into one cache would race.
            "PROMOTE_CACHE": str(self.dir / "cache" / f"agent-{env}"),
            "SOPS_AGE_KEY_FILE": str(self.private / f"{env}.agekey"),
            **extra_env,
        }
        argv = [sys.executable, "-m", "promote", "agent", "--env", env,
                "--kubeconfig", str(self.kubeconfig), "--listen", f"127.0.0.1:{port}",
                "--trust-from", trust_from, "-C", str(self.clone)]  # fmt: skip
        proc = self.procs.spawn(
            f"agent-{env}", argv, env=environ, log_path=self.dir / "logs" / f"agent-{env}.log"
        )
        self.agents[env], self.ports[env] = proc, port
        self.record()
        return proc

    def agent_status(self, env: str) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.ports[env]}/status", timeout=2)
        except httpx.HTTPError:
            return None  # not listening yet
        return response.json() if response.status_code == 200 else None

    def wait_synced(self, envs: tuple[str, ...], revision: str) -> float:
        """Poll each agent's ``/status`` until it reports ``revision`` Synced; seconds taken."""
        started = time.monotonic()
        pending = set(envs)
        last: dict[str, Any] = {}
        while pending and time.monotonic() - started < SYNC_TIMEOUT_S:
            for env in sorted(pending):
                proc = self.agents[env]
                if self.procs.exited(proc) is not None:
                    raise DemoError(
                        f"the {env} agent exited ({self.procs.exited(proc)}); its log "
                        f"{proc.log} ends:\n{processes.log_tail(proc.log)}"
                    )
                doc = self.agent_status(env)
                if doc is None:
                    continue
                last[env] = doc
                if doc.get("revision") == revision and doc.get("sync") == "Synced":
                    pending.discard(env)
            if pending:
                time.sleep(0.25)
        if pending:
            env = sorted(pending)[0]
            doc = last.get(env) or {}
            error = doc.get("last_error") or {}
            raise DemoError(
                f"the {env} agent did not report {revision[:12]} Synced within "
                f"{SYNC_TIMEOUT_S:g}s: it reports {str(doc.get('revision'))[:12]} "
                f"{doc.get('sync', 'no status')}"
                + (f", failed at {error.get('stage')}: {error.get('message')}" if error else "")
                + f"; log {self.agents[env].log} ends:\n{processes.log_tail(self.agents[env].log)}"
            )
        return time.monotonic() - started

    def check_key_isolation(self) -> None:
        """Each agent's process environment holds its own key only (read back from /proc)."""
        for env, proc in self.agents.items():
            try:
                raw = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                return  # not Linux: start_agent built each environment with one key
            environ = dict(v.split("=", 1) for v in raw.split("\0") if "=" in v)
            keys = {k for k in environ if k.startswith(("SOPS_", "VAULT_"))}
            wanted = {"SOPS_AGE_KEY_FILE"} | (
                {"VAULT_TOKEN"} if env in self.vault_tokens else set()
            )
            own = str(self.private / f"{env}.agekey")
            if keys != wanted or environ.get("SOPS_AGE_KEY_FILE") != own:
                raise DemoError(f"the {env} agent holds {sorted(keys)}, not only its own key.")

    # --- the cluster -----------------------------------------------------------------------

    def kube(self) -> client.Cluster:
        if self.cluster is None:
            self.cluster = client.Cluster(client.connect(kubeconfig=str(self.kubeconfig)))
        return self.cluster

    def deployment(self, env: str, name: str) -> dict[str, Any]:
        path = f"/apis/apps/v1/namespaces/{self.namespaces[env]}/deployments/{name}"
        found = self.kube().request("GET", path)
        if not isinstance(found, dict):
            raise DemoError(f"Deployment {self.namespaces[env]}/{name} is not in the cluster")
        return found

    def image(self, env: str, name: str) -> str:
        return str(self.deployment(env, name)["spec"]["template"]["spec"]["containers"][0]["image"])

    def secret_matches(self, env: str, name: str, key: str, expected: str) -> bool:
        """Whether the cluster's Secret holds ``expected`` (compared here, never shown)."""
        path = f"/api/v1/namespaces/{self.namespaces[env]}/secrets/{name}"
        found = self.kube().request("GET", path) or {}
        encoded = (found.get("data") or {}).get(key)
        if encoded is None:
            return False
        return hmac.compare_digest(base64.b64decode(encoded), expected.encode())

    def events(self, env: str, reason: str) -> list[dict[str, Any]]:
        doc = self.kube().request(
            "GET",
            f"/api/v1/namespaces/{self.namespaces[env]}/events",
            query=[("fieldSelector", f"reason={reason}")],
        )
        return list((doc or {}).get("items", []))

    # --- bookkeeping -----------------------------------------------------------------------

    def record(self) -> None:
        """Rewrite the state file, so `promote demo --stop` can clean up even after a crash."""
        self.state.procs = list(self.procs.procs)
        processes.write_state(self.state)

    def pids(self) -> dict[str, int]:
        return {**{p.name: p.pid for p in self.procs.procs}, **self.cluster_pids}


def wait_until(check: Callable[[], Any], *, timeout_s: float, step_s: float = 0.05) -> Any:
    """``check()``'s first truthy value, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step_s)
    return None


def teardown(state: processes.DemoState, procs: processes.Processes | None = None) -> list[str]:
    """Stop everything ``state`` records and delete its directories; what could not be done."""
    problems: list[str] = []
    if procs is not None:
        procs.stop_all()  # ours: stopped and reaped
    processes.stop_many([(p, None) for p in state.procs])  # stopped if still the same process
    for proc in state.procs:
        if processes.alive(proc):
            problems.append(f"{proc.name} (pid {proc.pid}) is still running")
    if state.cluster_dir:
        try:
            started = time.monotonic()
            controlplane.down(Path(state.cluster_dir))
            log.info("control plane stopped in %.1fs", time.monotonic() - started)
        except PromoteError as exc:  # teardown goes on and reports it
            problems.append(f"cluster down: {exc}")
    for home in state.gnupg_homes:
        seed.stop_gpg_agent(Path(home))
    for path in [state.directory, *state.extra_dirs]:
        # A gpg-agent told to exit may still be removing its sockets: try a few times.
        for _ in range(10):
            shutil.rmtree(path, ignore_errors=True)
            if not Path(path).exists():
                break
            time.sleep(0.2)
        else:
            problems.append(f"{path} could not be removed")
    return problems
