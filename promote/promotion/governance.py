"""Changes beyond image edits (secrets, keys): where they go, and their pull requests.

``secrets set|rotate`` change files an environment reads (its overlay's encrypted Secrets);
``keys add|remove|sync`` change governance files every environment reads (``keys/``,
``.sops.yaml``). Who may change an environment is decided by what a change touches
(:func:`scope.affected`), so a change that touches an environment requiring approvals goes
through a pull request by default (issue 13, item 6), like a promotion: from the remote's main,
on a branch ``promote/<env>/<id>`` named after the strictest environment it touches.

The authoring step runs on main's files exported into a scratch folder (an engine session),
so the commit holds exactly the files it changed and the user's working tree is untouched.
Plaintext never reaches that folder either: the authoring package encrypts through sops'
stdin/stdout and writes only ciphertext. ``--no-pr`` keeps the old behaviour, editing the
working tree (to bootstrap a repository before trust starts, or for an environment without
approvals). This module never encrypts or decrypts; it moves files and opens the PR.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from promote import config
from promote.errors import GitError
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.git import repo as git_repo
from promote.kustomize import folder
from promote.promotion import engine, openers, scope
from promote.secrets import files as secret_files
from promote.secrets import gpg
from promote.secrets.authoring import keys, store

T = TypeVar("T")


class Route(enum.StrEnum):
    PULL_REQUEST = "pull-request"  # a branch from main and a PR (the default when approvals apply)
    WORKTREE = "worktree"  # edit the working tree; the user commits (the behaviour before --pr)


@dataclass(frozen=True, slots=True)
class Decision:
    """The environments a change touches and the strictest one's approval requirement."""

    scope: scope.Scope
    env: str | None  # the strictest affected environment (None: the change touches none)
    required: int  # its approvals.required

    @property
    def needs_pr(self) -> bool:
        return self.required > 0

    def reason(self) -> str:
        return f"{self.env} requires {self.required} approval(s)"


def decide(project: config.Project, paths: Iterable[str]) -> Decision:
    """Which environments changing ``paths`` affects (their overlays' inputs, or governance:
    every environment) and what the strictest of them requires."""
    found = scope.affected(paths, folder.layout(project))
    required = {e: project.env(e).config.approvals.required for e in found.envs}
    env = scope.strictest(found.envs, required)
    return Decision(found, env, required.get(env, 0) if env else 0)


def route(decision: Decision, *, pr: bool | None) -> Route:
    """``--pr`` / ``--no-pr`` as given, else a PR exactly when approvals apply."""
    wanted = decision.needs_pr if pr is None else pr
    return Route.PULL_REQUEST if wanted else Route.WORKTREE


# --- which paths a command touches (known before it runs) -------------------------------------


def secret_paths(project: config.Project, env: str, name: str) -> list[str]:
    """``secrets set ENV NAME``: the Secret's file and the overlay's kustomization."""
    e = project.env(env)
    kz = folder.kustomization_path(e.overlay_dir)
    return [project.relpath(store.secret_path(e, name)), project.relpath(kz)]


def env_secret_paths(project: config.Project, env: str) -> list[str]:
    """``secrets rotate ENV``: every encrypted file of the environment (or its overlay)."""
    e = project.env(env)
    found = [project.relpath(p) for p in secret_files.secret_files(e)]
    return found or [project.relpath(folder.kustomization_path(e.overlay_dir))]


def keys_paths(env: str | None = None) -> list[str]:
    """``keys add|remove ENV`` and ``keys sync``: governance files (every environment)."""
    return [keys.SOPS_CONFIG, *([f"keys/{env}/"] if env else [])]


