"""An agent's chunk renders, kept in memory and found again by the content of their inputs.

A large overlay of plain per-app folders is built in chunks of folders
(``kustomize/shards.py``); a commit that changes one app changes the inputs of one chunk
only. Issue 19 asks a commit pushed straight to main to go live in under a second at 1,000
objects, and a whole build of 250 apps costs seconds on a 2-core machine; so each chunk's
objects are kept under a key made of the chunk's folders (repository-relative, in order)
and the Git blob id of every file below each path those folders read
(``kustomize.folder.input_paths``: the folder, its bases and every file a kustomization
names, an over-approximation). Any change to a file a chunk reads is a new key, so the chunk
is built again; a chunk's objects do not depend on anything else, because ``shards.plan``
chunks only an overlay whose top kustomization lists folders and nothing else, and whose
kustomizations rename or move nothing (any other overlay is one build, never kept here).

What an entry holds is kustomize's output for the chunk: SOPS ciphertext, never anything
decrypted (decryption happens later, on other objects, in memory). Entries are bounded by the
objects they hold together (``MAX_OBJECTS``), least recently used dropped first; nothing is
written to disk.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from promote.kustomize import folder, realpaths

#: Folders per chunk in the agent: half of ``shards.CHUNK_FOLDERS``, so a commit changing one
#: app rebuilds 32 folders (~0.17 s of kustomize at load 24 on 2 cores, 64: ~0.22 s, 16:
#: ~0.08 s), while a first render of 2,500 apps starts 79 kustomize processes, not 157 (each
#: ~50 ms of start-up).
CHUNK_FOLDERS = 32
# Two generations of a 10,000-object overlay (the deployed revision's chunks and a PR
# head's); most are shared with the whole renders rendercache.py keeps (the same objects).
MAX_OBJECTS = 20_000


class ChunkCache:
    """One environment's chunk renders (``render.ChunkMemo`` through :meth:`for_tree`)."""

    def __init__(self, *, max_objects: int = MAX_OBJECTS) -> None:
        self._max_objects = max_objects
        self._entries: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._objects = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def for_tree(
        self,
        tree: Path,
        blobs: Mapping[str, str],
        *,
        realpath: realpaths.Resolve = os.path.realpath,
    ) -> TreeChunks:
        """This cache seen from a tree exported at a revision whose files are ``blobs``
        (``path -> blob id``, every file of the revision); ``realpath``: a
        ``realpaths.RealPaths`` shared with the render's other walks of that tree."""
        return TreeChunks(self, tree, blobs, realpath=realpath)

    def get(self, key: str) -> list[dict[str, Any]] | None:
        with self._lock:
            objects = self._entries.get(key)
            if objects is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return objects

    def put(self, key: str, objects: list[dict[str, Any]]) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            self._objects -= len(old) if old is not None else 0
            self._entries[key] = objects
            self._objects += len(objects)
            while len(self._entries) > 1 and self._objects > self._max_objects:
                _, dropped = self._entries.popitem(last=False)
                self._objects -= len(dropped)

    @property
    def objects(self) -> int:
        """Objects held across entries (bounded by ``max_objects``, beside the newest)."""
        return self._objects

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every object held (a copy of the list: entries may change meanwhile)."""
        with self._lock:
            held = [o for objects in self._entries.values() for o in objects]
        return iter(held)


class TreeChunks:
    """The keys of one exported tree's chunks; ``get`` and ``put`` go to the cache."""

    def __init__(
        self,
        cache: ChunkCache,
        tree: Path,
        blobs: Mapping[str, str],
        *,
        realpath: realpaths.Resolve = os.path.realpath,
    ) -> None:
        self._cache = cache
        self._realpath = realpath
        self._tree = Path(realpath(tree))
        self._blobs = blobs
        self._below: dict[str, list[str]] | None = None  # folder ("a/b/", "") -> its files
        self.reads: dict[Path, frozenset[str]] = {}  # folder (resolved) -> its input paths

    def key(self, folders: Sequence[Path]) -> str | None:
        """The chunk's key: its folders and the blob of every file they read; None when a
        folder is not in the tree, or a file it reads is a link (built every time, as the
        disk store does: ``renderstore``)."""
        names: list[str] = []
        reads: set[str] = set()
        for where in (Path(self._realpath(f)) for f in folders):
            try:
                names.append(where.relative_to(self._tree).as_posix())
            except ValueError:
                return None
            found = folder.input_paths(self._tree, where, realpath=self._realpath)
            self.reads[where] = found
            reads |= found
        below = self._index()
        paths = {r for r in reads if r in self._blobs}  # the files named
        for r in reads:
            if r.endswith("/") or not r:  # a folder ("": the whole tree): every file below
                paths.update(below.get(r, ()))
        if any(os.path.islink(self._tree / p) for p in paths):
            return None  # kustomize follows a link; its blob is the link, not what it reads
        digest = hashlib.sha256("\0".join(names).encode())
        for path in sorted(paths):
            digest.update(f"\n{path}\0{self._blobs[path]}".encode())
        return digest.hexdigest()

    def _index(self) -> dict[str, list[str]]:
        """Each folder of the tree with every file below it (at any depth), built once."""
        if self._below is None:
            below: dict[str, list[str]] = {}
            for path in self._blobs:
                parts = path.split("/")
                for depth in range(len(parts)):
                    below.setdefault("".join(f"{p}/" for p in parts[:depth]), []).append(path)
            self._below = below
        return self._below

    def get(self, key: str) -> list[dict[str, Any]] | None:
        return self._cache.get(key)

    def put(self, key: str, objects: list[dict[str, Any]]) -> None:
        self._cache.put(key, objects)
