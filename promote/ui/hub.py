"""The dashboard's view of the remote's main: one promotion session shared by requests.

Opening a session (fetch, export main, load its configuration) costs ~100 ms for 100 apps, so
pages do not each open one: :class:`Hub` keeps the current :class:`Snapshot` and opens a new
session at most every ``max_age_s``. When main and the PR refs are what they were, the new
session is closed and the current snapshot, with everything computed from it, is kept. A
replaced snapshot's session is closed once no request uses it.

A snapshot's session is used by one request at a time (its Git adapter keeps one ``cat-file``
process); results are memoised on the snapshot (:meth:`Snapshot.memo`) or, when they depend
only on commits, on the hub (:meth:`Hub.memo`: rendered diffs outlive a snapshot).

Must not: write anything to Git or a forge. The UI is read-only.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from promote.errors import PromoteError
from promote.forge import factory as forge_factory
from promote.git import repo as git_repo
from promote.promotion import engine

log = logging.getLogger(__name__)
T = TypeVar("T")
HUB_MEMO_SIZE = 256  # rendered diffs kept across snapshots (each a few kB)


@dataclass(eq=False)
class Snapshot:
    session: engine.Session
    key: Hashable  # main's SHA and the PR refs: equal keys, equal pages
    stack: contextlib.ExitStack
    opened_at: float
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0
    retired: bool = False
    _memo: dict[Hashable, Any] = field(default_factory=dict)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per snapshot (call with :attr:`lock` held)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def version_key(s: engine.Session) -> Hashable:
    """What decides a snapshot's pages: main, and the PR branches and records fetched with it.

    A server forge keeps its reviews on the server, where no ref shows them: every session
    on one is new.
    """
    if forge_factory.server_forge(s.forge) is not None:
        return (s.sha, time.monotonic())
    return (s.sha, tuple(sorted(s.repo.refs("refs/").items())))


class Hub:
    def __init__(self, repo_dir: Path, *, max_age_s: float = 2.0) -> None:
        self.repo_dir = repo_dir
        self.max_age_s = max_age_s
        self.workdir = Path(tempfile.mkdtemp(prefix="promote-ui-"))  # exported revisions
        self.error: str | None = None  # why the last refresh failed (the page says so)
        self._current: Snapshot | None = None
        self._checked = 0.0
        self._refresh_lock = threading.Lock()
        self._lock = threading.Lock()
        self._memo: OrderedDict[Hashable, Any] = OrderedDict()
        self._memo_lock = threading.Lock()

    @contextlib.contextmanager
    def use(self) -> Iterator[Snapshot]:
        """The current snapshot, refreshed when older than ``max_age_s``, locked for the caller."""
        snap = self._acquire()
        try:
            with snap.lock:
                yield snap
        finally:
            self._release(snap)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` kept across snapshots (for results that depend only on commits)."""
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = compute()
        with self._memo_lock:
            self._memo[key] = value
            while len(self._memo) > HUB_MEMO_SIZE:
                self._memo.popitem(last=False)
        return value

    def _acquire(self) -> Snapshot:
        with self._refresh_lock:
            if self._current is None or time.monotonic() - self._checked >= self.max_age_s:
                self._refresh()
            with self._lock:
                snap = self._current
                assert snap is not None
                snap.users += 1
                return snap

    def _release(self, snap: Snapshot) -> None:
        with self._lock:
            snap.users -= 1
            done = snap.retired and snap.users == 0
        if done:
            snap.stack.close()

    def _refresh(self) -> None:
        stack = contextlib.ExitStack()
        try:
            s = stack.enter_context(engine.session(self.repo_dir, offline=True))
            key = version_key(s)
        except PromoteError as exc:
            stack.close()
            if self._current is None:
                raise
            # The page and /api/matrix say which main failed and which one they still show:
            # a stale page that looks current is worse than an error (issue: the broken push).
            shown = self._current.session
            ref = f"refs/remotes/{shown.remote}/{shown.main}"
            failed = _tracking_sha(self.repo_dir, ref)
            self.error = (
                f"could not load main at {failed[:12]}: {exc}; showing {shown.sha[:12]}"
                if failed and failed != shown.sha
                else f"could not refresh main: {exc}; showing {shown.sha[:12]}"
            )
            log.warning("%s", self.error)
            self._checked = time.monotonic()
            return
        self.error = None
        self._checked = time.monotonic()
        if self._current is not None and self._current.key == key:
            stack.close()
            return
        new = Snapshot(session=s, key=key, stack=stack, opened_at=self._checked)
        with self._lock:
            old, self._current = self._current, new
            close_old = old is not None and old.users == 0
            if old is not None:
                old.retired = True
        if close_old and old is not None:
            old.stack.close()

    def close(self) -> None:
        with self._lock:
            old, self._current = self._current, None
            close_old = old is not None and old.users == 0
            if old is not None:
                old.retired = True
        if close_old and old is not None:
            old.stack.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _tracking_sha(repo_dir: Path, ref: str) -> str | None:
    """The fetched main the failed session read. Its own Git process: the snapshot's is
    used by one request at a time, and taking its lock here could wait on a request."""
    with contextlib.suppress(PromoteError):
        repo = git_repo.Repo.open(repo_dir)
        try:
            return repo.try_resolve(ref)
        finally:
            repo.close()
    return None
