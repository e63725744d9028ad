"""GitPython, loaded on first use, and git's failures translated into our errors.

GitPython costs ~80 ms to import and runs ``git version`` when imported, so it is loaded only
when a command touches Git (``promote --version`` never does). :func:`translate` judges a
failed git command from its output only: the remote is unreachable (retryable), a ref moved
under us (a lost compare-and-swap), or anything else.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from typing import TYPE_CHECKING, Any

from promote import childproc
from promote.errors import GitError, GitUnavailable, PushRejected
from promote.git import values

if TYPE_CHECKING:
    import git

_UNREACHABLE = re.compile(
    r"could not read from remote|does not appear to be a git repository|unable to access|"
    r"connection refused|could not resolve host|connection timed out|no such device|"
    r"repository .* not found|host key verification failed|network is unreachable",
    re.IGNORECASE,
)
_RACE = re.compile(
    r"\[rejected\]|stale info|fetch first|non-fast-forward|cannot lock ref|failed to update ref|"
    r"atomic transaction failed|incorrect old value|unable to update local ref|"
    r"\.lock': file exists",
    re.IGNORECASE,
)


def translate(stderr: str, stdout: bytes, status: int, what: str) -> GitError:
    parts = (stderr.strip(), values.text(stdout).strip())
    detail = re.sub(r"\s+", " ", " ".join(part for part in parts if part))[:600]
    if _UNREACHABLE.search(detail):
        return GitUnavailable(
            f"{what}: the remote cannot be reached ({detail}).",
            hint="Check the remote URL (`git remote -v`), the network and your credentials.",
        )
    if _RACE.search(detail):
        return PushRejected(f"{what}: a ref moved while we updated it ({detail}).")
    return GitError(f"{what}: git failed ({detail or f'exit {status}'}).")


def load() -> Any:
    """The ``git`` module (GitPython), imported on first use; it runs ``git version`` once
    and fails to import when there is no git to run."""
    variable = "GIT_PYTHON_GIT_EXECUTABLE"  # GitPython's own override of `git` on PATH
    binary = os.environ.get(variable)
    if binary and (problem := childproc.unusable(binary)):
        raise GitError(
            f"cannot run git: {variable} names no program to run: {problem}.",
            hint=f"Set {variable} to the git binary, or unset it to use git from PATH.",
        )
    if not binary and shutil.which("git") is None:  # GitPython would print ~15 lines of help
        raise GitError(
            "cannot run git: not found on PATH.",
            hint="Install git (e.g. `apt-get install git`) and put it on PATH.",
        )
    try:
        import git
    except ImportError as exc:  # git runs but `git version` failed: keep its first line only
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GitError(
            f"cannot use Git ({first}).", hint="Check that `git version` runs in this shell."
        ) from exc
    return git


@functools.cache
def object_db_type() -> type[git.GitCmdObjectDB]:
    """GitPython's ``GitCmdObjectDB`` (reads through a persistent ``git cat-file``) storing
    new objects with gitdb's loose-object writer (the one it inherits) instead of a ``git
    hash-object`` process per object: ~3 ms each here, and a tree edit writes several."""
    load()  # an ImportError becomes GitError
    import git
    from gitdb.db.loose import LooseObjectDB

    class ObjectDB(git.GitCmdObjectDB):
        def store(self, istream: Any) -> Any:
            return LooseObjectDB.store(self, istream)

    return ObjectDB


def running(reader: git.Git) -> bool:
    """Whether ``reader``'s persistent ``cat-file --batch`` is started and still running."""
    batch = reader.cat_file_all
    return batch is not None and batch.proc is not None and batch.proc.poll() is None
