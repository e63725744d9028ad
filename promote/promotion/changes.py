"""What a change does to each environment's rendered manifests, between any two revisions.

A pull request's change is its head against where it left main (the merge base; a merged
PR: its merge commit against main before it). Which environments it affects comes from the
paths it changes (the pure ``scope`` module, over both sides' render inputs); each affected
environment is rendered at both revisions and compared by the pure ``diff`` module, which
redacts every Secret before any text is made. The history view compares one environment
between two revisions of main the same way.

Each revision's files are exported once into ``workdir/<tree>`` (they hold only ciphertext)
and rendered through :meth:`engine.Session.render_overlay`, so a render is cached by tree.
Must not: decide approvals, or change anything (it reads Git and renders).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from promote import config
from promote.errors import PromoteError
from promote.forge import base as forge_base
from promote.kustomize import folder
from promote.promotion import diff, engine, scope


@dataclass(frozen=True, slots=True)
class Change:
    """A change between two revisions: its paths, the environments they affect and, for each,
    the rendered (redacted) object differences."""

    before: str
    after: str
    paths: tuple[str, ...]
    scope: scope.Scope
    diffs: dict[str, tuple[diff.ObjectDiff, ...]] = field(default_factory=dict)


def export_at(s: engine.Session, rev: str, workdir: Path) -> Path:
    """The files of ``rev`` in ``workdir/<tree>`` (exported on first use; shared by threads)."""
    tree = s.repo.commit_info(rev).tree
    dest = workdir / tree
    if not dest.is_dir():
        scratch = workdir / f".{tree}.{os.getpid()}.{id(dest)}"
        shutil.rmtree(scratch, ignore_errors=True)
        s.repo.export_tree(rev, scratch)
        try:
            scratch.rename(dest)
        except OSError:  # another thread exported it first
            shutil.rmtree(scratch, ignore_errors=True)
    return dest


def project_at(s: engine.Session, rev: str, workdir: Path) -> config.Project:
    return config.load_project(export_at(s, rev, workdir))


def render_env(s: engine.Session, env: str, rev: str, workdir: Path) -> engine.Objects:
    """``env``'s rendered manifests at ``rev`` (none when ``env`` does not exist there)."""
    project = project_at(s, rev, workdir)
    if env not in project.environments:
        return []
    tree = s.repo.commit_info(rev).tree
    return s.render_overlay(project.env(env).overlay_dir, tree=tree, project=project)


def env_diff(
    s: engine.Session, env: str, before: str, after: str, workdir: Path
) -> tuple[diff.ObjectDiff, ...]:
    """``env``'s rendered differences from revision ``before`` to ``after`` (redacted)."""
    namespace = None
    with contextlib.suppress(PromoteError):  # gone at ``after``: its default namespace
        namespace = project_at(s, after, workdir).env(env).config.cluster.namespace
    old = render_env(s, env, before, workdir)
    new = render_env(s, env, after, workdir)
    return tuple(diff.diff_objects(old, new, default_namespace=namespace))


def between(s: engine.Session, before: str, after: str, workdir: Path) -> Change:
    """The paths changed from ``before`` to ``after``, their scope and rendered diffs."""
    paths = tuple(s.repo.changed_paths(before, after))
    layout = folder.layout(project_at(s, before, workdir)).merged(
        folder.layout(project_at(s, after, workdir))
    )
    affected = scope.affected(paths, layout)
    diffs = {env: env_diff(s, env, before, after, workdir) for env in affected.envs}
    return Change(before, after, paths, affected, diffs)


def revisions(s: engine.Session, pr: forge_base.PullRequest) -> tuple[str, str]:
    """(before, after) of a PR's change: a merged PR's merge commit against its first parent;
    an open or closed one's head against where it meets main."""
    if pr.merge is not None:
        parents = s.repo.commit_info(pr.merge.sha).parents
        return (parents[0] if parents else pr.merge.sha), pr.merge.sha
    return s.repo.merge_base(s.sha, pr.head_sha) or s.sha, pr.head_sha


def of_pull_request(s: engine.Session, pr: forge_base.PullRequest, workdir: Path) -> Change:
    before, after = revisions(s, pr)
    return between(s, before, after, workdir)
