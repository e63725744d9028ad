"""The persistent sops decryptor (``sopsd``, built from tools/sopsd): one process, many documents.

Each ``sops decrypt`` process costs 15-21 ms of CPU to start (the Go runtime and every cloud SDK
sops links), while decrypting an age-encrypted Secret takes microseconds; 1,000 Secrets were
1,000 processes. ``sopsd`` is a small Go program on sops' own library
(``github.com/getsops/sops/v3/decrypt``: data key, values, MAC check) that answers requests on
stdin/stdout for as long as it lives. This module owns that process: it starts it with the key
environment it is given, sends documents as a batch written at once (``decrypt_many``; one
document is a batch of one; a lock: one batch at a time), restarts it when it died, stops it on
:meth:`Decryptor.close`, when collected and at exit.

What it must not do: explain failures (``sops.py`` does, from sops' exit code that sopsd sends);
put a document or plaintext anywhere but the pipe (never argv, a file, a log); read sopsd's
stderr (it is discarded: only sopsd's own start-up failures would be there).
Wire format (see tools/sopsd/main.go): ``"yaml json LEN\\n" + document`` in;
``"ok LEN\\n" + plaintext`` or ``"err CODE NOTES\\n"`` out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from promote import childproc
from promote.errors import SopsError

log = logging.getLogger(__name__)

_MAX_HEADER = 256  # "ok <len>\n" / "err <code> <notes>\n"
_READ_CHUNK = 1 << 16


class Refused(Exception):
    """sopsd could not decrypt a document: sops' exit code and notes from a closed set."""

    def __init__(self, code: int, notes: tuple[str, ...]) -> None:
        super().__init__(f"sops exit {code}")
        self.code = code
        self.notes = notes


class Stopped(Exception):
    """sopsd stopped (died, or closed its pipe) while answering; it will be started again."""


def cache_root(environ: Mapping[str, str]) -> Path:
    base = environ.get("PROMOTE_CACHE") or str(Path.home() / ".cache" / "promote")
    return Path(base) / "sopsd"


