"""Run a child process within a memory and a time budget (issue 14: input that tries to hurt).

Owns how promote's adapters run the binaries that read repository input (kustomize, sops, git,
tar): argv list, explicit environment, stdin/stdout, and two bounds that hold whatever the
input is:

- **time**: the child is killed after ``timeout_s``;
- **memory**: a watchdog reads the child's resident set size (``/proc/PID/status`` VmRSS)
  every ``poll_s`` and kills it above ``max_rss_mb``. An address-space limit (``RLIMIT_AS``)
  is not used: Go binaries reserve large virtual ranges at start-up and fail under one. Go
  children also get ``GOMEMLIMIT`` at half the budget, so their collector works hard before
  the watchdog has to act (a user's GOMEMLIMIT wins).

A 9-level YAML alias bomb made kustomize reach 6.7 GB in 30 s; under the default budget it is
stopped at 1 GiB within a fraction of a second. The caller turns :class:`Exceeded` into its
own error class, naming what it ran; nothing here logs the child's output (it may be
plaintext for sops). A child that cannot be started at all (no such file, a folder, not
executable) raises :class:`NotStarted`, whose text says why in words; :func:`unusable` checks a
binary the same way before anything runs, so a ``PROMOTE_<TOOL>`` path is judged when it is read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_MAX_RSS_MB = 1024  # kustomize renders a 100-app overlay in < 100 MiB
DEFAULT_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Limits:
    """A child's budget: seconds of wall time and MiB of resident memory."""

    timeout_s: float = 120.0
    max_rss_mb: int = DEFAULT_MAX_RSS_MB
    poll_s: float = DEFAULT_POLL_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, timeout_s: float) -> Limits:
        """``PROMOTE_CHILD_MAX_RSS_MB`` raises or lowers the memory budget."""
        raw = environ.get("PROMOTE_CHILD_MAX_RSS_MB", "")
        return cls(
            timeout_s=timeout_s, max_rss_mb=int(raw) if raw.isdigit() else DEFAULT_MAX_RSS_MB
        )


class Exceeded(Exception):
    """The child went over its budget and was killed; ``what`` is "memory" or "time"."""

    def __init__(self, what: str, limits: Limits, peak_mb: int) -> None:
        if what == "memory":
            text = f"used more than {limits.max_rss_mb} MiB of memory"
        else:
            text = f"did not finish within {limits.timeout_s:.0f}s"
        super().__init__(text)
        self.what = what
        self.peak_mb = peak_mb


class NotStarted(Exception):
    """The binary could not be started; the text says why ("/x/kustomize does not exist")."""


def unusable(binary: str | os.PathLike[str]) -> str | None:
    """Why ``binary`` cannot be run, in words, or None when it looks runnable.

    A bare name (``git``) is looked up on PATH, as ``exec`` would."""
    text = os.fspath(binary)
    if os.sep not in text:
        return None if shutil.which(text) else f"{text} is not found on PATH"
    path = Path(text)
    if not path.exists():
        return f"{text} does not exist"
    if path.is_dir():
        return f"{text} is a folder, not a program"
    if not os.access(path, os.X_OK):
        return f"{text} is not executable (chmod +x it)"
    return None


def _not_started(argv: Sequence[str], exc: OSError) -> NotStarted:
    reason = unusable(argv[0]) or f"{argv[0]} cannot be started ({exc.strerror or exc})"
    return NotStarted(reason)


def go_env(environ: Mapping[str, str], limits: Limits) -> dict[str, str]:
    """``environ`` plus GOMEMLIMIT at half the memory budget, unless the user set one."""
    return {"GOMEMLIMIT": f"{max(limits.max_rss_mb // 2, 64)}MiB", **environ}


def rss_mb(pid: int) -> int:
    """Resident memory of ``pid`` in MiB (0 when unknown, e.g. the process has exited)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def run(
    argv: Sequence[str],
    *,
    limits: Limits,
    env: Mapping[str, str],
    input: bytes | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion within ``limits``; raise :class:`Exceeded` if it goes over.

    Threads feed stdin and drain stdout and stderr (a child blocked on a full pipe never
    finishes), while this thread checks memory and time every ``poll_s``. (``communicate``
    with a timeout cannot be resumed with input on Python 3.11: the rest is never written.)
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
        )
    except OSError as exc:  # ENOENT, EACCES, ENOEXEC: the program, not its input
        raise _not_started(argv, exc) from exc
    out: dict[str, bytes] = {}
    threads = [
        threading.Thread(target=_drain, args=(proc.stdout, out, "out"), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, out, "err"), daemon=True),
    ]
    if input is not None:
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True))
    for thread in threads:
        thread.start()
    peak = 0
    try:
        while True:
            left = limits.timeout_s - (time.monotonic() - started)
            try:
                proc.wait(timeout=max(min(limits.poll_s, left), 0.001))
                break
            except subprocess.TimeoutExpired:
                pass
            peak = max(peak, rss_mb(proc.pid))
            if peak > limits.max_rss_mb:
                raise Exceeded("memory", limits, peak)
            if time.monotonic() - started >= limits.timeout_s:
                raise Exceeded("time", limits, peak)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for thread in threads:
            thread.join(timeout=5)
    return subprocess.CompletedProcess(
        list(argv), proc.returncode, out.get("out", b""), out.get("err", b"")
    )


def _drain(pipe: IO[bytes] | None, out: dict[str, bytes], key: str) -> None:
    if pipe is not None:
        with pipe:
            out[key] = pipe.read()


def _feed(pipe: IO[bytes] | None, data: bytes) -> None:
    if pipe is None:
        return
    # the child may exit without reading all of it
    with contextlib.suppress(BrokenPipeError, OSError), pipe:
        pipe.write(data)
