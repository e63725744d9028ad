"""One repository's git processes: the command wrapper and the persistent object reader.

GitPython's command wrapper runs each git command with ``GIT_TERMINAL_PROMPT=0``,
``LC_ALL=C``, a timeout, and what :meth:`GitProcess.environment` adds (GitPython's
``custom_environment``: this repository's commands only, never ``os.environ``). Object reads go
through GitPython's ``GitCmdObjectDB``: one persistent ``git cat-file --batch``, started on
first read, replaced once if it dies, and never given the environment's extras. New objects
are stored by gitdb's loose-object writer. Failures are translated by
:func:`promote.git.gitpython.translate`; nothing of GitPython leaves this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Container, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from promote.errors import GitError, GitUnavailable, PushRejected
from promote.git import gitpython, values

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_TIMED_OUT = "Timeout: the command"  # GitPython's stderr when kill_after_timeout fired


class GitProcess:
    """Git commands and object reads in one repository (``path``: where commands run)."""

    def __init__(self, path: Path, *, timeout_s: float = 600.0) -> None:
        self._path = path
        self._timeout_s = timeout_s
        # Guards the object reader (GitPython's is not threadsafe) and making the wrappers.
        self._lock = threading.Lock()
        self._cmd: git.Git | None = None  # commands; environment() adds to its environment
        self._db: git.Repo | None = None  # its own git.Git: reads never see environment()

    @contextlib.contextmanager
    def environment(self, extra: Mapping[str, str]) -> Iterator[None]:
        """Add ``extra`` to the environment of this repository's git commands (only theirs:
        a forge's auth header never reaches kustomize, gpg or sops, nor the object reader)."""
        with self.command().custom_environment(**extra):
            yield

    def close(self) -> None:
        """Stop the object reader (a later read starts a new one)."""
        with self._lock:
            if self._db is not None:
                self._db.git.clear_cache()

    # --- plumbing ---------------------------------------------------------------------------

    def command(self) -> git.Git:
        """GitPython's command wrapper for this repository, made on first use."""
        with self._lock:  # one wrapper, or environment() could change another than _run uses
            if self._cmd is None:
                cmd = gitpython.load().Git(self._path)
                cmd.update_environment(**_ENV)
                self._cmd = cmd
            return self._cmd

    def database(self) -> git.Repo:
        """GitPython's view of the repository, for building objects (made on first use)."""
        with self._lock:
            return self._database()

    def _database(self) -> git.Repo:
        """:meth:`database`, for a caller holding ``_lock``."""
        if self._db is None:
            git = gitpython.load()
            try:
                db = git.Repo(self._path, odbt=gitpython.object_db_type())
            except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
                raise GitError(f"{self._path}: not a Git repository ({exc}).") from exc
            db.git.update_environment(**_ENV)
            self._db = db
        return self._db

    def run(self, *args: str, what: str, ok: Container[int] = (0,)) -> tuple[int, bytes, str]:
        """``git args`` in this repository: (status, stdout, stderr); a status outside ``ok``
        raises (translated)."""
        cmd = self.command()
        git = gitpython.load()
        started = time.monotonic()
        try:
            status, out, err = cmd.execute(
                [cmd.GIT_PYTHON_GIT_EXECUTABLE or "git", *args],
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=self._timeout_s,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        except git.exc.GitCommandNotFound as exc:
            raise GitError(f"{what}: cannot run git ({exc}).", hint="Is git installed?") from exc
        log.debug("git %s took %.3fs", args[0], time.monotonic() - started)
        if status != 0 and err.startswith(_TIMED_OUT):
            raise GitUnavailable(f"{what}: no answer within {self._timeout_s:g}s.")
        if status not in ok:
            raise gitpython.translate(err, out, status, what)
        return status, out, err

    def text(self, *args: str, what: str, retries: int = 0, ok: Container[int] = (0,)) -> str:
        for attempt in range(retries + 1):
            try:
                return values.text(self.run(*args, what=what, ok=ok)[1])
            except PushRejected:
                # Local ref locks contend when several promote processes share one clone.
                if attempt < retries:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    def object(self, name: str) -> tuple[str, str, bytes] | None:
        """(sha, type, data) of the object ``name`` names (``rev^{commit}``, ``rev:path``), or
        None. A reader that died is replaced, once per request."""
        if not name or "\n" in name or name.endswith("\r"):
            return None  # cat-file reads one name a line
        with self._lock:
            reader = self._database().git
            for attempt in range(2):
                if not gitpython.running(reader):
                    reader.clear_cache()  # it exited (killed, crashed): start another
                try:
                    sha, kind, _, data = reader.get_object_data(name)
                    return values.text(cast(bytes, sha)), values.text(cast(bytes, kind)), data
                except ValueError as exc:
                    # cat-file answered "<name> missing" (or "ambiguous"): GitPython raises
                    # ValueError; an empty answer means the process went away.
                    if gitpython.running(reader) and "SHA is empty" not in str(exc):
                        return None
                    failure: Exception = exc
                except OSError as exc:
                    failure = exc
                reader.clear_cache()
                if attempt:
                    raise GitError(f"git cat-file {name}: git failed ({failure}).") from failure
        raise AssertionError("unreachable")

    def store(self, kind: bytes, data: bytes) -> bytes:
        """Write one object into the object database (GitPython's loose-object writer)."""
        from gitdb import IStream

        with self._lock:
            odb = self._database().odb
        return cast(bytes, odb.store(IStream(kind, len(data), io.BytesIO(data))).binsha)
