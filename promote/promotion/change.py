"""What a pull request's head actually changes, judged from a trusted tree (DESIGN.md §4).

Reviewers and the merge look at the head, not at what the PR says about itself: its scope (the
environments whose inputs the files changed since the merge base touch, under the layouts of
the trusted tree and of the head: ``scope.affected``), each commit's provenance (promote's own,
reproduced from its trailers; or signed by a registered key; or neither), who opened it (the
registered key that verifies its opened signature), the files it changes beyond its plan, and
on request the rendered diff of every affected environment, Secret values redacted.

Policy, keys and the environments' overlay folders come from ``policy_root`` (main, or the
first parent of an agent's step), never from the head. This module gathers; ``approvals``
judges.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote import config
from promote.errors import PromoteError
from promote.forge import base as forge_base
from promote.git import archive, history
from promote.git import repo as git_repo
from promote.kustomize import folder, imagetag, render, renderstore
from promote.kustomize.overlay import KUSTOMIZATION_NAMES
from promote.promotion import diff, people, provenance, scope


@dataclass(frozen=True, slots=True)
class CommitCheck:
    sha: str
    subject: str
    own: bool  # promote's own: its change is exactly what its plan trailers reproduce
    signer: str | None  # the registered person whose key signed it
    detail: str  # why it is not own, or the signature's status


@dataclass(frozen=True, slots=True)
class EnvDiff:
    env: str
    diffs: tuple[diff.ObjectDiff, ...] = ()
    error: str | None = None  # the render failed (named, never the file's content)


@dataclass(frozen=True, slots=True)
class Inspection:
    base_sha: str
    head_sha: str
    changed: tuple[str, ...]
    scope: scope.Scope
    commits: tuple[CommitCheck, ...]
    beyond_plan: tuple[str, ...]  # files whose head differs from base + the PR's plan
    opener: str | None  # who opened the PR (their registered key verifies its signature)
    opener_problem: str | None  # why the opener is unknown
    diffs: tuple[EnvDiff, ...] = field(default=())

    @property
    def differs_from_plan(self) -> bool:
        return bool(self.beyond_plan)

    def writers(self) -> dict[str, str]:
        """Registered people who signed a commit of the PR -> why they may not approve."""
        out: dict[str, str] = {}
        for c in self.commits:
            if c.signer:
                out.setdefault(c.signer, f"signed commit {c.sha[:12]} of the PR")
        return out

    def unverified(self) -> list[tuple[str, str]]:
        return [
            (f"commit {c.sha[:12]}", f"{c.subject!r}: {c.detail}")
            for c in self.commits
            if not c.own and not c.signer
        ]


def inspect(
    repo: git_repo.Repo,
    project: config.Project,
    registry: people.Registry,
    pr: forge_base.PullRequest,
    *,
    head_sha: str,
    base_sha: str,
    render_with: render.Kustomize | None = None,
    trusted_layout: scope.Layout | None = None,
    same_layout: bool = False,
) -> Inspection:
    """Inspect ``base_sha..head_sha`` of ``pr`` under ``project`` (the trusted tree) and its
    ``registry``; ``render_with`` also renders each affected environment before and after.
    ``trusted_layout``: ``folder.layout(project)``, when the caller keeps it; ``same_layout``:
    the caller knows the head builds the same layout (:func:`layout_unchanged`), so the head
    is not exported unless it is rendered."""
    changed = tuple(repo.changed_paths(base_sha, head_sha))
    mine = trusted_layout if trusted_layout is not None else folder.layout(project)
    tmp = archive.scratch_dir("promote-head-")
    try:
        diffs: tuple[EnvDiff, ...] = ()
        head_root = tmp / "head"
        if same_layout and render_with is None:
            layout = mine
        else:
            repo.export_tree(head_sha, head_root)
            layout = mine.merged(_layout_in(project, head_root))
        # a record the head removes lifts a rejection or hold: every environment's approvals
        lifted = [p for p in changed if layout.is_record(p) and not repo.read_file(head_sha, p)]
        found = scope.affected(changed, layout, lifted=lifted)
        if render_with is not None:
            base_root = repo.export_tree(base_sha, tmp / "base")
            diffs = tuple(
                env_diff(project, e, base_root, head_root, render_with) for e in found.envs
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    opener, problem = _opener(registry, pr)
    return Inspection(
        base_sha=base_sha,
        head_sha=head_sha,
        changed=changed,
        scope=found,
        commits=tuple(_check_commits(repo, project, registry, base_sha, head_sha, changed)),
        beyond_plan=tuple(_beyond_plan(repo, project, pr, changed, base_sha, head_sha)),
        opener=opener,
        opener_problem=problem,
        diffs=diffs,
    )


def layout_unchanged(
    repo: git_repo.Repo, old: str, new: str, *, texts: TextCache | None = None
) -> bool:
    """Whether the tree at ``new`` surely builds the same layout as at ``old``: no path
    appeared or vanished, and every kustomization that differs differs only in ``images:``
    (what every promotion and set-image changes; image strings are never render inputs)."""
    changed, moved = history.changed_between(repo, old, new)
    return not moved and all(
        images_only(repo, path, old, new, texts=texts)
        for path in changed
        if path.rsplit("/", 1)[-1] in KUSTOMIZATION_NAMES
    )


TextCache = dict[tuple[str, str], str]  # (commit SHA, path) -> text: a commit never changes


def images_only(
    repo: git_repo.Repo, path: str, before: str, after: str, *, texts: TextCache | None = None
) -> bool:
    """Whether the kustomization ``path`` differs between two commits only in ``images:``
    (``texts``: a cache of files already read, kept by a caller that asks often)."""
    cache: TextCache = {} if texts is None else texts
    if len(cache) > 4096:
        cache.clear()
    for rev in (before, after):
        if (rev, path) not in cache:
            cache[rev, path] = _text(repo, rev, path) or ""
    splits = [_split(cache[rev, path], path) for rev in (before, after)]
    return None not in splits and len({s.text for s in splits if s is not None}) == 1


_SPLITS: dict[tuple[str, str], imagetag.Split | None] = {}  # (text, path) -> its split


def _split(text: str, path: str) -> imagetag.Split | None:
    """``imagetag.split``, remembered: a walk compares each kustomization text twice (as the
    after of one step and the before of the next), and parsing YAML is what costs."""
    key = (text, path)
    if key not in _SPLITS:
        if len(_SPLITS) > 256:
            _SPLITS.clear()
        _SPLITS[key] = imagetag.split(text, path)
    return _SPLITS[key]


def _rel(project: config.Project, env: str) -> str:
    return project.env(env).overlay_dir.relative_to(project.root).as_posix()


def _layout_in(project: config.Project, root: Path) -> scope.Layout:
    """The trusted environments' overlay folders, as the tree at ``root`` builds them."""
    envs = tuple(project.pipeline())
    return scope.Layout(envs, {e: folder.input_paths(root, root / _rel(project, e)) for e in envs})


