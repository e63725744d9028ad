"""The Git side of promote: fetch, resolve, read, export, build commits, push, log.

Owns one outside system: the ``git`` binary, run as subprocesses (no Python Git library: the
one we used cost ~85 ms of every start) with ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C`` and what
:meth:`Repo.environment` adds. Object reads (resolving names, files at a revision, trees) go
through one persistent ``git cat-file --batch`` per :class:`Repo`, started on first use.
Commits are built straight in the object database (blobs, trees and commits hashed here and
stored by ``git unpack-objects`` as one small pack; no index, no worktree), so the user's
checkout, index and branches are never touched; only remote-tracking refs move when we fetch.
Pushes take an expected old value (``--force-with-lease=ref:sha``), which makes every ref
update a compare-and-swap that the remote enforces under its ref lock.

Errors: a failing git command becomes :class:`~promote.errors.GitUnavailable` (the remote
cannot be reached: retryable), :class:`~promote.errors.PushRejected` (a ref moved under us:
rebase and retry) or :class:`~promote.errors.GitError`, judged from git's output only.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from promote import childproc
from promote.errors import GitError, GitUnavailable, NotFound, PushRejected, RemoteBranchMissing
from promote.git import archive, objects

log = logging.getLogger(__name__)

MUST_NOT_EXIST = ""  # RefUpdate.expect: the ref must not exist yet (create-only)
_TREE_MODE = 0o40000
_BLOB_MODE = 0o100644
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_UNREACHABLE = re.compile(
    r"could not read from remote|does not appear to be a git repository|unable to access|"
    r"connection refused|could not resolve host|connection timed out|no such device|"
    r"repository .* not found|host key verification failed|network is unreachable",
    re.IGNORECASE,
)
_MISSING_REF = re.compile(r"couldn't find remote ref (\S+)")
_RACE = re.compile(
    r"\[rejected\]|stale info|fetch first|non-fast-forward|cannot lock ref|failed to update ref|"
    r"atomic transaction failed|incorrect old value|unable to update local ref|"
    r"\.lock': file exists",
    re.IGNORECASE,
)
_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*)$")
_LOG_FORMAT = "%H%x00%P%x00%T%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B%x1e"


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


def _translate(stderr: bytes, stdout: bytes, status: int, what: str) -> GitError:
    detail = " ".join(objects.text(part).strip() for part in (stderr, stdout) if part.strip())
    detail = re.sub(r"\s+", " ", detail)[:600]
    if _UNREACHABLE.search(detail):
        return GitUnavailable(
            f"{what}: the remote cannot be reached ({detail}).",
            hint="Check the remote URL (`git remote -v`), the network and your credentials.",
        )
    if _RACE.search(detail):
        return PushRejected(f"{what}: a ref moved while we updated it ({detail}).")
    return GitError(f"{what}: git failed ({detail or f'exit {status}'}).")


class Repo:
    """One Git repository (a working clone or a bare mirror)."""

    def __init__(self, path: Path, git_dir: Path, *, timeout_s: float = 600.0) -> None:
        """Use :meth:`open` (or :func:`open_mirror`); ``path`` is where git commands run; a
        command that runs longer than ``timeout_s`` (a hung network) is GitUnavailable."""
        self._path = path
        self._git_dir = git_dir
        self._timeout_s = timeout_s
        self._extra: dict[str, str] = {}
        # Not the extras: reads are local, and the reader lives as long as the Repo.
        self._objects = objects.ObjectReader(path, {**os.environ, **_ENV})

    @classmethod
    def open(cls, path: Path | str) -> Repo:
        """The repository ``path`` is in (its top folder or any folder or file below it)."""
        start = Path(path).absolute()
        start = start.parent if start.is_file() else start
        if start.is_dir():
            args = ("rev-parse", "--absolute-git-dir", "--is-inside-work-tree", "--show-cdup")
            probe = cls(start, start)  # runs git in ``start``, which finds the repository
            proc = probe._run(*args, what=f"git rev-parse in {path}", ok=(0, 128))
            lines = objects.text(proc.stdout).split("\n")
            if proc.returncode == 0 and len(lines) >= 3:
                git_dir = Path(lines[0])
                top = (start.resolve() / lines[2]).resolve() if lines[1] == "true" else git_dir
                return cls(top, git_dir)
            if b"not a git repository" not in proc.stderr:
                raise _translate(proc.stderr, b"", proc.returncode, f"git rev-parse in {path}")
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
        saved = self._extra
        self._extra = {**saved, **extra}
        try:
            yield
        finally:
            self._extra = saved

    def close(self) -> None:
        """Stop the object reader (a later read starts a new one)."""
        self._objects.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _run(
        self, *args: str, what: str, ok: Container[int] = (0,), input: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        """``git args`` in this repository; an exit status outside ``ok`` raises (translated)."""
        started = time.monotonic()
        env = {**os.environ, **_ENV, **self._extra}
        limits = childproc.Limits.from_env(os.environ, timeout_s=self._timeout_s)
        try:
            proc = childproc.run(
                ["git", *args], cwd=self._path, env=env, input=input, limits=limits
            )
        except childproc.Exceeded as exc:
            if exc.what == "time":
                raise GitUnavailable(f"{what}: no answer within {self._timeout_s:.0f}s.") from exc
            raise GitError(
                f"{what}: git was stopped: it {exc} (a repository far larger than a GitOps "
                "repository should be?).",
                hint="PROMOTE_CHILD_MAX_RSS_MB raises the memory budget.",
            ) from exc
        except OSError as exc:
            raise GitError(f"{what}: cannot run git ({exc}).", hint="Is git installed?") from exc
        log.debug("git %s took %.3fs", args[0], time.monotonic() - started)
        if proc.returncode not in ok:
            raise _translate(proc.stderr, proc.stdout, proc.returncode, what)
        return proc

    def _git(self, *args: str, what: str, retries: int = 0, ok: Container[int] = (0,)) -> str:
        for attempt in range(retries + 1):
            try:
                return objects.text(self._run(*args, what=what, ok=ok).stdout)
            except PushRejected:
                # Local ref locks contend when several promote processes share one clone.
                if attempt < retries:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

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
        try:
            self._git(*args, remote, *refspecs, what=f"git fetch {remote}", retries=4)
        except GitError as exc:
            missing = _MISSING_REF.search(exc.message)
            if missing is None:
                raise
            branch = missing.group(1).removeprefix("refs/heads/")
            raise RemoteBranchMissing(
                f"{remote} has no branch {branch!r} yet (nothing has been pushed to it).",
                branch=branch,
            ) from exc

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
        found = self._objects.get(f"{ref}^{{commit}}")
        return found[0] if found else None

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
        commit = self._objects.get(f"{rev}^{{commit}}")
        if commit is None:
            raise NotFound(f"{self.path}: {rev!r} names no commit in this repository.")
        found = self._objects.get(f"{commit[0]}:{path}")
        return found[2] if found and found[1] == "blob" else None

    def export_tree(self, rev: str, dest: Path) -> Path:
        """Write the files of ``rev`` into ``dest`` (created), as ``git archive`` sees them."""
        data = self._run("archive", "--format=tar", rev, what=f"git archive {rev}").stdout
        return archive.extract(data, dest)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        args = ("merge-base", "--is-ancestor", ancestor, descendant)
        return self._run(*args, what="git merge-base", ok=(0, 1)).returncode == 0

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

    # --- writing objects --------------------------------------------------------------------

    def _write(self, staged: objects.Objects) -> None:
        """Store the staged objects with one ``git unpack-objects`` (objects it has are skipped)."""
        self._run("unpack-objects", "-q", what="git unpack-objects", input=objects.pack(staged))

    def write_tree(self, files: Mapping[str, bytes | None], *, base: str | None = None) -> str:
        """A tree: ``base``'s tree (a commit or tree, or empty) with ``files`` set or deleted.

        Keys are slash-separated paths; a None value deletes the file. Only the trees on the
        changed paths are rewritten, everything else is shared with ``base``.
        """
        staged: objects.Objects = {}
        changes = {tuple(p.split("/")): v for p, v in files.items()}
        sha = self._edit_tree(self._tree(base) if base else b"", changes, staged)
        self._write(staged)
        return sha.hex()

    def _tree(self, name: str) -> bytes:
        found = self._objects.get(f"{name}^{{tree}}")
        if found is None:
            raise NotFound(f"{self.path}: {name!r} names no commit in this repository.")
        return found[2]

    def _edit_tree(
        self,
        tree: bytes,
        changes: Mapping[tuple[str, ...], bytes | None],
        staged: objects.Objects,
    ) -> bytes:
        """``tree`` (raw) with ``changes``; new blobs and trees go to ``staged``; its SHA."""
        entries = objects.tree_entries(tree)
        nested: dict[str, dict[tuple[str, ...], bytes | None]] = {}
        for parts, content in changes.items():
            if len(parts) == 1:
                if content is None:
                    entries.pop(parts[0], None)
                else:
                    entries[parts[0]] = (_BLOB_MODE, objects.stage(staged, b"blob", content))
            else:
                nested.setdefault(parts[0], {})[parts[1:]] = content
        for name, sub in nested.items():
            current = entries.get(name)
            below = self._tree(current[1].hex()) if current and current[0] == _TREE_MODE else b""
            sha = self._edit_tree(below, sub, staged)
            if sha == _EMPTY_TREE:
                entries.pop(name, None)
            else:
                entries[name] = (_TREE_MODE, sha)

        def order(name: str) -> bytes:  # git sorts a folder as if its name ended in "/"
            return objects.raw(name) + (b"/" if entries[name][0] == _TREE_MODE else b"")

        data = b"".join(
            b"%o %s\x00%s" % (entries[n][0], objects.raw(n), entries[n][1])
            for n in sorted(entries, key=order)
        )
        return objects.stage(staged, b"tree", data)

    def commit(
        self,
        tree: str,
        parents: Sequence[str],
        message: str,
        *,
        author: Identity,
        committer: Identity | None = None,
        when: datetime | None = None,
    ) -> str:
        stamp = int((when or datetime.now(UTC)).timestamp())

        def person(who: Identity) -> str:
            clean = [re.sub(r"[<>\n]", "", p).strip() for p in (who.name, who.email)]
            return f"{clean[0]} <{clean[1]}> {stamp} +0000"

        lines = [f"tree {tree}", *(f"parent {p}" for p in parents)]
        lines += [f"author {person(author)}", f"committer {person(committer or author)}"]
        body = "\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n"
        staged: objects.Objects = {}
        sha = objects.stage(staged, b"commit", body.encode())
        self._write(staged)
        return sha.hex()

    def merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """Three-way merge without a worktree: (tree, conflicted paths).

        With conflicts the tree holds conflict markers in those paths; a caller that can
        resolve them writes the resolved files over it (``write_tree(files, base=tree)``).
        """
        args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs)
        proc = self._run(*args, what="git merge-tree", ok=(0, 1))
        lines = objects.text(proc.stdout).strip().splitlines()
        if proc.returncode == 0:
            return (lines or [""])[0].strip(), []
        if lines:  # exit 1, conflicts: a tree with markers, then the paths
            return lines[0].strip(), [ln.strip() for ln in lines[1:] if ln.strip()]
        raise _translate(proc.stderr, proc.stdout, proc.returncode, "git merge-tree")


_EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")


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
