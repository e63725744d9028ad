"""Bare mirror repositories: the reconcile agent's cache of a remote (one per URL).

The agent fetches one branch into a mirror and exports revisions from it; nothing else is
kept there. The folder name is derived from the URL, so one cache folder holds many remotes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from promote.git import repo


def open_mirror(url: str, cache_dir: Path, *, timeout_s: float = 600.0) -> repo.Repo:
    """The bare cache repository for ``url`` in ``cache_dir`` (created empty the first time).

    The reconcile agent fetches one branch into it shallowly and exports revisions from it.
    The folder name is derived from the URL, so one cache holds many remotes.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    path = (cache_dir / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git").absolute()
    found = repo.Repo(path, path, timeout_s=timeout_s)
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True)
        found.init_bare()
        # Each fetch updates the commit-graph: the verification's walks (log, merge-base,
        # ancestry) then read commits from it instead of parsing each object.
        found.run_text("config", "fetch.writeCommitGraph", "true", what="git config")
    return found


def mirror(
    url: str, cache_dir: Path, *, branches: Sequence[str] = ("main",), depth: int | None = 1
) -> repo.Repo:
    """:func:`open_mirror`, with ``branches`` fetched now (``depth`` commits deep)."""
    found = open_mirror(url, cache_dir)
    found.fetch(url, [f"+refs/heads/{b}:refs/heads/{b}" for b in branches], depth=depth)
    return found
