"""The agent's exported tree, kept between renders and brought to each new revision by
writing only the files that changed.

A render reads the tree from disk (kustomize, the sandbox walk, the configuration), and
exporting all of it (``git archive`` piped to ``tar``) and deleting it again cost about a
second a pass at 1,000 objects on the loaded 2-core machine (issue 19), even when a commit
changed one file. So the tree of the last revision rendered stays, and the next revision's
files are compared by blob id (``GitSource.blobs``): removed files are deleted (and folders
left empty, which an export would not have), changed and new files written from Git.

It must be exactly what a fresh export would be, so anything an export treats specially
makes the next update a full export: a link, a submodule or an executable file (the export
refuses or skips some links; a link's blob is its target's name), a ``.gitattributes`` file
(``git archive`` honours export-ignore and export-subst), an export that left a
refused-links record, or more than ``MAX_WRITES`` changes. A failed update removes the
tree (the next is a full export). The tree holds what Git holds: SOPS ciphertext, never
anything decrypted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from promote.git import archive
from promote.reconcile.source import GitSource

MAX_WRITES = 256  # beyond this an export (two processes) is as quick as writing file by file
_PLAIN_MODES = frozenset({"100644"})  # an executable file: exported, mode and all


class ExportedTree:
    """One folder holding the tree of the revision last rendered (one per agent; callers
    serialize, as ``DesiredState`` does with its render lock)."""

    def __init__(self, where: Path) -> None:
        self.where = where  # the tree itself: ``where`` (created on the first export)
        self._blobs: dict[str, str] | None = None  # of the revision it holds
        self.full_exports = 0
        self.updates = 0

    def at(self, source: GitSource, revision: str, blobs: Mapping[str, str]) -> Path:
        """The tree at ``revision`` (whose files are ``blobs``) in :attr:`where`."""
        try:
            if not self._update(source, revision, blobs):
                self._export(source, revision, blobs)
        except BaseException:
            self.discard()
            raise
        return self.where

    def discard(self) -> None:
        self._blobs = None
        shutil.rmtree(self.where, ignore_errors=True)
        _refused(self.where).unlink(missing_ok=True)

    def _export(self, source: GitSource, revision: str, blobs: Mapping[str, str]) -> None:
        self.discard()
        source.export(revision, self.where)
        self.full_exports += 1
        plain = not _refused(self.where).exists() and not any(
            p.rsplit("/", 1)[-1] == ".gitattributes" for p in blobs
        )
        self._blobs = dict(blobs) if plain and _modes_plain(source, revision, None) else None

    def _update(self, source: GitSource, revision: str, blobs: Mapping[str, str]) -> bool:
        old = self._blobs
        if old is None:
            return False
        gone = [p for p in old if p not in blobs]
        write = [p for p, b in blobs.items() if old.get(p) != b]
        if len(gone) + len(write) > MAX_WRITES:
            return False
        if any(p.rsplit("/", 1)[-1] == ".gitattributes" for p in write):
            return False
        if write and not _modes_plain(source, revision, write):
            return False
        self._blobs = None  # until the tree is whole again
        for path in gone:
            target = self.where / path
            target.unlink(missing_ok=True)
            _prune_empty(target.parent, self.where)
        for path in write:
            data = source.repo.read_file(revision, path)
            if data is None:
                return False  # not a file at the revision after all: export instead
            target = self.where / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.is_dir():
                return False
            target.write_bytes(data)
        self._blobs = dict(blobs)
        self.updates += 1
        return True


def _modes_plain(source: GitSource, revision: str, paths: list[str] | None) -> bool:
    """Whether every entry (or every one of ``paths``) at ``revision`` is a plain file."""
    args = ["ls-tree", "-r", "-z", "--full-tree", revision]
    if paths is not None:
        args += ["--", *paths]
    out = source.repo.run_text(*args, what=f"git ls-tree {revision[:12]}")
    for entry in out.split("\x00"):
        if entry and entry.split(" ", 1)[0] not in _PLAIN_MODES:
            return False
    return True


def _prune_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents below ``top`` while empty (Git has no empty folder)."""
    while folder != top and folder.is_relative_to(top):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = folder.parent


def _refused(where: Path) -> Path:
    return archive.refused_record(where)
