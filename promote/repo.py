"""The Git side of promote: fetch, resolve, read, export, build commits, push, log.

Owns one outside system, Git, driven through GitPython (imported on first use: it costs
~80 ms, and ``promote --version`` must not pay it). Commands run through GitPython's command
wrapper (``git.Git.execute``) with ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C``, a timeout, and
what :meth:`Repo.environment` adds (GitPython's ``custom_environment``: this repository's
commands only, never ``os.environ``). Object reads (resolving names, files at a revision,
trees) go through GitPython's ``GitCmdObjectDB``: one persistent ``git cat-file --batch`` per
:class:`Repo`, started on first read, never given the environment's extras. New blobs, trees
and commits go into its object database as loose objects (gitdb's writer; trees serialised by
GitPython's tree functions, commits by ``Commit.create_from_tree``; a signed commit is made by
``git commit-tree -S``, which runs gpg), so the user's checkout, index and branches are never
touched; only remote-tracking refs move when we fetch. Pushes take an expected old value
(``--force-with-lease=ref:sha``), which makes every ref update a compare-and-swap that the
remote enforces under its ref lock.

Errors: a failing git command becomes :class:`~promote.errors.GitUnavailable` (the remote
cannot be reached, or git did not answer in time: retryable), :class:`~promote.errors.PushRejected`
(a ref moved under us: rebase and retry) or :class:`~promote.errors.GitError`, judged from
git's output only. GitPython's own exceptions never leave this module.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import io
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from promote import archive
from promote.errors import GitError, GitUnavailable, NotFound, PushRejected

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

MUST_NOT_EXIST = ""  # RefUpdate.expect: the ref must not exist yet (create-only)
FILE_MODE = 0o100644
EXECUTABLE_MODE = 0o100755
SYMLINK_MODE = 0o120000
_TREE_MODE = 0o40000
_BLOB_MODES = (FILE_MODE, EXECUTABLE_MODE, SYMLINK_MODE)
_EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
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
_TIMED_OUT = "Timeout: the command"  # GitPython's stderr when kill_after_timeout fired
_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*)$")
_LOG_FORMAT = "%H%x00%P%x00%T%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B%x1e"

# What write_tree accepts for a file: its bytes (a new file is 100644, an existing one keeps
# its mode), or (mode, bytes) with a mode from _BLOB_MODES; None deletes the file.
FileContent = bytes | tuple[int, bytes]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _raw(name: str) -> bytes:
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


def _translate(stderr: str, stdout: bytes, status: int, what: str) -> GitError:
    parts = (stderr.strip(), _text(stdout).strip())
    detail = re.sub(r"\s+", " ", " ".join(part for part in parts if part))[:600]
    if _UNREACHABLE.search(detail):
        return GitUnavailable(
            f"{what}: the remote cannot be reached ({detail}).",
            hint="Check the remote URL (`git remote -v`), the network and your credentials.",
        )
    if _RACE.search(detail):
        return PushRejected(f"{what}: a ref moved while we updated it ({detail}).")
    return GitError(f"{what}: git failed ({detail or f'exit {status}'}).")


def _split_signature(commit: bytes) -> tuple[bytes, bytes] | None:
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


class Repo:
    """One Git repository (a working clone or a bare mirror)."""

    def __init__(self, path: Path, git_dir: Path, *, timeout_s: float = 600.0) -> None:
        """Use :meth:`open` (or :func:`open_mirror`); ``path`` is where git commands run; a
        command that runs longer than ``timeout_s`` (a hung network) is GitUnavailable."""
        self._path = path
        self._git_dir = git_dir
        self._timeout_s = timeout_s
        # Guards the object reader (GitPython's is not threadsafe) and making the wrappers.
        self._lock = threading.Lock()
        self._cmd: git.Git | None = None  # commands; environment() adds to its environment
        self._db: git.Repo | None = None  # its own git.Git: reads never see environment()

    @classmethod
    def open(cls, path: Path | str) -> Repo:
        """The repository ``path`` is in (its top folder or any folder or file below it)."""
        start = Path(path).absolute()
        start = start.parent if start.is_file() else start
        if start.is_dir():
            args = ("rev-parse", "--absolute-git-dir", "--is-inside-work-tree", "--show-cdup")
            probe = cls(start, start)  # runs git in ``start``, which finds the repository
            status, out, err = probe._run(*args, what=f"git rev-parse in {path}", ok=(0, 128))
            lines = _text(out).split("\n")
            if status == 0 and len(lines) >= 3:
                git_dir = Path(lines[0])
                top = (start.resolve() / lines[2]).resolve() if lines[1] == "true" else git_dir
                return cls(top, git_dir)
            if "not a git repository" not in err:
                raise _translate(err, b"", status, f"git rev-parse in {path}")
        raise GitError(
            f"{path}: not inside a Git repository; run promote in your clone of the GitOps "
            "repository (or pass -C DIR)."
        )

    @property
    def path(self) -> Path:
        """The work tree's top folder (the git dir for a bare repository)."""
        return self._path

    @property
    def git_dir(self) -> Path:
        return self._git_dir

    @contextlib.contextmanager
    def environment(self, extra: Mapping[str, str]) -> Iterator[None]:
        """Add ``extra`` to the environment of this repository's git commands (only theirs:
        a forge's auth header never reaches kustomize, gpg or sops, nor the object reader)."""
        with self._command().custom_environment(**extra):
            yield

    def close(self) -> None:
        """Stop the object reader (a later read starts a new one)."""
        with self._lock:
            if self._db is not None:
                self._db.git.clear_cache()

    # --- plumbing ---------------------------------------------------------------------------

    def _command(self) -> git.Git:
        """GitPython's command wrapper for this repository, made on first use."""
        with self._lock:  # one wrapper, or environment() could change another than _run uses
            if self._cmd is None:
                cmd = _gitpython().Git(self._path)
                cmd.update_environment(**_ENV)
                self._cmd = cmd
            return self._cmd

    def _database(self) -> git.Repo:
        """GitPython's view of the repository: its object database (call with ``_lock``)."""
        if self._db is None:
            git = _gitpython()
            try:
                db = git.Repo(self._path, odbt=_object_db_type())
            except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
                raise GitError(f"{self._path}: not a Git repository ({exc}).") from exc
            db.git.update_environment(**_ENV)
            self._db = db
        return self._db

    def _run(self, *args: str, what: str, ok: Container[int] = (0,)) -> tuple[int, bytes, str]:
        """``git args`` in this repository: (status, stdout, stderr); a status outside ``ok``
        raises (translated)."""
        cmd = self._command()
        git = _gitpython()
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
            raise _translate(err, out, status, what)
        return status, out, err

    def _git(self, *args: str, what: str, retries: int = 0, ok: Container[int] = (0,)) -> str:
        for attempt in range(retries + 1):
            try:
                return _text(self._run(*args, what=what, ok=ok)[1])
            except PushRejected:
                # Local ref locks contend when several promote processes share one clone.
                if attempt < retries:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    def _object(self, name: str) -> tuple[str, str, bytes] | None:
        """(sha, type, data) of the object ``name`` names (``rev^{commit}``, ``rev:path``), or
        None. A reader that died is replaced, once per request."""
        if not name or "\n" in name or name.endswith("\r"):
            return None  # cat-file reads one name a line
        with self._lock:
            reader = self._database().git
            for attempt in range(2):
                if not _running(reader):
                    reader.clear_cache()  # it exited (killed, crashed): start another
                try:
                    sha, kind, _, data = reader.get_object_data(name)
                    return _text(cast(bytes, sha)), _text(cast(bytes, kind)), data
                except ValueError as exc:
                    # cat-file answered "<name> missing" (or "ambiguous"): GitPython raises
                    # ValueError; an empty answer means the process went away.
                    if _running(reader) and "SHA is empty" not in str(exc):
                        return None
                    failure: Exception = exc
                except OSError as exc:
                    failure = exc
                reader.clear_cache()
                if attempt:
                    raise GitError(f"git cat-file {name}: git failed ({failure}).") from failure
        raise AssertionError("unreachable")

    def _store(self, kind: bytes, data: bytes) -> bytes:
        """Write one object into the object database (GitPython's loose-object writer)."""
        from gitdb import IStream

        with self._lock:
            odb = self._database().odb
        return cast(bytes, odb.store(IStream(kind, len(data), io.BytesIO(data))).binsha)

    def identity(self) -> Identity:
        """``git config user.name/user.email``, else the login name on this host."""
        out = self._git(
            "config", "-z", "--get-regexp", r"^user\.(name|email)$", what="git config", ok=(0, 1)
        )
        found = dict(item.partition("\n")[::2] for item in out.split("\x00") if item)
        name = found.get("user.name") or os.environ.get("GIT_AUTHOR_NAME", "")
        email = found.get("user.email") or os.environ.get("GIT_AUTHOR_EMAIL", "")
        user = getpass.getuser()
        return Identity(name or user, email or f"{user}@{socket.gethostname()}")

    def remote_url(self, remote: str) -> str:
        key = f"remote.{remote}.url"
        url = self._git("config", "--get", key, what=f"git config {key}", ok=(0, 1))
        if not url:
            raise GitError(
                f"{self.path}: no Git remote named {remote!r}; add it with `git remote add "
                f"{remote} URL` or set `remote:` in promote.yaml."
            )
        return url.rstrip("\n")

    # --- remote -----------------------------------------------------------------------------

    def fetch(
        self,
        remote: str,
        refspecs: Sequence[str],
        *,
        depth: int | None = None,
        prune: bool = False,
    ) -> None:
        """Fetch ``refspecs`` from ``remote`` (a name or a URL); never writes FETCH_HEAD.

        ``prune`` deletes local refs under the refspecs' destinations that the remote no
        longer has (only those: other remote-tracking refs are left alone).
        """
        args = ["fetch", "--quiet", "--no-write-fetch-head", "--no-auto-maintenance"]
        if prune:
            args.append("--prune")
        if depth:
            args.append(f"--depth={depth}")
        self._git(*args, remote, *refspecs, what=f"git fetch {remote}", retries=4)

    def ls_remote(self, remote: str, *patterns: str) -> dict[str, str]:
        out = self._git("ls-remote", remote, *patterns, what=f"git ls-remote {remote}")
        refs = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref:
                refs[ref] = sha
        return refs

    def push(self, remote: str, updates: Sequence[RefUpdate], *, atomic: bool = True) -> None:
        """Push all ``updates`` (atomically when several); a lost race raises PushRejected."""
        args = ["push", "--porcelain"]
        if atomic and len(updates) > 1:
            args.append("--atomic")
        specs = []
        for up in updates:
            if up.expect is not None:
                args.append(f"--force-with-lease={up.ref}:{up.expect}")
            specs.append(f"{up.new}:{up.ref}" if up.new else f":{up.ref}")
        refs = ", ".join(u.ref for u in updates)
        out = self._git(*args, remote, *specs, what=f"git push {remote} ({refs})")
        rejected = [line for line in out.splitlines() if line.startswith("!")]
        # An "up to date" create means the ref already existed: for create-only that is a loss.
        creates = {u.ref for u in updates if u.expect == MUST_NOT_EXIST}
        rejected += [
            line
            for line in out.splitlines()
            if line.startswith("=") and line.split("\t")[1].rsplit(":", 1)[-1] in creates
        ]
        if rejected:
            raise PushRejected(f"git push {remote}: rejected: {'; '.join(rejected)}")

    # --- reading ----------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The commit SHA ``ref`` names (branch, remote-tracking ref, tag, SHA prefix)."""
        found = self.try_resolve(ref)
        if found is None:
            raise NotFound(f"{self.path}: {ref!r} names no commit in this repository.")
        return found

    def try_resolve(self, ref: str) -> str | None:
        found = self._object(f"{ref}^{{commit}}")
        return found[0] if found and found[1] == "commit" else None

    def refs(self, prefix: str) -> dict[str, str]:
        """Local refs under ``prefix`` (e.g. ``refs/remotes/origin/promote/``) -> SHA."""
        out = self._git(
            "for-each-ref", "--format=%(objectname) %(refname)", prefix, what="git for-each-ref"
        )
        return {ref: sha for sha, _, ref in (ln.partition(" ") for ln in out.splitlines()) if ref}

    def ref_messages(self, prefix: str) -> dict[str, str]:
        """Local refs under ``prefix`` -> the message of the commit each points at (one call)."""
        out = self._git(
            "for-each-ref", "--format=%(refname)%00%(contents)%1e", prefix, what="git for-each-ref"
        )
        found = {}
        for item in out.split("\x1e"):
            ref, sep, message = item.lstrip("\n").partition("\x00")
            if sep:
                found[ref] = message
        return found

    def set_ref(self, ref: str, sha: str) -> None:
        """Move a local ref (our remote-tracking copies) after a successful push."""
        self._git("update-ref", ref, sha, what=f"git update-ref {ref}", retries=4)

    def read_file(self, rev: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``rev``, or None when the file does not exist there."""
        commit = self._object(f"{rev}^{{commit}}")
        if commit is None:
            raise NotFound(f"{self.path}: {rev!r} names no commit in this repository.")
        found = self._object(f"{commit[0]}:{path}")
        return found[2] if found and found[1] == "blob" else None

    def export_tree(self, rev: str, dest: Path) -> Path:
        """Write the files of ``rev`` into ``dest`` (created), as ``git archive`` sees them."""
        data = self._run("archive", "--format=tar", rev, what=f"git archive {rev}")[1]
        return archive.extract(data, dest)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        args = ("merge-base", "--is-ancestor", ancestor, descendant)
        return self._run(*args, what="git merge-base", ok=(0, 1))[0] == 0

    def commit_info(self, rev: str) -> CommitInfo:
        found = self.log(rev, max_count=1, walk=False)
        if not found:
            raise NotFound(f"{self.path}: {rev!r} names no commit in this repository.")
        return found[0]

    def log(
        self,
        rev: str,
        *,
        paths: Sequence[str] = (),
        first_parent: bool = False,
        max_count: int | None = None,
        walk: bool = True,
    ) -> list[CommitInfo]:
        """Commits reachable from ``rev``, newest first (optionally touching ``paths``)."""
        args = ["log", f"--format={_LOG_FORMAT}"]
        if not walk:
            args.append("--no-walk")
        if first_parent:
            args.append("--first-parent")
        if max_count:
            args.append(f"--max-count={max_count}")
        args += [rev, "--", *paths]
        out = self._git(*args, what=f"git log {rev}")
        commits = []
        for record in out.split("\x1e"):
            record = record.lstrip("\n")
            if not record:
                continue
            f = record.split("\x00")
            commits.append(
                CommitInfo(
                    sha=f[0],
                    parents=tuple(f[1].split()),
                    tree=f[2],
                    author=Identity(f[3], f[4]),
                    authored_at=datetime.fromtimestamp(int(f[5]), UTC),
                    committer=Identity(f[6], f[7]),
                    committed_at=datetime.fromtimestamp(int(f[8]), UTC),
                    message=f[9],
                )
            )
        return commits

    def signed_payload(self, rev: str) -> tuple[bytes, bytes] | None:
        """(signature, signed data) of the commit ``rev`` names, or None when it is unsigned.

        The signature is the commit's ``gpgsig`` header (ASCII-armoured); the data is the
        commit object without it: ``gpg --verify signature data`` checks what git does.
        """
        found = self._object(f"{rev}^{{commit}}")
        if found is None:
            raise NotFound(f"{self.path}: {rev!r} names no commit in this repository.")
        return _split_signature(found[2])

    # --- writing objects --------------------------------------------------------------------

    def write_tree(
        self, files: Mapping[str, FileContent | None], *, base: str | None = None
    ) -> str:
        """A tree: ``base``'s tree (a commit or tree, or empty) with ``files`` set or deleted.

        Keys are slash-separated paths; a None value deletes the file. A value is the file's
        bytes (a file that exists keeps its mode: executable, symlink; a new one is 100644)
        or ``(mode, bytes)`` (:data:`FILE_MODE`, :data:`EXECUTABLE_MODE`, :data:`SYMLINK_MODE`,
        whose bytes are the link's target). Only the trees on the changed paths are rewritten,
        everything else is shared with ``base``.
        """
        changes = {tuple(p.split("/")): v for p, v in files.items()}
        for content in changes.values():
            if isinstance(content, tuple) and content[0] not in _BLOB_MODES:
                raise ValueError(f"write_tree: mode {content[0]:o} is not a file's mode")
        try:
            return self._edit_tree(self._tree(base) if base else b"", changes).hex()
        except ValueError as exc:  # GitPython refuses names git would not check out
            raise GitError(f"{self.path}: cannot write a tree with {sorted(files)}: {exc}") from exc

    def _tree(self, name: str) -> bytes:
        found = self._object(f"{name}^{{tree}}")
        if found is None:
            raise NotFound(f"{self.path}: {name!r} names no commit in this repository.")
        return found[2]

    def _edit_tree(
        self, tree: bytes, changes: Mapping[tuple[str, ...], FileContent | None]
    ) -> bytes:
        """``tree`` (raw) with ``changes`` applied; new blobs and trees are stored; its SHA."""
        from git.objects.fun import tree_entries_from_data, tree_to_stream

        entries = {name: (mode, sha) for sha, mode, name in tree_entries_from_data(tree)}
        nested: dict[str, dict[tuple[str, ...], FileContent | None]] = {}
        for parts, content in changes.items():
            if len(parts) > 1:
                nested.setdefault(parts[0], {})[parts[1:]] = content
            elif content is None:
                entries.pop(parts[0], None)
            else:
                current = entries.get(parts[0])
                kept = current[0] if current and current[0] in _BLOB_MODES else FILE_MODE
                mode, data = content if isinstance(content, tuple) else (kept, content)
                entries[parts[0]] = (mode, self._store(b"blob", data))
        for name, sub in nested.items():
            current = entries.get(name)
            below = self._tree(current[1].hex()) if current and current[0] == _TREE_MODE else b""
            sha = self._edit_tree(below, sub)
            if sha == _EMPTY_TREE:
                entries.pop(name, None)
            else:
                entries[name] = (_TREE_MODE, sha)

        def order(name: str) -> bytes:  # git sorts a folder as if its name ended in "/"
            return _raw(name) + (b"/" if entries[name][0] == _TREE_MODE else b"")

        # Names go in as bytes, so a name that is not UTF-8 is written back unchanged.
        rows = [
            (entries[n][1], entries[n][0], cast(Any, _raw(n))) for n in sorted(entries, key=order)
        ]
        out = io.BytesIO()
        tree_to_stream(rows, out.write)
        return self._store(b"tree", out.getvalue())

    def commit(
        self,
        tree: str,
        parents: Sequence[str],
        message: str,
        *,
        author: Identity,
        committer: Identity | None = None,
        when: datetime | None = None,
        sign_with: str | None = None,
    ) -> str:
        """A commit of ``tree``; its dates carry this machine's UTC offset at ``when`` (now).

        ``sign_with`` (a GnuPG key id or fingerprint) signs it as ``git commit -S`` does:
        git runs ``gpg`` (or ``gpg.program``) with the GNUPGHOME of the process, or the one
        :meth:`environment` gives.
        """
        moment = (when or datetime.now(UTC)).astimezone()  # the local zone's offset then
        text = message.rstrip("\n") + "\n"
        people = [_clean(author), _clean(committer or author)]
        if sign_with:
            return self._commit_signed(tree, parents, text, people, moment, sign_with)
        git = _gitpython()
        with self._lock:
            db = self._database()
        try:
            parent_commits = [git.Commit(db, bytes.fromhex(p)) for p in parents]
            made = git.Commit.create_from_tree(
                db,
                git.Tree(db, bytes.fromhex(tree)),
                text,
                parent_commits=parent_commits,
                author=git.Actor(people[0].name, people[0].email),
                committer=git.Actor(people[1].name, people[1].email),
                author_date=moment,
                commit_date=moment,
            )
        except ValueError as exc:  # a tree or parent that is not a SHA
            raise GitError(f"{self.path}: cannot write a commit of {tree}: {exc}") from exc
        return made.hexsha

    def _commit_signed(
        self,
        tree: str,
        parents: Sequence[str],
        text: str,
        people: Sequence[Identity],
        moment: datetime,
        key: str,
    ) -> str:
        """``git commit-tree -S<key>``: git builds the payload and asks gpg to sign it."""
        date = f"{int(moment.timestamp())} {moment.strftime('%z')}"
        env = {
            "GIT_AUTHOR_NAME": people[0].name,
            "GIT_AUTHOR_EMAIL": people[0].email,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": people[1].name,
            "GIT_COMMITTER_EMAIL": people[1].email,
            "GIT_COMMITTER_DATE": date,
        }
        args = ["-c", "gpg.format=openpgp", "commit-tree", tree, f"-S{key}"]
        for parent in parents:
            args += ["-p", parent]
        # -m keeps the text as given and ends it with one line break, as commit() does.
        args += ["-m", text.rstrip("\n")]
        with self._command().custom_environment(**env):
            out = self._git(*args, what=f"git commit-tree -S{key}")
        return out.strip()

    def merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """Three-way merge without a worktree: (tree, conflicted paths).

        With conflicts the tree holds conflict markers in those paths; a caller that can
        resolve them writes the resolved files over it (``write_tree(files, base=tree)``).
        """
        args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs)
        status, out, err = self._run(*args, what="git merge-tree", ok=(0, 1))
        lines = _text(out).strip().splitlines()
        if status == 0:
            return (lines or [""])[0].strip(), []
        if lines:  # exit 1, conflicts: a tree with markers, then the paths
            return lines[0].strip(), [ln.strip() for ln in lines[1:] if ln.strip()]
        raise _translate(err, out, status, "git merge-tree")


def _gitpython() -> Any:
    """The ``git`` module (GitPython), imported on first use; it runs ``git version`` once
    and fails to import when there is no git to run."""
    try:
        import git
    except ImportError as exc:
        raise GitError(f"cannot use Git ({exc}).", hint="Is git installed and on PATH?") from exc
    return git


@functools.cache
def _object_db_type() -> type[git.GitCmdObjectDB]:
    """GitPython's ``GitCmdObjectDB`` (reads through a persistent ``git cat-file``) storing
    new objects with gitdb's loose-object writer (the one it inherits) instead of a ``git
    hash-object`` process per object: ~3 ms each here, and a tree edit writes several."""
    _gitpython()  # an ImportError becomes GitError
    import git
    from gitdb.db.loose import LooseObjectDB

    class ObjectDB(git.GitCmdObjectDB):
        def store(self, istream: Any) -> Any:
            return LooseObjectDB.store(self, istream)

    return ObjectDB


def _running(reader: git.Git) -> bool:
    """Whether ``reader``'s persistent ``cat-file --batch`` is started and still running."""
    batch = reader.cat_file_all
    return batch is not None and batch.proc is not None and batch.proc.poll() is None


def _clean(who: Identity) -> Identity:
    """Git drops ``<``, ``>`` and line breaks from a name or email; so do we (GitPython
    refuses them)."""
    name, email = (re.sub(r"[<>\n]", "", p).strip() for p in (who.name, who.email))
    return Identity(name, email)


def open_mirror(url: str, cache_dir: Path, *, timeout_s: float = 600.0) -> Repo:
    """The bare cache repository for ``url`` in ``cache_dir`` (created empty the first time).

    The reconcile agent fetches one branch into it shallowly and exports revisions from it.
    The folder name is derived from the URL, so one cache holds many remotes.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    path = (cache_dir / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git").absolute()
    repo = Repo(path, path, timeout_s=timeout_s)
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True)
        repo._run("init", "--quiet", "--bare", str(path), what=f"git init {path}")
    return repo


def mirror(
    url: str, cache_dir: Path, *, branches: Sequence[str] = ("main",), depth: int | None = 1
) -> Repo:
    """:func:`open_mirror`, with ``branches`` fetched now (``depth`` commits deep)."""
    repo = open_mirror(url, cache_dir)
    repo.fetch(url, [f"+refs/heads/{b}:refs/heads/{b}" for b in branches], depth=depth)
    return repo
