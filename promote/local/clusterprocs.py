"""The local cluster's processes: start each in its own session, stop it by PID, and make
sure attached ones die with us.

Owns: spawning a server with its log file, SIGTERM-then-SIGKILL of a process group, telling
whether a PID is still ours (``/proc``, not a reused PID), free ports on 127.0.0.1, and the
at-exit and signal hooks that stop tracked clusters. Must not: know which servers a cluster
runs, their arguments, or the state file (:mod:`promote.local.controlplane` owns those).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    """What :func:`track` stops at exit: a cluster that owns its processes."""

    def stop(self) -> None: ...


_tracked: set[Stoppable] = set()
_tracked_lock = threading.Lock()
_hooked = False


def track(cluster: Stoppable) -> None:
    """Stop ``cluster`` at interpreter exit; the first call also makes SIGTERM/SIGHUP exit."""
    global _hooked
    with _tracked_lock:
        _tracked.add(cluster)
        first, _hooked = not _hooked, True
    if first:
        atexit.register(_stop_tracked)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(signum) is signal.SIG_DFL:  # never replace someone's handler
                    signal.signal(signum, _exit_on_signal)


def untrack(cluster: Stoppable) -> None:
    with _tracked_lock:
        _tracked.discard(cluster)


def _stop_tracked() -> None:
    for cluster in list(_tracked):
        cluster.stop()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds `with` blocks and runs atexit, so servers stop


def spawn(argv: list[str], log_path: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    # Own session: stop() kills the group, and a Ctrl-C at the terminal does not race our
    # orderly shutdown. Attached servers also get SIGKILL when we die without cleaning up
    # (prctl PR_SET_PDEATHSIG=1), resolved here because the child must not import after fork.
    die_with_parent = None
    if not detach:
        with contextlib.suppress(OSError, AttributeError):
            die_with_parent = functools.partial(ctypes.CDLL(None).prctl, 1, signal.SIGKILL)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def terminate(pid: int, proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout_s``; reap it if it is our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            break
    else:
        log.warning("process %d did not exit after SIGKILL", pid)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited


def owned(pid: int, directory: Path) -> bool:
    """Is ``pid`` alive and one of our servers for ``directory`` (not a reused PID)?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return alive(pid) and any(f"{directory}{os.sep}" in arg for arg in argv)


def free_ports(count: int) -> list[int]:
    # All sockets stay open until each has a port, so the kernel hands out distinct ones.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