def find_sopsd(environ: Mapping[str, str] | None = None) -> Path | None:
    """The sopsd binary: ``$PROMOTE_SOPSD`` (``off`` disables it), else the newest build that
    ``tools/ensure-sopsd`` cached; None when there is none (promote then runs ``sops decrypt``
    once per document)."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("PROMOTE_SOPSD", "")
    if explicit.lower() in ("off", "0", "no", "false"):
        return None
    if explicit:
        problem = childproc.unusable(explicit)
        if problem:
            raise SopsError(
                f"PROMOTE_SOPSD names no program to run: {problem}.",
                hint="Set PROMOTE_SOPSD to the sopsd binary (`tools/ensure-sopsd` prints its "
                "folder), to `off` to decrypt with one sops process per Secret, or unset it.",
            )
        return Path(explicit)
    builds = [p for p in cache_root(environ).glob("*/sopsd") if os.access(p, os.X_OK)]
    return max(builds, key=lambda p: p.stat().st_mtime) if builds else None


class Decryptor:
    """One sopsd process for one key environment, started on first use. Thread safe."""

    def __init__(self, binary: Path, *, env: Mapping[str, str], timeout_s: float = 30) -> None:
        self.binary = binary
        self._env = dict(env)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        # The running process, also held by a finalizer that stops it when this object is
        # collected and at interpreter exit (the finalizer must not hold ``self``).
        self._held: list[subprocess.Popen[bytes]] = []
        weakref.finalize(self, _end_all, self._held)
        self.starts = 0  # how many processes this decryptor has started (a restart adds one)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def decrypt(self, document: bytes, *, input_format: str = "yaml") -> bytes:
        """Plaintext (JSON) of ``document``; raises :class:`Refused` when sops would fail,
        :class:`childproc.Exceeded` over the time or memory budget, :class:`childproc.NotStarted`
        when sopsd cannot run, SopsError when it stops twice on the same document."""
        answer = self.decrypt_many([document], input_format=input_format)[0]
        if isinstance(answer, Refused):
            raise answer
        return answer

    def decrypt_many(
        self, documents: Sequence[bytes], *, input_format: str = "yaml"
    ) -> list[bytes | Refused]:
        """Plaintext (or :class:`Refused`) of each document, in order.

        All requests are written at once, from a thread of their own, and the answers read as
        they come (sopsd answers in order, one request after the other): sopsd never waits
        for this process between two documents, so a caller whose other threads hold the GIL
        (the agent validates a render meanwhile) does not slow it down, as one round trip per
        document did. The same budget per document, restart and errors as :meth:`decrypt`;
        when one of those is raised, nothing of the batch is returned."""
        answers: list[bytes | Refused] = []
        with self._lock:
            stopped_at = -1
            while len(answers) < len(documents):
                try:
                    self._exchange_many(documents[len(answers) :], input_format, answers)
                except Stopped:
                    self._stop()
                    if stopped_at == len(answers):
                        raise SopsError(
                            "the sops decryptor (sopsd) stopped twice while decrypting the "
                            "same document."
                        ) from None
                    stopped_at = len(answers)
                    log.warning("sopsd stopped; starting it again")
        return answers

    def close(self) -> None:
        """Stop the process (closing its stdin ends it); a later decrypt starts a new one."""
        with self._lock:
            self._stop()

    # --- the process -----------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        limits = self._limits()
        try:
            proc = subprocess.Popen(
                [str(self.binary)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=childproc.go_env(self._env, limits),
                cwd="/",
            )
        except OSError as exc:
            reason = childproc.unusable(self.binary) or f"{self.binary} cannot be started ({exc})"
            raise childproc.NotStarted(reason) from None
        self._proc, self._buffer = proc, b""
        self._held[:] = [proc]
        self.starts += 1
        log.debug("sopsd started (pid %d)", proc.pid)
        return proc

    def _stop(self) -> None:
        proc, self._proc, self._buffer = self._proc, None, b""
        self._held.clear()
        if proc is not None:
            _end(proc)

    def _limits(self) -> childproc.Limits:
        return childproc.Limits.from_env(os.environ, timeout_s=self._timeout_s)

    def _exchange_many(
        self, documents: Sequence[bytes], input_format: str, answers: list[bytes | Refused]
    ) -> None:
        """Send ``documents``, appending each answer to ``answers`` as it is read."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else None
        proc = proc or self._start()
        writer = threading.Thread(
            target=_write_all, args=(proc, documents, input_format), name="sopsd-requests"
        )
        writer.start()
        answered = 0
        try:
            for _ in documents:
                try:
                    answers.append(self._answer(proc, time.monotonic()))
                except Refused as exc:
                    answers.append(exc)
                answered += 1
        finally:
            if answered < len(documents):  # stopped by an error: the answers still due
                self._stop()  # must not reach the next request (this ends the writer too)
            writer.join()

    def _answer(self, proc: subprocess.Popen[bytes], started: float) -> bytes:
        """Read one answer: plaintext, or raise Refused (or a protocol error)."""
        header = self._read_until_newline(proc, started).decode("ascii", "replace").split()
        if len(header) == 2 and header[0] == "ok" and header[1].isdigit():
            return self._read_exactly(proc, int(header[1]), started)
        if len(header) == 3 and header[0] == "err" and header[1].isdigit():
            notes = () if header[2] == "-" else tuple(header[2].split(","))
            raise Refused(int(header[1]), notes)
        self._stop()  # out of step with the protocol: nothing it says next can be trusted
        raise SopsError("the sops decryptor (sopsd) answered outside its protocol.")

    def _fill(self, proc: subprocess.Popen[bytes], started: float) -> None:
        """Read what is there into the buffer, within the time and memory budget."""
        assert proc.stdout is not None
        limits = self._limits()
        fd = proc.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], limits.poll_s)
            if ready:
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    raise Stopped()
                self._buffer += chunk
                return
            over = _over_budget(proc.pid, limits, started)
            if over:
                peak = childproc.rss_mb(proc.pid)
                self._stop()
                raise childproc.Exceeded(over, limits, peak)

    def _read_until_newline(self, proc: subprocess.Popen[bytes], started: float) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEADER:
                self._stop()
                raise SopsError("the sops decryptor (sopsd) answered outside its protocol.")
            self._fill(proc, started)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _read_exactly(self, proc: subprocess.Popen[bytes], size: int, started: float) -> bytes:
        while len(self._buffer) < size:
            self._fill(proc, started)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _write_all(
    proc: subprocess.Popen[bytes], documents: Sequence[bytes], input_format: str
) -> None:
    """Write every request; a closed pipe ends it quietly (the reader reports why)."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ValueError, OSError):
        for document in documents:
            proc.stdin.write(f"{input_format} json {len(document)}\n".encode() + document)
        proc.stdin.flush()


def _over_budget(pid: int, limits: childproc.Limits, started: float) -> str | None:
    if time.monotonic() - started > limits.timeout_s:
        return "time"
    if childproc.rss_mb(pid) > limits.max_rss_mb:
        return "memory"
    return None


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Close stdin (sopsd exits at end of input), then make sure it is gone."""
    with contextlib.suppress(OSError, ValueError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(OSError, ValueError):
        if proc.stdout is not None:
            proc.stdout.close()


def _end_all(held: list[subprocess.Popen[bytes]]) -> None:
    for proc in held:
        _end(proc)
    held.clear()


__all__ = ["Decryptor", "Refused", "Stopped", "find_sopsd"]
