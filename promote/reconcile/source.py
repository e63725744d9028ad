"""Where an agent's desired state comes from: one branch of a Git remote.

A bare cache repository per remote (``mirror.open_mirror``, under ``$PROMOTE_AGENT_CACHE``),
``git fetch --depth 1`` of the branch (or, for an environment that verifies, its whole
history with the PR and trust records: ``refs/promote/prs/*``, ``refs/promote/trust/*``, and
the signed pin tags ``refs/tags/promote/pin/*``), and
an export of the tree at a revision into a folder for kustomize, all through ``promote.git``
(the one Git adapter). Overlays hold only ciphertext, so exporting them to disk is safe; decryption
happens later, in memory. A remote that cannot be reached is retryable (GitUnavailable); a
branch that does not exist is an error the status and a Warning Event name (the loop still
retries both, with backoff).
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from promote.errors import GitError
from promote.git import history, mirror
from promote.git import repo as git_repo

RECORD_PREFIXES = ("refs/promote/prs/", "refs/promote/trust/", "refs/tags/promote/pin/")
AHEAD_REF = "refs/promote-ahead/head"  # the last branch head fetched to render ahead


class GitSource:
    def __init__(
        self,
        url: str,
        *,
        branch: str,
        cache_root: Path,
        timeout_s: float = 60,
        history: bool = False,
    ) -> None:
        self.url = url
        self.branch = branch
        self.history = history  # fetch all of it and the records (verification needs them)
        self._cache_root = cache_root
        self._timeout_s = timeout_s
        self._repo: git_repo.Repo | None = None
        # Fetches into the one cache repository go one at a time (a pass's, a poll's, a
        # pre-render's): two at once race on its shallow file and refs.
        self._lock = threading.Lock()

    @property
    def cache_root(self) -> Path:
        return self._cache_root

    @property
    def repo(self) -> git_repo.Repo:
        if self._repo is None:
            self._repo = mirror.open_mirror(self.url, self._cache_root, timeout_s=self._timeout_s)
        return self._repo

    def fetch(self) -> str:
        """Fetch the branch (shallow unless ``history``) and return its commit SHA."""
        ref = f"refs/remotes/source/{self.branch}"
        specs = [f"+refs/heads/{self.branch}:{ref}"]
        if self.history:
            specs += [f"+{p}*:{p}*" for p in RECORD_PREFIXES]
        with self._lock:
            self.repo.fetch(self.url, specs, depth=None if self.history else 1, prune=self.history)
            return self.repo.resolve(ref)

    def fetch_ref(self, ref: str) -> str:
        """Fetch another branch's head (a PR's, to render it ahead) and return its SHA; the
        payload that named the branch is not trusted for the SHA."""
        if not ref.startswith("refs/heads/") or ".." in ref or ref.endswith("/"):
            raise GitError(f"{ref!r} is not a branch ref; only refs/heads/* are rendered ahead.")
        with self._lock:
            self.repo.fetch(self.url, [f"+{ref}:{AHEAD_REF}"], depth=None if self.history else 1)
            return self.repo.resolve(AHEAD_REF)

    def blobs(self, revision: str) -> dict[str, str]:
        """``path -> blob id`` of every file at ``revision`` (what the render cache compares)."""
        return history.tree_blobs(self.repo, revision)

    def export(self, revision: str, dest: Path) -> Path:
        """Write the tree at ``revision`` into ``dest`` (created)."""
        return self.repo.export_tree(revision, dest)


def default_url(repo_dir: Path, remote: str) -> str:
    """The URL of ``remote`` in a working clone, or the clone itself when it has none."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo_dir), "remote", "get-url", remote],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:  # no git on PATH: the same paragraph as every other git command
        raise GitError(
            "cannot run git: not found on PATH.",
            hint="Install git (e.g. `apt-get install git`) and put it on PATH.",
        ) from exc
    if proc.returncode == 0 and proc.stdout.strip():
        url = proc.stdout.strip()
        if not ("://" in url or url.startswith("/") or ":" in url.split("/")[0]):
            url = str((repo_dir / url).resolve())  # a relative path remote
        return url
    if (repo_dir / ".git").exists():
        return str(repo_dir.resolve())
    raise GitError(
        f"{repo_dir}: no Git remote {remote!r} and not a Git repository; pass --repo URL."
    )
