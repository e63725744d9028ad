"""The Git side of promote (GitPython): fetch, resolve, read, export, build commits, push, log.

Owns one outside system: git. Commits are built straight in the object database (blobs, trees
and commits written with GitPython's gitdb, no index and no worktree), so the user's checkout,
index and branches are never touched; only remote-tracking refs move when we fetch. Pushes
take an expected old value (``--force-with-lease=ref:sha``), which makes every ref update a
compare-and-swap that the remote enforces under its ref lock.

Errors: ``GitCommandError`` and friends become :class:`~promote.errors.GitUnavailable` (the
remote cannot be reached: retryable), :class:`~promote.errors.PushRejected` (a ref moved under
us: rebase and retry) or :class:`~promote.errors.GitError`. Nothing above this module sees a
GitPython exception or object.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import git
import gitdb.exc
from git.objects.fun import tree_entries_from_data
from gitdb import IStream

from promote import archive
from promote.errors import GitError, GitUnavailable, NotFound, PushRejected

log = logging.getLogger(__name__)

MUST_NOT_EXIST = ""  # RefUpdate.expect: the ref must not exist yet (create-only)
_TREE_MODE = 0o40000
_BLOB_MODE = 0o100644
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


def _translate(exc: git.GitCommandError, what: str) -> GitError:
    detail = " ".join(
        part.strip() for part in (str(exc.stderr or ""), str(exc.stdout or "")) if part.strip()
    )
    detail = re.sub(r"\s+", " ", detail.replace("stderr:", "").replace("stdout:", ""))[:600]
    if _UNREACHABLE.search(detail):
        return GitUnavailable(
            f"{what}: the remote cannot be reached ({detail.strip(chr(39))}).",
            hint="Check the remote URL (`git remote -v`), the network and your credentials.",
        )
    if _RACE.search(detail):
        return PushRejected(f"{what}: a ref moved while we updated it ({detail}).")
    return GitError(f"{what}: git failed ({detail or f'exit {exc.status}'}).")


class Repo:
    """One Git repository (a working clone or a bare mirror)."""

    def __init__(self, repo: git.Repo) -> None:
        self._repo = repo
        self._repo.git.update_environment(GIT_TERMINAL_PROMPT="0", LC_ALL="C")

    @classmethod
    def open(cls, path: Path | str) -> Repo:
        try:
            return cls(git.Repo(path, search_parent_directories=True))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise GitError(
                f"{path}: not inside a Git repository; run promote in your clone of the GitOps "
                "repository (or pass -C DIR)."
            ) from exc

    @property
    def path(self) -> Path:
        return Path(self._repo.working_tree_dir or self._repo.git_dir)

    @property
    def git_dir(self) -> Path:
        return Path(self._repo.git_dir)

    @contextlib.contextmanager
    def environment(self, extra: Mapping[str, str]) -> Iterator[None]:
        """Add ``extra`` to the environment of this repository's git commands (only theirs:
        a forge's auth header never reaches kustomize, gpg or sops)."""
        with self._repo.git.custom_environment(**extra):
            yield

    def close(self) -> None:
        self._repo.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _git(self, *args: str, what: str, retries: int = 0) -> str:
        for attempt in range(retries + 1):
            started = time.monotonic()
            try:
                out = self._repo.git.execute(
                    ["git", *args], with_extended_output=False, strip_newline_in_stdout=False
                )
                log.debug("git %s took %.3fs", args[0], time.monotonic() - started)
                return str(out)
            except git.GitCommandError as exc:
                err = _translate(exc, what)
                # Local ref locks contend when several promote processes share one clone.
                if isinstance(err, PushRejected) and attempt < retries:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise err from exc
        raise AssertionError("unreachable")

    def identity(self) -> Identity:
        """``git config user.name/user.email``, else the login name on this host."""
        reader = self._repo.config_reader()
        name = str(reader.get_value("user", "name", "") or os.environ.get("GIT_AUTHOR_NAME", ""))
        email = str(reader.get_value("user", "email", "") or os.environ.get("GIT_AUTHOR_EMAIL", ""))
        user = getpass.getuser()
        return Identity(name or user, email or f"{user}@{socket.gethostname()}")

    def remote_url(self, remote: str) -> str:
        try:
            return str(self._repo.remote(remote).url)
        except ValueError as exc:
            raise GitError(
                f"{self.path}: no Git remote named {remote!r}; add it with `git remote add "
                f"{remote} URL` or set `remote:` in promote.yaml."
            ) from exc

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
        try:
            return str(self._repo.commit(ref).hexsha)
        except (gitdb.exc.BadName, gitdb.exc.BadObject, ValueError, IndexError, KeyError):
            return None

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
        try:
            obj = self._repo.commit(rev).tree / path
        except KeyError:
            return None
        except (gitdb.exc.BadName, gitdb.exc.BadObject, ValueError) as exc:
            raise NotFound(f"{self.path}: {rev!r} names no commit in this repository.") from exc
        if obj.type != "blob":
            return None
        return bytes(obj.data_stream.read())

    def export_tree(self, rev: str, dest: Path) -> Path:
        """Write the files of ``rev`` into ``dest`` (created), as ``git archive`` sees them."""
        data = self._repo.git.execute(
            ["git", "archive", "--format=tar", rev], stdout_as_string=False
        )
        return archive.extract(bytes(data), dest)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self._repo.git.execute(["git", "merge-base", "--is-ancestor", ancestor, descendant])
            return True
        except git.GitCommandError as exc:
            if exc.status == 1:
                return False
            raise _translate(exc, "git merge-base") from exc

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

    def _store(self, kind: bytes, data: bytes) -> bytes:
        return bytes(self._repo.odb.store(IStream(kind, len(data), io.BytesIO(data))).binsha)

    def write_tree(self, files: Mapping[str, bytes | None], *, base: str | None = None) -> str:
        """A tree: ``base``'s tree (a commit or tree, or empty) with ``files`` set or deleted.

        Keys are slash-separated paths; a None value deletes the file. Only the trees on the
        changed paths are rewritten, everything else is shared with ``base``.
        """
        root = None
        if base is not None:
            obj = self._repo.rev_parse(base)
            root = bytes((obj.tree if obj.type == "commit" else obj).binsha)
        return self._edit_tree(root, {tuple(p.split("/")): v for p, v in files.items()}).hex()

    def _edit_tree(
        self, binsha: bytes | None, changes: Mapping[tuple[str, ...], bytes | None]
    ) -> bytes:
        entries: dict[str, tuple[int, bytes]] = {}
        if binsha is not None:
            raw = self._repo.odb.stream(binsha).read()
            entries = {name: (mode, sha) for sha, mode, name in tree_entries_from_data(raw)}
        nested: dict[str, dict[tuple[str, ...], bytes | None]] = {}
        for parts, content in changes.items():
            if len(parts) == 1:
                if content is None:
                    entries.pop(parts[0], None)
                else:
                    entries[parts[0]] = (_BLOB_MODE, self._store(b"blob", content))
            else:
                nested.setdefault(parts[0], {})[parts[1:]] = content
        for name, sub in nested.items():
            current = entries.get(name)
            sub_base = current[1] if current and current[0] == _TREE_MODE else None
            sha = self._edit_tree(sub_base, sub)
            if sha == _EMPTY_TREE:
                entries.pop(name, None)
            else:
                entries[name] = (_TREE_MODE, sha)

        def order(name: str) -> bytes:  # git sorts a folder as if its name ended in "/"
            return name.encode() + (b"/" if entries[name][0] == _TREE_MODE else b"")

        data = b"".join(
            b"%o %s\x00%s" % (entries[n][0], n.encode(), entries[n][1])
            for n in sorted(entries, key=order)
        )
        return self._store(b"tree", data)

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
        return self._store(b"commit", body.encode()).hex()

    def merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """Three-way merge without a worktree: (tree, conflicted paths).

        With conflicts the tree holds conflict markers in those paths; a caller that can
        resolve them writes the resolved files over it (``write_tree(files, base=tree)``).
        """
        try:
            out = self._repo.git.execute(
                ["git", "merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs]
            )
            return str(out).split("\n", 1)[0].strip(), []
        except git.GitCommandError as exc:
            lines = str(exc.stdout or "").replace("stdout:", "").strip(" '\n").splitlines()
            if exc.status == 1 and lines:  # conflicts: a tree with markers, then the paths
                return lines[0].strip(), [ln.strip() for ln in lines[1:] if ln.strip()]
            raise _translate(exc, "git merge-tree") from exc


_EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")


def mirror(
    url: str, cache_dir: Path, *, branches: Sequence[str] = ("main",), depth: int | None = 1
) -> Repo:
    """A bare, shallow (``depth``) mirror of ``url``'s ``branches`` in ``cache_dir``, fetched now.

    The reconcile agent uses this: ``mirror(url, cache).resolve("refs/heads/main")`` and
    ``export_tree(sha, dest)``. The folder name is derived from the URL, so one cache holds
    many remotes and a second call only fetches what is new.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    path = cache_dir / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git"
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True)
        try:
            git.Repo.init(path, bare=True)
        except git.GitCommandError as exc:
            raise _translate(exc, f"git init {path}") from exc
    repo = Repo(git.Repo(path))
    repo.fetch(url, [f"+refs/heads/{b}:refs/heads/{b}" for b in branches], depth=depth)
    return repo
