"""Git objects without a Git library: read them through ``git cat-file --batch``, hash new
ones as git does and pack them for ``git unpack-objects``.

``repo.py`` owns the ``git`` binary and uses these pieces: :class:`ObjectReader` keeps one
``cat-file`` process per repository (object reads happen many times per command: the local
forge reads two blobs per PR record), :func:`stage` hashes an object (SHA-1 repositories)
and :func:`pack` writes staged objects as a version 2 pack.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import weakref
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from subprocess import DEVNULL, PIPE

from promote.errors import GitError

_READER = ("git", "cat-file", "--batch")  # reads object names, one a line
# Its answer for an object it found: "<sha> <type> <size>\n", the data, "\n". For a name that
# names no object (or several) it answers "<name> missing" (or "<name> ambiguous").
_FOUND = re.compile(rb"([0-9a-f]{40,64}) (blob|tree|commit|tag) ([0-9]+)\n")
_TREE_ENTRY = re.compile(rb"([0-7]+) ([^\x00]*)\x00(.{20})", re.DOTALL)  # mode, name, SHA
_PACK_TYPE = {b"commit": 1, b"tree": 2, b"blob": 3}
Objects = dict[bytes, tuple[bytes, bytes]]  # objects to store: binary SHA -> (type, data)


def text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def raw(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


class ObjectReader:
    """One ``git cat-file --batch`` in ``cwd``, started on first use, shared by threads."""

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self._cwd, self._env = cwd, dict(env)
        self._lock = threading.Lock()  # guards the process and its pipes
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop: Callable[[], object] | None = None

    def get(self, name: str) -> tuple[str, str, bytes] | None:
        """(sha, type, data) of the object ``name`` names (``rev``, ``rev:path``), or None.

        One name a line (a name with a line break cannot be asked); a reader that died is
        replaced, once per request.
        """
        if not name or "\n" in name or name.endswith("\r"):
            return None
        with self._lock:
            for attempt in range(2):
                try:
                    return self._ask(raw(name) + b"\n")
                except (OSError, ValueError, EOFError) as exc:
                    self._close()
                    if attempt:
                        raise GitError(f"git cat-file {name}: git failed ({exc}).") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the process (a later read starts a new one)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._stop is not None:
            self._stop()  # a weakref.finalize: runs once, also if the reader is dropped
        self._proc = self._stop = None

    def _ask(self, request: bytes) -> tuple[str, str, bytes] | None:
        if self._proc is None or self._proc.poll() is not None:
            self._close()
            self._proc = subprocess.Popen(
                _READER, cwd=self._cwd, env=self._env, stdin=PIPE, stdout=PIPE, stderr=DEVNULL
            )
            self._stop = weakref.finalize(self, _stop, self._proc)
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(request)
        stdin.flush()
        header = stdout.readline()
        found = _FOUND.fullmatch(header)
        if found is None and header.endswith(b"\n"):
            return None  # "<name> missing" (or ambiguous)
        data = stdout.read(int(found[3]) + 1) if found else b""
        if found is None or len(data) != int(found[3]) + 1:
            raise EOFError("git cat-file stopped")
        return found[1].decode(), found[2].decode(), data[:-1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a cat-file process (EOF on its input ends it), killing it if it hangs."""
    try:
        proc.communicate(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def tree_entries(tree: bytes) -> dict[str, tuple[int, bytes]]:
    """A raw tree object's entries: name -> (mode, binary SHA)."""
    return {text(m[2]): (int(m[1], 8), m[3]) for m in _TREE_ENTRY.finditer(tree)}


def stage(staged: Objects, kind: bytes, data: bytes) -> bytes:
    """Hash an object as git does (SHA-1) and keep it in ``staged`` for :func:`pack`; its id."""
    digest = hashlib.sha1(b"%s %d\x00" % (kind, len(data)), usedforsecurity=False)
    digest.update(data)
    staged[digest.digest()] = (kind, data)
    return digest.digest()


def pack(staged: Objects) -> bytes:
    """A version 2 pack of ``staged``: a header, each object as its type and size (7 bits a
    byte) then its zlib stream, and a SHA-1 of it all."""
    parts = [b"PACK", (2).to_bytes(4, "big"), len(staged).to_bytes(4, "big")]
    for kind, data in staged.values():
        size, head = len(data) >> 4, bytearray()
        byte = _PACK_TYPE[kind] << 4 | len(data) & 0x0F
        while size:
            head.append(byte | 0x80)
            byte, size = size & 0x7F, size >> 7
        head.append(byte)
        parts += [bytes(head), zlib.compress(data)]
    body = b"".join(parts)
    return body + hashlib.sha1(body, usedforsecurity=False).digest()