def identities(project: config.Project, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus every environment's default age identity of the working tree's repo.

    The identities are found by the repository's folder name; a PR's scratch folder has
    another, so the authoring step gets them from here (paths and keys stay in memory).
    """
    out = dict(environ)
    for env in project.pipeline():
        out = keys.identity_environ(project, env, out)
    return out


# --- running a change ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What a change did: the step's result, where it went, what it touches."""

    result: T
    route: Route
    scope: scope.Scope
    pull_request: forge_base.PullRequest | None = None
    warning: str | None = None  # the working tree holds a change that needs approvals


def run(
    project: config.Project,
    repo_dir: Path,
    decision: Decision,
    *,
    pr: bool | None,
    environ: Mapping[str, str],
    kind: forge_base.PRKind,
    make: Callable[[config.Project, dict[str, str]], T],
    title: Callable[[T], str],
    summary: Callable[[T], str],
) -> Outcome[T]:
    """Run the authoring step ``make(project, environ)`` where :func:`route` says: on main's
    files for a PR, or on the working tree ``project`` (with a warning when approvals apply)."""
    how = route(decision, pr=pr)
    if how is Route.PULL_REQUEST:
        env = identities(project, environ)
        try:
            proposal = propose(
                repo_dir, kind=kind, make=lambda p: make(p, env), title=title, summary=summary
            )
        except GitError as exc:  # no clone, no remote, no main yet
            exc.hint = exc.hint or (
                f"{decision.reason() if decision.needs_pr else '--pr was given'}: the change "
                "goes through a pull request from the remote's main. To edit the working tree "
                "only (e.g. before the repository has a remote), add --no-pr."
            )
            raise
        return Outcome(proposal.result, how, proposal.scope, proposal.pull_request)
    result = make(project, dict(environ))
    warning = None
    if decision.needs_pr:
        warning = (
            f"{decision.reason()} and this change touches it ({decision.scope.describe()}); "
            "only your working tree changed. Propose it with --pr: a push straight to main "
            f"is not approved, and {decision.env}'s agent will not apply it."
        )
    return Outcome(result, how, decision.scope, None, warning)


# --- the pull request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal(Generic[T]):
    """What the authoring step returned, the PR holding its change (None: nothing changed)."""

    result: T
    pull_request: forge_base.PullRequest | None
    scope: scope.Scope
    files: tuple[str, ...]


def propose(
    repo_dir: Path,
    *,
    kind: forge_base.PRKind,
    make: Callable[[config.Project], T],
    title: Callable[[T], str],
    summary: Callable[[T], str],
    author: str | None = None,
    opener: str | None = None,
    signed: bool = False,
) -> Proposal[T]:
    """Run ``make`` on main's files, commit what it changed on a branch, open the PR.

    ``title`` and ``summary`` describe the result for people (names and keys, never values).
    ``signed``: on the local forge the PR carries the opener's signature (``opener``, else the
    one registered key GNUPGHOME holds), as promotions do. A removed record (``releases/``)
    lifts a restriction and affects every environment.
    """
    with engine.session(repo_dir) as s:
        before_layout = folder.layout(s.project)
        before = _snapshot(s.root)
        result = make(s.project)
        changed = _changes(s.root, before)
        if not changed:
            return Proposal(result, None, scope.Scope(()), ())
        removed = [p for p, v in changed.items() if v is None]
        layout = before_layout.merged(folder.layout(s.project))
        found = scope.affected(changed, layout, lifted=removed)
        required = {e: s.project.env(e).config.approvals.required for e in found.envs}
        env = scope.strictest(found.envs, required) or s.project.pipeline()[-1]
        text = title(result)
        body = _body(s.project, text, summary(result), found, env, changed)
        sign, name, fingerprint = None, None, None
        if signed and forge_factory.server_forge(s.forge) is None:
            sign, name, fingerprint = openers.opened_signer(
                s,
                env=env,
                scope=found.envs,
                base_sha=s.sha,
                policies={e: s.project.env(e).config.approvals for e in found.envs},
                opener=opener,
                signer=gpg.Signer(),
            )
        commit = _commit(s, changed, text, kind=kind, env=env, found=found, sign_with=fingerprint)
        draft = _Draft(
            kind,
            env,
            text,
            body,
            name or s.user(author),
            sign(commit) if sign else None,
            lifts=tuple(p for p in removed if layout.is_record(p)),
        )
        pr = _open(s, commit, draft)
        return Proposal(result, pr, found, tuple(sorted(changed)))


def _snapshot(root: Path) -> dict[str, bytes]:
    """``path -> sha256`` of every regular file under ``root`` (main's exported files)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).digest()
    return out


def _changes(root: Path, before: Mapping[str, bytes]) -> dict[str, bytes | None]:
    """The files the step wrote (their ciphertext or text) or removed (None)."""
    after = _snapshot(root)
    out: dict[str, bytes | None] = {p: None for p in before if p not in after}
    for path, digest in after.items():
        if before.get(path) != digest:
            out[path] = (root / path).read_bytes()
    return out


def _body(
    project: config.Project,
    title: str,
    summary: str,
    found: scope.Scope,
    env: str,
    changed: Mapping[str, bytes | None],
) -> str:
    policy = project.env(env).config.approvals
    rows = [
        f"| `{p}` | {'removed' if v is None else 'written (ciphertext or public keys only)'} |"
        for p, v in sorted(changed.items())
    ]
    return "\n".join(
        [
            f"## {title}",
            "",
            summary,
            "",
            f"**Affects:** {found.describe()}.",
            f"**Approvals:** {env}'s policy: {policy.required} of "
            f"{', '.join(policy.approvers) or '(none listed)'}.",
            "",
            "| file | change |",
            "|---|---|",
            *rows,
            "",
            "Secret values are never shown; files hold SOPS ciphertext.",
        ]
    )


def _commit(
    s: engine.Session,
    changed: Mapping[str, bytes | None],
    title: str,
    *,
    kind: forge_base.PRKind,
    env: str,
    found: scope.Scope,
    sign_with: str | None = None,
) -> str:
    tree = s.repo.write_tree(dict(changed), base=s.sha)
    message = (
        f"{title}\n\nPromote-Kind: {kind}\nPromote-Env: {env}\n"
        f"Promote-Scope: {', '.join(found.envs)}\n"
    )
    return s.repo.commit(tree, [s.sha], message, author=s.repo.identity(), sign_with=sign_with)


@dataclass(frozen=True, slots=True)
class _Draft:
    kind: forge_base.PRKind
    env: str
    title: str
    body: str
    author: str
    sign: Callable[[int], forge_base.Opened] | None = None
    lifts: tuple[str, ...] = ()  # the records it removes: its plan (``change``)


def _open(s: engine.Session, commit: str, d: _Draft) -> forge_base.PullRequest:
    """Branch ``promote/<env>/<id>`` at ``commit`` and its PR (as promotions open theirs)."""
    branch = f"promote/{d.env}/{os.urandom(4).hex()}"
    if not s.forge.pushes_branch:
        s.repo.push(
            s.remote,
            [git_repo.RefUpdate(f"refs/heads/{branch}", commit, git_repo.MUST_NOT_EXIST)],
        )
    return s.forge.open(
        forge_base.PullRequestDraft(
            title=d.title,
            body=d.body,
            env=d.env,
            source=None,
            kind=d.kind,
            branch=branch,
            base=s.main,
            head_sha=commit,
            author=d.author,
            author_identity=str(s.repo.identity()),
            source_revision=s.sha,
            lifts=d.lifts,
            sign=d.sign,
        )
    )