def _overlay_files(project: config.Project) -> dict[str, str]:
    """Each environment's kustomization file (repository-relative) in the trusted tree."""
    out = {}
    for e in project.pipeline():
        try:
            out[e] = project.relpath(folder.kustomization_path(project.env(e).overlay_dir))
        except PromoteError:
            continue
    return out


def _check_commits(
    repo: git_repo.Repo,
    project: config.Project,
    registry: people.Registry,
    base_sha: str,
    head_sha: str,
    changed: Sequence[str],
) -> list[CommitCheck]:
    """Each commit of ``base_sha..head_sha`` (``changed``: the paths they change together)."""
    files = _overlay_files(project)
    out = []
    for info in repo.log(f"{base_sha}..{head_sha}"):
        parent = info.parents[0] if len(info.parents) == 1 else None
        whole = parent == base_sha and info.sha == head_sha  # a one-commit change
        env = info.trailers.get(provenance.TRAILER_ENV, "")
        path = files.get(env)
        reason = "it is a merge commit" if parent is None else None
        if reason is None and parent is not None:
            reason = provenance.own_commit_reason(
                info.trailers,
                changed if whole else repo.changed_paths(parent, info.sha),
                overlay_file=path,
                parent_text=_text(repo, parent, path),
                commit_text=_text(repo, info.sha, path),
            )
        signer, signature = _signer(repo, registry, info.sha)
        detail = "" if reason is None else signature if signer else f"{reason}, {signature}"
        out.append(CommitCheck(info.sha, info.subject, reason is None, signer, detail))
    return out


def _signer(repo: git_repo.Repo, registry: people.Registry, sha: str) -> tuple[str | None, str]:
    signed = repo.signed_payload(sha)
    if signed is None:
        return None, "and it is not signed"
    signature, payload = signed
    who = registry.who_signed(payload, signature.decode("utf-8", "replace"))
    if who.person is None:
        return None, f"and its signature is not by a registered key ({who.detail})"
    return who.person, f"signed by {who.person}"


def _text(repo: git_repo.Repo, rev: str, path: str | None) -> str | None:
    raw = repo.read_file(rev, path) if path else None
    return raw.decode("utf-8", "replace") if raw is not None else None


