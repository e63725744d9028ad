"""Where an agent's desired state comes from: one branch of a Git remote, fetched shallowly.

Owns the agent's Git I/O (the promotion side's Git work lives in ``repo.py``): a bare cache
repository per remote, ``git fetch --depth 1`` of the branch, and an export of the tree at a
revision into a directory for kustomize. Overlays hold only ciphertext, so exporting them to
disk is safe; decryption happens later, in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

from promote import archive
from promote.errors import GitError, GitUnavailable

log = logging.getLogger(__name__)


class GitSource:
    def __init__(self, url: str, *, branch: str, cache_root: Path, timeout_s: float = 60) -> None:
        self.url = url
        self.branch = branch
        self._timeout_s = timeout_s
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        self.cache = cache_root / f"repo-{digest}.git"

    def _git(self, *args: str, input: bytes | None = None) -> bytes:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            proc = subprocess.run(
                ["git", "--git-dir", str(self.cache), *args],
                input=input,
                capture_output=True,
                timeout=self._timeout_s,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitUnavailable(f"git {args[0]} {self.url}: timed out.") from exc
        if proc.returncode != 0:
            text = proc.stderr.decode(errors="replace").strip().splitlines()
            detail = text[-1] if text else f"exit {proc.returncode}"
            if args[0] == "fetch":
                raise GitUnavailable(
                    f"cannot fetch {self.branch} from {self.url}: {detail}",
                    hint="Check the URL, the branch and the network; the agent retries.",
                )
            raise GitError(f"git {args[0]}: {detail}")
        return proc.stdout

    def fetch(self) -> str:
        """Fetch the branch (shallow) and return its commit SHA."""
        if not (self.cache / "HEAD").exists():
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["git", "init", "-q", "--bare", str(self.cache)], check=True, capture_output=True
            )
        ref = f"refs/remotes/source/{self.branch}"
        self._git("fetch", "-q", "--depth", "1", "--no-tags", self.url, f"+{self.branch}:{ref}")
        return self._git("rev-parse", f"{ref}^{{commit}}").decode().strip()

    def export(self, revision: str, dest: Path) -> Path:
        """Write the tree at ``revision`` into ``dest`` (created)."""
        data = self._git("archive", "--format=tar", revision)
        return archive.extract(data, dest)


def default_url(repo_dir: Path, remote: str) -> str:
    """The URL of ``remote`` in a working clone, or the clone itself when it has none."""
    proc = subprocess.run(
        ["git", "-C", str(repo_dir), "remote", "get-url", remote],
        capture_output=True,
        text=True,
        check=False,
    )
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
