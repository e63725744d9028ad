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


def diff_trees(
    old: bytes, new: bytes, *, read_tree: Callable[[str], bytes], prefix: str = ""
) -> list[tuple[str, str]]:
    """``(status, path)`` of every file that differs between two raw trees, as ``git diff
    --name-status --no-renames`` lists them: ``A`` added, ``D`` deleted, ``M`` content or mode
    changed; a file that became a folder is its deletion and the folder's files' addition.
    Only subtrees whose ids differ are read (``read_tree``: a tree's raw data by its id)."""
    from git.objects.fun import tree_entries_from_data

    before = {name: (mode, sha) for sha, mode, name in tree_entries_from_data(old)}
    after = {name: (mode, sha) for sha, mode, name in tree_entries_from_data(new)}
    out: list[tuple[str, str]] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        path = prefix + name
        a_tree = a is not None and a[0] == values.TREE_MODE
        b_tree = b is not None and b[0] == values.TREE_MODE
        if a_tree or b_tree:
            below_a = read_tree(a[1].hex()) if a is not None and a_tree else b""
            below_b = read_tree(b[1].hex()) if b is not None and b_tree else b""
            out += diff_trees(below_a, below_b, read_tree=read_tree, prefix=f"{path}/")
            if a is not None and not a_tree:
                out.append(("D", path))
            if b is not None and not b_tree:
                out.append(("A", path))
        else:
            out.append(("A" if a is None else "D" if b is None else "M", path))
    return out