def _beyond_plan(
    repo: git_repo.Repo,
    project: config.Project,
    pr: forge_base.PullRequest,
    changed: tuple[str, ...],
    base_sha: str,
    head_sha: str,
) -> list[str]:
    """Files the head changes that the PR's plan (its env's images, the records it lifts)
    does not explain: a lifted record must be gone at the head, not edited."""
    path = _overlay_files(project).get(pr.env)
    lifted = {p for p in pr.lifts if repo.read_file(head_sha, p) is None}
    out = [p for p in changed if p != path and p not in lifted]
    if path in changed:
        names = provenance.names_trailer(repo.commit_info(head_sha).trailers)  # a rollback's
        planned = provenance.apply_images(_text(repo, base_sha, path) or "", pr.images, path, names)
        if planned is None or planned != _text(repo, head_sha, path):
            out.insert(0, path)
    return out


def _opener(registry: people.Registry, pr: forge_base.PullRequest) -> tuple[str | None, str | None]:
    """Who opened ``pr``: the registered person whose key verifies its opened signature."""
    if pr.opened is None or not pr.opened.signature:
        return None, f"PR #{pr.number} carries no opened signature"
    doc = forge_base.parse_opened(pr.opened.payload)
    if doc is None or doc["pr"] != pr.number:
        return None, f"PR #{pr.number}'s opened signature is not over this PR"
    signed = registry.who_signed(pr.opened.payload.encode(), pr.opened.signature)
    if signed.person is None:
        return None, f"PR #{pr.number}'s opened signature is not by a registered key"
    if signed.person != doc["opener"]:
        return None, (
            f"PR #{pr.number}'s opened signature names {doc['opener']} but is signed by "
            f"{signed.person}"
        )
    return signed.person, None


def env_diff(
    project: config.Project, env: str, base: Path, head: Path, kustomize: render.Kustomize
) -> EnvDiff:
    """``env``'s rendered diff between two exported trees (``project``'s overlay folder in
    both), Secret values redacted; a render error is named, never shown with content."""
    rel = _rel(project, env)
    ns = project.env(env).config.cluster.namespace
    try:
        fast = _images_only_sides(kustomize, (base, head), rel)
        if fast is not None:
            return EnvDiff(env, tuple(diff.diff_objects(*fast, default_namespace=ns)))
        # The two builds are separate kustomize processes: side by side on two cores.
        with ThreadPoolExecutor(max_workers=2) as pool:
            sides = [
                pool.submit(kustomize.build, root / rel) if (root / rel).is_dir() else None
                for root in (base, head)
            ]
            before, after = (side.result() if side is not None else [] for side in sides)
    except PromoteError as exc:
        text = str(exc).replace(str(head), "<head>").replace(str(base), "<base>")
        return EnvDiff(env, error=text)
    return EnvDiff(env, tuple(diff.diff_objects(before, after, default_namespace=ns)))


Objects = list[dict[str, Any]]


def _images_only_sides(
    kustomize: render.Kustomize, roots: tuple[Path, Path], rel: str
) -> tuple[Objects, Objects] | None:
    """Before and after of the overlay ``rel`` in two trees whose inputs differ at most in
    the overlay's own ``images:``, from one build without them (the copy ``promote to``
    renders, so the render store has it) and kustomize's image transformer in Python
    (``imagetag``); None when that is not exact (kustomize then builds both in full)."""
    dirs = [root / rel for root in roots]
    if not all(d.is_dir() for d in dirs):
        return None
    try:
        paths = [folder.kustomization_path(d) for d in dirs]
        splits = [_split(folder.read_text(p), p.name) for p in paths]
        inputs = [renderstore.input_files(root, d) for root, d in zip(roots, dirs, strict=True)]
    except (PromoteError, OSError):
        return None
    first, second = splits
    if first is None or second is None or first.text != second.text:
        return None
    if paths[0].name != paths[1].name or not _same_files(*inputs, skip=f"{rel}/{paths[0].name}"):
        return None
    digest = hashlib.sha256(first.text.encode()).hexdigest()
    copy = dirs[0].parent / f".{dirs[0].name}.{digest[:12]}."  # as engine.render_variants
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(dirs[0], copy)
    try:
        (copy / paths[0].name).write_text(first.text, encoding="utf-8")
        stripped = kustomize.build(copy)
        return imagetag.apply(stripped, first.images), imagetag.apply(stripped, second.images)
    except (PromoteError, imagetag.NotEmulated):
        return None  # the full builds name the user's overlay, not the copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _same_files(a: list[tuple[str, Path]], b: list[tuple[str, Path]], *, skip: str) -> bool:
    """The same repository-relative names with the same bytes, but for ``skip``."""
    if [name for name, _ in a] != [name for name, _ in b]:
        return False
    return all(
        name == skip or pa.read_bytes() == pb.read_bytes()
        for (name, pa), (_, pb) in zip(a, b, strict=True)
    )
