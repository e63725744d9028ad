"""Walking a branch's history cheaply: first-parent steps with their changed paths, and the
blobs of a tree (what the agent's verification reads; DESIGN.md §4).

One ``git log`` lists every first-parent step between two commits with the paths each changed
against its first parent (merges included), so a walk over many commits costs one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from promote.git import commitlog
from promote.git import repo as git_repo


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One first-parent step: ``parents[0]`` -> ``sha``, and what it changed."""

    sha: str
    parents: tuple[str, ...]
    tree: str
    changed: frozenset[str]  # paths changed against the first parent
    added_or_removed: bool  # a path appeared or vanished (a layout may change)


def first_parent_steps(repo: git_repo.Repo, base: str, head: str) -> list[StepInfo]:
    """Steps from ``base`` (exclusive) to ``head`` along first parents, oldest first."""
    out = repo.run_text(
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--name-status",
        "--no-renames",
        "-z",
        "--format=%x1e%H %P%x1f%T",
        f"{base}..{head}",
        "--",
        what=f"git log {base[:12]}..{head[:12]}",
    )
    steps = []
    for record in out.split("\x1e"):
        if not record.strip("\x00\n"):
            continue
        head_line, _, rest = record.partition("\x1f")
        tree, _, names = rest.partition("\x00")
        tree = tree.strip()
        shas = head_line.split()
        fields = [f for f in names.strip("\n").split("\x00") if f]
        changed, moved = set(), False
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            changed.add(path.lstrip("\n"))
            moved = moved or status.strip()[:1] in ("A", "D")
        steps.append(StepInfo(shas[0], tuple(shas[1:]), tree, frozenset(changed), moved))
    steps.reverse()
    return steps


def changed_between(repo: git_repo.Repo, old: str, new: str) -> tuple[frozenset[str], bool]:
    """The paths that differ between commits ``old`` and ``new``, and whether a path appeared
    or vanished (the trees compared in process: no git command)."""
    pairs = repo.tree_changes(old, new)
    moved = any(status in ("A", "D") for status, _ in pairs)
    return frozenset(path for _, path in pairs), moved


def tree_blobs(repo: git_repo.Repo, rev: str) -> dict[str, str]:
    """``path -> blob id`` of every file at ``rev``."""
    out = repo.run_text("ls-tree", "-r", "-z", "--full-tree", rev, what=f"git ls-tree {rev[:12]}")
    blobs = {}
    for entry in out.split("\x00"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if path and len(parts) == 3 and parts[1] == "blob":
            blobs[path] = parts[2]
    return blobs


def tree_of(repo: git_repo.Repo, rev: str) -> str:
    return repo.run_text("rev-parse", f"{rev}^{{tree}}", what="git rev-parse").strip()


_TAG_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"


def read_tags(repo: git_repo.Repo, prefix: str) -> list[commitlog.TagInfo]:
    """The tags under ``refs/tags/PREFIX``, each with the commit it names and, for a signed
    annotated tag, its signature apart from the data it signs (``git tag -s`` writes it at the
    end of the message; ``git verify-tag`` reads it there). A lightweight tag is unsigned."""
    out = repo.run_text(
        "for-each-ref", "--format=%(objectname) %(objecttype) %(*objectname) %(refname)",
        f"refs/tags/{prefix}", what="git for-each-ref refs/tags",
    )  # fmt: skip
    found = []
    for line in out.splitlines():
        sha, kind, peeled, ref = line.split(" ", 3)
        name = ref.removeprefix("refs/tags/")
        if kind == "commit":
            found.append(commitlog.TagInfo(name, sha, None, b""))
            continue
        data = repo.run_text("cat-file", "tag", sha, what=f"git cat-file tag {name}")
        at = data.find(_TAG_SIGNATURE)
        payload = (data[:at] if at >= 0 else data).encode("utf-8", "surrogateescape")
        signature = data[at:].encode("ascii", "replace") if at >= 0 else None
        found.append(commitlog.TagInfo(name, peeled or sha, signature, payload))
    return found
