"""The demo's background processes: start them detached, record them, stop them by PID.

Owns the processes ``promote demo`` starts itself (the three agents and OpenBao), the state
file ``<dir>/demo-state.json`` that lets ``promote demo --stop`` find them after the demo has
exited (``--keep``), and the small waits the demo needs (a free port, an HTTP endpoint).

A recorded PID is only signalled when the process still has the start time we recorded, so a
PID reused by an unrelated process after a reboot is never killed. Each process runs in its
own session (process group), so stopping it also stops anything it started.

Must not: know the story (``demo.py``) or how the repository is built (``seed.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "demo-state.json"
_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Proc:
    """One process we started: enough to find it again from another process."""

    name: str  # "agent-prod", "openbao"
    pid: int
    started: str  # start time in clock ticks since boot (/proc/PID/stat field 22); "" if unknown
    log: str  # where its stdout and stderr go


@dataclass(slots=True)
class DemoState:
    """What a kept demo leaves behind, written to ``<dir>/demo-state.json``."""

    directory: str
    procs: list[Proc] = field(default_factory=list)
    cluster_dir: str | None = None
    gnupg_homes: list[str] = field(default_factory=list)
    extra_dirs: list[str] = field(default_factory=list)  # outside ``directory`` (gpg sockets)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemoState:
        procs = [Proc(**p) for p in data.get("procs", [])]
        known = {"directory", "cluster_dir", "gnupg_homes", "extra_dirs"}
        return cls(procs=procs, **{k: v for k, v in data.items() if k in known})


def write_state(state: DemoState) -> None:
    path = Path(state.directory) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_state(directory: Path) -> DemoState | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    return DemoState.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _state_letter(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split()[0]


def alive(proc: Proc) -> bool:
    """True while the recorded process runs (a zombie or a reused PID counts as gone)."""
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the PID
        return False
    if proc.started and _start_ticks(proc.pid) not in ("", proc.started):
        return False
    return _state_letter(proc.pid) != "Z"


class Processes:
    """The processes this demo run started; :meth:`stop_all` ends them, newest first."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self._popen: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> Proc:
        """Start ``argv`` in its own session, output to ``log_path``; it outlives us if kept."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        proc = Proc(name, popen.pid, _start_ticks(popen.pid), str(log_path))
        self.procs.append(proc)
        self._popen[popen.pid] = popen
        log.info("started %s (pid %d)", name, popen.pid)
        return proc

    def exited(self, proc: Proc) -> int | None:
        """The exit status of a process we started and that has ended, else None."""
        popen = self._popen.get(proc.pid)
        return popen.poll() if popen is not None else None

    def stop_all(self) -> None:
        stop_many([(p, self._popen.pop(p.pid, None)) for p in self.procs])
        self.procs.clear()


def _running(proc: Proc, popen: subprocess.Popen[bytes] | None) -> bool:
    if popen is not None:
        return popen.poll() is None  # poll() reaps it: no zombie left behind
    return alive(proc)


def stop_many(items: Sequence[tuple[Proc, subprocess.Popen[bytes] | None]]) -> None:
    """SIGTERM every process group at once, SIGKILL what is left after a grace period."""
    running = [(p, popen) for p, popen in items if _running(p, popen)]
    count, started = len(running), time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc, _ in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = [(p, popen) for p, popen in running if _running(p, popen)]
        if not running:
            if count:
                log.info("stopped %d process(es) in %.1fs", count, time.monotonic() - started)
            return
        for proc, _ in running:
            log.warning("%s (pid %d) ignored %s", proc.name, proc.pid, sig.name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: str | Path, lines: int = 15) -> str:
    """The last lines of a process log, for an error message (our logs never hold values)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
