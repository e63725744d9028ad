"""Reading commits: ``git log`` into :class:`~promote.git.values.CommitInfo` records, and a
commit's (or an annotated tag's) signature apart from the data it signs.

Owns the log format and its parsing, so one ``git log`` process lists any number of commits.
Must not: write objects or refs, fetch, or verify a signature (gpg does that, elsewhere);
:class:`promote.git.repo.Repo` delegates its ``log`` and ``signed_payload`` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from promote.errors import NotFound
from promote.git import process, values

# Fields NUL-separated, records ended by RS: a message may hold any other character.
_LOG_FORMAT = "%H%x00%P%x00%T%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B%x1e"


def read_log(
    proc: process.GitProcess,
    rev: str,
    *,
    paths: Sequence[str] = (),
    first_parent: bool = False,
    max_count: int | None = None,
    walk: bool = True,
) -> list[values.CommitInfo]:
    """Commits reachable from ``rev``, newest first (optionally touching ``paths``)."""
    args = ["log", f"--format={_LOG_FORMAT}"]
    if not walk:
        args.append("--no-walk")
    if first_parent:
        args.append("--first-parent")
    if max_count:
        args.append(f"--max-count={max_count}")
    args += [rev, "--", *paths]
    return parse_log(proc.text(*args, what=f"git log {rev}"))


def parse_log(out: str) -> list[values.CommitInfo]:
    """The records of ``git log --format=`` :data:`_LOG_FORMAT` output, in its order."""
    commits = []
    for record in out.split("\x1e"):
        record = record.lstrip("\n")
        if not record:
            continue
        f = record.split("\x00")
        commits.append(
            values.CommitInfo(
                sha=f[0],
                parents=tuple(f[1].split()),
                tree=f[2],
                author=values.Identity(f[3], f[4]),
                authored_at=datetime.fromtimestamp(int(f[5]), UTC),
                committer=values.Identity(f[6], f[7]),
                committed_at=datetime.fromtimestamp(int(f[8]), UTC),
                message=f[9],
            )
        )
    return commits


def signed_payload(
    proc: process.GitProcess, rev: str, *, where: Path
) -> tuple[bytes, bytes] | None:
    """(signature, signed data) of the commit ``rev`` names, or None when it is unsigned.

    The signature is the commit's ``gpgsig`` header (ASCII-armoured); the data is the
    commit object without it: ``gpg --verify signature data`` checks what git does.
    """
    found = proc.object(f"{rev}^{{commit}}")
    if found is None:
        raise NotFound(f"{where}: {rev!r} names no commit in this repository.")
    return values.split_signature(found[2])


_TAG_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"


@dataclass(frozen=True, slots=True)
class TagInfo:
    """An annotated tag: its name, the commit it points at, and its signature (or None)."""

    name: str  # without refs/tags/
    target: str
    signature: bytes | None
    payload: bytes  # the tag object without its signature: what gpg verifies


def write_signed_tag(
    proc: process.GitProcess, name: str, rev: str, *, message: str, key: str
) -> str:
    """``git tag -s -u KEY NAME REV`` (git runs gpg with the process's GNUPGHOME), replacing
    a local tag of that name; returns the tag object's SHA."""
    args = ("-c", "gpg.format=openpgp", "tag", "-f", "-s", "-u", key, "-m", message, name, rev)
    proc.text(*args, what=f"git tag -s {name}")
    return proc.text("rev-parse", f"refs/tags/{name}", what="git rev-parse").strip()
