"""Which environments a change affects, from the files it changes (pure; DESIGN.md §4).

Who may change an environment is decided by what a change touches, never by what it says
about itself (a PR's declared environment, its branch name, a commit message). A changed path
belongs to every environment whose render reads it (its overlay and everything that overlay's
kustomizations read, bases included: :class:`Layout`, computed from the tree by
``kustomize.folder.input_paths``); any other path outside the overlays folder is governance
(``promote.yaml``, ``.sops.yaml``, ``environments/``, ``keys/``, policies, ...) and belongs to
every environment. A path under the overlays folder that no environment reads affects none.
Records (``releases/``: rejected versions, holds) are outside the render inputs and affect no
environment, so placing one never makes an environment Unverified (DESIGN.md §6); removing
one lifts a restriction, so a removal the caller names in ``lifted`` affects every environment
and needs the strictest one's approvals.

A change is judged against the layouts of both sides (before and after): a kustomization
edit that adds a base is an input change of the environments building it before the edit,
and the new base's files are inputs after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

OVERLAYS_ROOT = "overlays/"
RECORDS_ROOT = "releases/"  # rejected versions and holds: records, not render inputs


@dataclass(frozen=True, slots=True)
class Layout:
    """Every environment (pipeline order) and the repository paths its render reads.

    An input ending in ``/`` is a folder (everything below it counts); others are files.
    """

    envs: tuple[str, ...]
    inputs: Mapping[str, frozenset[str]] = field(default_factory=dict)
    overlays_root: str = OVERLAYS_ROOT
    records_root: str = RECORDS_ROOT

    def is_record(self, path: str) -> bool:
        return path.startswith(self.records_root)

    def merged(self, other: Layout) -> Layout:
        """Both layouts at once: an environment's inputs on either side of a change."""
        envs = tuple(dict.fromkeys((*self.envs, *other.envs)))
        inputs = {
            e: self.inputs.get(e, frozenset()) | other.inputs.get(e, frozenset()) for e in envs
        }
        return Layout(envs, inputs, self.overlays_root, self.records_root)


@dataclass(frozen=True, slots=True)
class Scope:
    """The environments a change affects, and for each why (the first path that made it)."""

    envs: tuple[str, ...]  # in pipeline order
    reasons: Mapping[str, str] = field(default_factory=dict)  # env -> "path" or "governance: p"
    governance: tuple[str, ...] = ()  # changed governance paths (they affect every env)

    def __bool__(self) -> bool:
        return bool(self.envs)

    def describe(self) -> str:
        if not self.envs:
            return "no environment"
        return ", ".join(f"{e} ({self.reasons.get(e, '?')})" for e in self.envs)


def _reads(inputs: Iterable[str], path: str) -> bool:
    return any(path == i or (i.endswith("/") and path.startswith(i)) for i in inputs)


def affected(changed: Iterable[str], layout: Layout, *, lifted: Iterable[str] = ()) -> Scope:
    """The environments ``changed`` (repository-relative paths) affects under ``layout``.

    ``lifted``: the changed record paths the change removes (lifting a rejection or a hold).
    """
    reasons: dict[str, str] = {}
    governance: list[str] = []
    removed = set(lifted)
    for path in sorted(set(changed)):
        hit = [e for e in layout.envs if _reads(layout.inputs.get(e, ()), path)]
        if not hit and layout.is_record(path):
            if path not in removed:
                continue  # placing a record needs no approval and affects no render
            hit, why = list(layout.envs), f"lifts: {path}"
        elif not hit and not path.startswith(layout.overlays_root):
            governance.append(path)
            hit = list(layout.envs)
            why = f"governance: {path}"
        else:
            why = path
        for env in hit:
            reasons.setdefault(env, why)
    envs = tuple(e for e in layout.envs if e in reasons)
    return Scope(envs, reasons, tuple(governance))


def inputs_equal(
    env: str, layout: Layout, blobs_a: Mapping[str, str], blobs_b: Mapping[str, str]
) -> bool:
    """Whether ``env``'s inputs are identical in two trees (``path -> blob id`` maps).

    Governance files count as inputs of every environment, so two trees that differ in
    ``keys/`` or ``environments/`` are never equal for any environment; records do not.
    """
    return input_blobs(env, layout, blobs_a) == input_blobs(env, layout, blobs_b)


def input_blobs(env: str, layout: Layout, blobs: Mapping[str, str]) -> dict[str, str]:
    """The part of a tree (``path -> blob id``) that ``env``'s render and settings depend on:
    the paths its overlay reads and every governance file; records and other environments'
    overlays left out. Two trees with equal input blobs render ``env`` identically."""
    inputs = layout.inputs.get(env, frozenset())
    folders = tuple(i for i in inputs if i.endswith("/"))  # _reads, for 1,000s of paths
    outside = (layout.overlays_root, layout.records_root)

    def relevant(path: str) -> bool:
        return path in inputs or path.startswith(folders) or not path.startswith(outside)

    return {p: b for p, b in blobs.items() if relevant(p)}


def strictest(envs: Sequence[str], required: Mapping[str, int]) -> str | None:
    """The affected environment needing the most approvals (ties: the later in the pipeline)."""
    best: str | None = None
    for env in envs:
        if best is None or required.get(env, 0) >= required.get(best, 0):
            best = env
    return best
