"""The Git side of promote: fetch, resolve, read, export, build commits, push, log.

Owns one outside system, Git, driven through GitPython (imported on first use: it costs
~80 ms, and ``promote --version`` must not pay it). Commands and object reads run in
:class:`~promote.git.process.GitProcess`; trees are edited by :mod:`promote.git.trees` (only
the trees on changed paths are rewritten, file modes kept); commits by GitPython's
``Commit.create_from_tree``, or ``git commit-tree -S`` when signed (git runs gpg). The user's
checkout, index and branches are never touched; only remote-tracking refs move when we fetch.
Pushes take an expected old value (``--force-with-lease=ref:sha``): a compare-and-swap.

Errors: :class:`~promote.errors.GitUnavailable` (the remote cannot be reached, or git did not
answer in time: retryable), :class:`~promote.errors.PushRejected` (a ref moved under us:
rebase and retry) or :class:`~promote.errors.GitError`. GitPython's exceptions never leave.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from promote.errors import GitError, NotFound, PushRejected, RemoteBranchMissing
from promote.git import archive, commitlog, gitpython, process, trees, values

log = logging.getLogger(__name__)

# The values this adapter takes and returns, under the names callers use (git_repo.Identity).
Identity = values.Identity
CommitInfo = values.CommitInfo
RefUpdate = values.RefUpdate
MUST_NOT_EXIST = values.MUST_NOT_EXIST
FILE_MODE = values.FILE_MODE
EXECUTABLE_MODE = values.EXECUTABLE_MODE
SYMLINK_MODE = values.SYMLINK_MODE

_MISSING_REF = re.compile(r"couldn't find remote ref (\S+)")


class Repo:
    """One Git repository (a working clone or a bare mirror)."""

    def __init__(self, path: Path, git_dir: Path, *, timeout_s: float = 600.0) -> None:
        """Use :meth:`open` (or ``mirror.open_mirror``); ``path`` is where git commands run;
        a command that runs longer than ``timeout_s`` (a hung network) is GitUnavailable."""
        self._path = path
        self._git_dir = git_dir
        self._proc = process.GitProcess(path, timeout_s=timeout_s)
        self.signing_key: str | None = None  # signs commit()s but records ($PROMOTE_SIGNING_KEY)

    @classmethod
    def open(cls, path: Path | str) -> Repo:
        """The repository ``path`` is in (its top folder or any folder or file below it)."""
        start = Path(path).absolute()
        start = start.parent if start.is_file() else start
        if start.is_dir():
            args = ("rev-parse", "--absolute-git-dir", "--is-inside-work-tree", "--show-cdup")
            probe = cls(start, start)  # runs git in ``start``, which finds the repository
            status, out, err = probe._proc.run(*args, what=f"git rev-parse in {path}", ok=(0, 128))
            lines = values.text(out).split("\n")
            if status == 0 and len(lines) >= 3:
                git_dir = Path(lines[0])
                top = (start.resolve() / lines[2]).resolve() if lines[1] == "true" else git_dir
                return cls(top, git_dir)
            if "not a git repository" not in err:
                raise gitpython.translate(err, b"", status, f"git rev-parse in {path}")
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

    def environment(self, extra: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
        """Add ``extra`` to the environment of this repository's git commands (only theirs:
        a forge's auth header never reaches kustomize, gpg or sops, nor the object reader)."""
        return self._proc.environment(extra)

    def close(self) -> None:
        """Stop the object reader (a later read starts a new one)."""
        self._proc.close()

    def init_bare(self) -> None:
        """Make this (empty) folder a bare repository."""
        self._proc.run("init", "--quiet", "--bare", str(self._path), what=f"git init {self._path}")

    def identity(self) -> Identity:
        """``git config user.name/user.email``, else the login name on this host."""
        out = self._proc.text(
            "config", "-z", "--get-regexp", r"^user\.(name|email)$", what="git config", ok=(0, 1)
        )
        found = dict(item.partition("\n")[::2] for item in out.split("\x00") if item)
        name = found.get("user.name") or os.environ.get("GIT_AUTHOR_NAME", "")
        email = found.get("user.email") or os.environ.get("GIT_AUTHOR_EMAIL", "")
        user = getpass.getuser()
        return Identity(name or user, email or f"{user}@{socket.gethostname()}")

    def remote_url(self, remote: str) -> str:
        key = f"remote.{remote}.url"
        url = self._proc.text("config", "--get", key, what=f"git config {key}", ok=(0, 1))
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
        elif (self._git_dir / "shallow").exists():
            args.append("--unshallow")  # a cache fetched shallowly before: complete its history
        try:
            self._proc.text(*args, remote, *refspecs, what=f"git fetch {remote}", retries=4)
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
        out = self._proc.text("ls-remote", remote, *patterns, what=f"git ls-remote {remote}")
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
        out = self._proc.text(*args, remote, *specs, what=f"git push {remote} ({refs})")
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
        found = self._proc.object(f"{ref}^{{commit}}")
        return found[0] if found and found[1] == "commit" else None

    def refs(self, prefix: str) -> dict[str, str]:
        """Local refs under ``prefix`` (e.g. ``refs/remotes/origin/promote/``) -> SHA."""
        out = self._proc.text(
            "for-each-ref", "--format=%(objectname) %(refname)", prefix, what="git for-each-ref"
        )
        return {ref: sha for sha, _, ref in (ln.partition(" ") for ln in out.splitlines()) if ref}

    def ref_messages(self, prefix: str) -> dict[str, str]:
        """Local refs under ``prefix`` -> the message of the commit each points at (one call)."""
        out = self._proc.text(
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
        self._proc.text("update-ref", ref, sha, what=f"git update-ref {ref}", retries=4)

    def read_file(self, rev: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``rev``, or None when the file does not exist there."""
        plain = bool(rev) and ":" not in rev and not any(c.isspace() for c in rev)  # "" = index
        found = self._proc.object(f"{rev}:{path}") if plain else None  # one lookup if there
        if found is not None and found[1] == "blob":
            return found[2]
        if self._proc.object(f"{rev}^{{commit}}") is None:
            raise NotFound(f"{self.path}: {rev!r} names no commit in this repository.")
        return None

    def export_tree(self, rev: str, dest: Path) -> Path:
        """Write the files of ``rev`` into ``dest`` (created), as ``git archive`` sees them."""
        data = self._proc.run("archive", "--format=tar", rev, what=f"git archive {rev}")[1]
        return archive.extract(data, dest)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        args = ("merge-base", "--is-ancestor", ancestor, descendant)
        return self._proc.run(*args, what="git merge-base", ok=(0, 1))[0] == 0

    def run_text(self, *args: str, what: str) -> str:
        """A read-only git command's output (``log``, ``ls-tree``: the history walks)."""
        return self._proc.text(*args, what=what)

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of ``a`` and ``b`` (None when they share no history)."""
        status, out, _ = self._proc.run("merge-base", a, b, what="git merge-base", ok=(0, 1))
        return (values.text(out).strip() or None) if status == 0 else None

    def changed_paths(self, old: str, new: str) -> list[str]:
        """Paths whose content or mode differs between commits ``old`` and ``new`` (a rename is
        its two paths): what a change touches, for its scope."""
        return [path for _, path in self.tree_changes(old, new)]

    def tree_changes(self, old: str, new: str) -> list[tuple[str, str]]:
        """``git diff --name-status --no-renames old new``, read in process: no git command."""
        return trees.diff_trees(self._tree(old), self._tree(new), read_tree=self._tree)

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
        return commitlog.read_log(
            self._proc, rev, paths=paths, first_parent=first_parent, max_count=max_count, walk=walk
        )

    def tag_signed(self, name: str, rev: str, *, message: str, key: str) -> str:
        return commitlog.write_signed_tag(self._proc, name, rev, message=message, key=key)

    def signed_payload(self, rev: str) -> tuple[bytes, bytes] | None:
        """(signature, signed data) of the commit ``rev``, or None when it is unsigned."""
        return commitlog.signed_payload(self._proc, rev, where=self.path)

    # --- writing objects --------------------------------------------------------------------

    def write_tree(
        self, files: Mapping[str, values.FileContent | None], *, base: str | None = None
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
            if isinstance(content, tuple) and content[0] not in values.BLOB_MODES:
                raise ValueError(f"write_tree: mode {content[0]:o} is not a file's mode")
        try:
            tree = self._tree(base) if base else b""
            return trees.edit_tree(
                tree, changes, read_tree=self._tree, store=self._proc.store
            ).hex()
        except ValueError as exc:  # GitPython refuses names git would not check out
            raise GitError(f"{self.path}: cannot write a tree with {sorted(files)}: {exc}") from exc

    def _tree(self, name: str) -> bytes:
        found = self._proc.object(f"{name}^{{tree}}")
        if found is None:
            raise NotFound(f"{self.path}: {name!r} names no commit in this repository.")
        return found[2]

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
        record: bool = False,
    ) -> str:
        """A commit of ``tree``; its dates carry this machine's UTC offset at ``when`` (now).

        ``sign_with`` (a GnuPG key id or fingerprint) signs it as ``git commit -S`` does:
        git runs ``gpg`` (or ``gpg.program``) with the GNUPGHOME of the process, or the one
        :meth:`environment` gives; else :attr:`signing_key` signs all but a ``record``.
        """
        sign_with = sign_with or (None if record else self.signing_key)
        moment = (when or datetime.now(UTC)).astimezone()  # the local zone's offset then
        text = message.rstrip("\n") + "\n"
        people = [values.clean_identity(author), values.clean_identity(committer or author)]
        if sign_with:
            return self._commit_signed(tree, parents, text, people, moment, sign_with)
        git = gitpython.load()
        db = self._proc.database()
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
        with self._proc.environment(env):
            out = self._proc.text(*args, what=f"git commit-tree -S{key}")
        return out.strip()

    def merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """Three-way merge without a worktree: (tree, conflicted paths).

        With conflicts the tree holds conflict markers in those paths; a caller that can
        resolve them writes the resolved files over it (``write_tree(files, base=tree)``).
        """
        args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs)
        status, out, err = self._proc.run(*args, what="git merge-tree", ok=(0, 1))
        lines = values.text(out).strip().splitlines()
        if status == 0:
            return (lines or [""])[0].strip(), []
        if lines:  # exit 1, conflicts: a tree with markers, then the paths
            return lines[0].strip(), [ln.strip() for ln in lines[1:] if ln.strip()]
        raise gitpython.translate(err, out, status, "git merge-tree")
