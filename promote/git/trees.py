"""Editing a Git tree without a worktree: rewrite only the trees on the changed paths.

Tree entries are parsed and serialised by GitPython's tree functions; reading a tree and
storing a new object are handed in by :class:`promote.git.repo.Repo`, so this module runs no
git command of its own. Modes are kept: an executable file or a symlink stays one when its
content changes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any, cast

from promote.git import values


def edit_tree(
    tree: bytes,
    changes: Mapping[tuple[str, ...], values.FileContent | None],
    *,
    read_tree: Callable[[str], bytes],
    store: Callable[[bytes, bytes], bytes],
) -> bytes:
    """``tree`` (raw) with ``changes`` applied; new blobs and trees are stored; its SHA."""
    from git.objects.fun import tree_entries_from_data, tree_to_stream

    entries = {name: (mode, sha) for sha, mode, name in tree_entries_from_data(tree)}
    nested: dict[str, dict[tuple[str, ...], values.FileContent | None]] = {}
    for parts, content in changes.items():
        if len(parts) > 1:
            nested.setdefault(parts[0], {})[parts[1:]] = content
        elif content is None:
            entries.pop(parts[0], None)
        else:
            current = entries.get(parts[0])
            kept = current[0] if current and current[0] in values.BLOB_MODES else values.FILE_MODE
            mode, data = content if isinstance(content, tuple) else (kept, content)
            entries[parts[0]] = (mode, store(b"blob", data))
    for name, sub in nested.items():
        current = entries.get(name)
        below = read_tree(current[1].hex()) if current and current[0] == values.TREE_MODE else b""
        sha = edit_tree(below, sub, read_tree=read_tree, store=store)
        if sha == values.EMPTY_TREE:
            entries.pop(name, None)
        else:
            entries[name] = (values.TREE_MODE, sha)

    def order(name: str) -> bytes:  # git sorts a folder as if its name ended in "/"
        return values.raw(name) + (b"/" if entries[name][0] == values.TREE_MODE else b"")

    # Names go in as bytes, so a name that is not UTF-8 is written back unchanged.
    rows = [
        (entries[n][1], entries[n][0], cast(Any, values.raw(n))) for n in sorted(entries, key=order)
    ]
    out = io.BytesIO()
    tree_to_stream(rows, out.write)
    return store(b"tree", out.getvalue())
