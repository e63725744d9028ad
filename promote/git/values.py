"""The Git adapter's values: who, which commit, which ref update, which file modes (pure).

What :mod:`promote.git.repo` returns and accepts, apart from the class that does the I/O, so
callers and the pure helpers here never load GitPython.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

MUST_NOT_EXIST = ""  # RefUpdate.expect: the ref must not exist yet (create-only)
FILE_MODE = 0o100644
EXECUTABLE_MODE = 0o100755
SYMLINK_MODE = 0o120000
TREE_MODE = 0o40000
BLOB_MODES = (FILE_MODE, EXECUTABLE_MODE, SYMLINK_MODE)
EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")

# What write_tree accepts for a file: its bytes (a new file is 100644, an existing one keeps
# its mode), or (mode, bytes) with a mode from BLOB_MODES; None deletes the file.
FileContent = bytes | tuple[int, bytes]

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*)$")


def text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def raw(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    parents: tuple[str, ...]
    tree: str
    author: Identity
    authored_at: datetime
    committer: Identity
    committed_at: datetime
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def trailers(self) -> dict[str, str]:
        """``Key: value`` lines of the message's last paragraph (git's trailer block)."""
        paragraphs = [p for p in self.message.strip().split("\n\n") if p.strip()]
        if len(paragraphs) < 2:
            return {}
        found = [_TRAILER.match(line) for line in paragraphs[-1].splitlines()]
        if not all(found):
            return {}
        return {m.group(1): m.group(2).strip() for m in found if m}


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """Set ``ref`` on the remote to ``new`` (None deletes it).

    ``expect`` is the compare-and-swap guard: a SHA the ref must still point at,
    :data:`MUST_NOT_EXIST` for create-only, or None for an ordinary fast-forward-only push.
    """

    ref: str
    new: str | None
    expect: str | None = None


def split_signature(commit: bytes) -> tuple[bytes, bytes] | None:
    """(signature, signed payload) of a raw commit object, or None when it has no ``gpgsig``.

    The payload is the object without its ``gpgsig`` header (the header's first line and its
    continuation lines, which start with a space): what git hands gpg to verify.
    """
    head, sep, body = commit.partition(b"\n\n")
    signature: list[bytes] = []
    kept: list[bytes] = []
    inside = False
    for line in head.split(b"\n"):
        if line.startswith(b"gpgsig "):
            inside = True
            signature.append(line[len(b"gpgsig ") :])
        elif inside and line.startswith(b" "):
            signature.append(line[1:])
        else:
            inside = False
            kept.append(line)
    if not signature:
        return None
    return b"\n".join(signature) + b"\n", b"\n".join(kept) + sep + body


def clean_identity(who: Identity) -> Identity:
    """Git drops ``<``, ``>`` and line breaks from a name or email; so do we (GitPython
    refuses them)."""
    name, email = (re.sub(r"[<>\n]", "", p).strip() for p in (who.name, who.email))
    return Identity(name, email)
