"""Promotion orchestration: the only code that sequences Git, rendering, the forge and GnuPG.

Every command starts from the REMOTE's main, never from the user's worktree: a
:class:`Session` fetches main, exports its tree into a temporary folder (overlays hold only
ciphertext, so this is safe) and loads the configuration from there, so the policy that
applies is the one on main. Commits are built in the object database from main's tree (see
``repo.py``); the user's checkout, index and branches are never touched.

What changes is decided by the pure ``plan`` module, what counts as approval by the pure
``approvals`` module; this module only moves data between them and the adapters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promote import config, diff, gpg, overlay, render
from promote import repo as git_repo
from promote.errors import (
    ConfigError,
    ForgeError,
    GitError,
    GitUnavailable,
    PolicyBlocked,
    PushRejected,
    UsageError,
)
from promote.forge import base as forge_base
from promote.forge import gitea as gitea_forge
from promote.forge import github as github_forge
from promote.forge import local as local_forge
from promote.promotion import approvals, plan
from promote.secrets import parity

log = logging.getLogger(__name__)

KEYS_DIR = "keys/release-managers"
MAX_PUSH_ATTEMPTS = 60
RENDER_CACHE_SIZE = 64  # rendered overlays kept per clone (each a few kB to a few 100 kB)
Objects = list[dict[str, Any]]


@dataclass
class Session:
    """The remote's main at one SHA: exported files, configuration and the forge."""

    repo: git_repo.Repo
    remote: str
    main: str
    sha: str
    root: Path  # main's files, exported
    project: config.Project  # loaded from ``root``: the policy on main
    forge: forge_base.Forge
    offline: bool = False
    _kustomize: render.Kustomize | None = field(default=None, repr=False)
    _binary: str = field(default="", repr=False)
    _tree: str = field(default="", repr=False)
    _parsed: dict[str, tuple[str, list[overlay.Image]]] = field(default_factory=dict, repr=False)

    def render_overlay(self, overlay_dir: Path, *, tree: str) -> Objects:
        """``kustomize build`` of ``overlay_dir``, whose files are those of git tree ``tree``.

        A render is a function of the tree and the kustomize binary (as Argo CD assumes when it
        caches manifests per revision), so results are kept in ``<git-dir>/promote/render-cache``
        (rendered manifests hold only ciphertext): a dry run followed by the real promotion
        renders once, and the target's "after" render is the next promotion's source render.
        ``PROMOTE_RENDER_CACHE=off`` disables it (e.g. for unpinned remote bases).
        """
        kustomize = self._kustomizer()
        if os.environ.get("PROMOTE_RENDER_CACHE", "").lower() in ("off", "0", "false"):
            return kustomize.build(overlay_dir)
        rel = overlay_dir.relative_to(self.root) if overlay_dir.is_relative_to(self.root) else None
        if rel is None:  # a scratch copy: its content is named by ``tree`` + the original path
            rel = overlay_dir.parent.relative_to(self.root) / overlay_dir.name.strip(".")
        key = hashlib.sha256(f"{self._binary}\0{tree}\0{rel}".encode()).hexdigest()
        cache = self.repo.git_dir / "promote" / "render-cache"
        hit = cache / f"{key}.yaml.gz"
        try:
            text = gzip.decompress(hit.read_bytes()).decode("utf-8")
            hit.touch()
        except (OSError, EOFError, gzip.BadGzipFile):
            text = kustomize.build_text(overlay_dir)
            with contextlib.suppress(OSError):
                cache.mkdir(parents=True, exist_ok=True)
                tmp = cache / f".{key}.{os.getpid()}.tmp"
                tmp.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=1))
                tmp.replace(hit)
                for old in sorted(cache.glob("*.yaml.gz"), key=_mtime)[:-RENDER_CACHE_SIZE]:
                    old.unlink(missing_ok=True)
        return render.parse_objects(text, str(rel))

    def _kustomizer(self) -> render.Kustomize:
        if self._kustomize is None:
            argv = render.find_kustomize()
            with contextlib.suppress(OSError):  # an upgraded binary must not reuse old renders
                st = Path(argv[0]).stat()
                self._binary = f"{argv} {st.st_size} {st.st_mtime_ns}"
            self._kustomize = render.Kustomize(argv)
        return self._kustomize

    @property
    def tree(self) -> str:
        """The git tree of main (what the exported files are)."""
        if not self._tree:
            self._tree = self.repo.commit_info(self.sha).tree
        return self._tree

    def overlay_file(self, env: config.Environment) -> str:
        return self.project.relpath(overlay.kustomization_path(env.overlay_dir))

    def user(self, explicit: str | None = None) -> str:
        """Who runs the command: --author/--as, else $PROMOTE_USER, else the forge token's user
        (server forges), else git user.name."""
        found = explicit or os.environ.get("PROMOTE_USER")
        if found:
            return found
        server = server_forge(self.forge)
        return server.whoami() if server is not None else self.repo.identity().name


def status_from_file(path: Path) -> plan.StatusReader:
    """A status reader over a JSON file ``{ENV: {synced, healthy, since, images, revision}}``.

    Stands in for the reconcile agent's status until it publishes one (``--status-file``).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the status file ({exc}).") from exc

    def read(env: str) -> plan.EnvStatus | None:
        item = data.get(env) if isinstance(data, dict) else None
        if not isinstance(item, dict):
            return None
        since = item.get("since")
        return plan.EnvStatus(
            env=env,
            synced=bool(item.get("synced")),
            healthy=bool(item.get("healthy")),
            images={str(k): str(v) for k, v in (item.get("images") or {}).items()},
            since=datetime.fromisoformat(since) if since else None,
            revision=item.get("revision"),
        )

    return read


ServerForge = gitea_forge.GiteaForge | github_forge.GitHubForge


def make_forge(
    project: config.Project, repo: git_repo.Repo, *, offline: bool = False
) -> forge_base.Forge:
    cfg = project.config
    if cfg.forge.type == "local":
        return local_forge.LocalForge(
            repo, remote=cfg.remote, main_branch=cfg.main_branch, offline=offline
        )
    server = _make_server_forge(cfg, repo)
    if server is None:
        raise ForgeError(f"promote.yaml: forge.type {cfg.forge.type!r} is not known.")
    return server


def _make_server_forge(cfg: config.ProjectConfig, repo: git_repo.Repo) -> ServerForge | None:
    """A Gitea/GitHub forge (reads the token from forge.tokenEnv), None for the local forge."""
    if cfg.forge.type == "gitea":
        return gitea_forge.GiteaForge.from_config(cfg.forge, main_branch=cfg.main_branch, git=repo)
    if cfg.forge.type == "github":
        return github_forge.GitHubForge.from_config(
            cfg.forge, main_branch=cfg.main_branch, git=repo
        )
    return None


def server_forge(forge: forge_base.Forge) -> ServerForge | None:
    """The forge when it is a server (approvals are reviews, the token says who you are)."""
    if isinstance(forge, gitea_forge.GiteaForge | github_forge.GitHubForge):
        return forge
    return None


@contextlib.contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """Set ``extra`` in this process's environment (git reads it) and restore it after.

    It carries git's auth header for the forge (``http.py``: scoped to the remote's URL). The
    forge token is already in this environment, under ``forge.tokenEnv``.
    """
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def session(repo_dir: Path, *, offline: bool = False) -> Iterator[Session]:
    """Fetch the remote's main and open it; ``offline`` falls back to the last fetched main."""
    repo = git_repo.Repo.open(repo_dir)
    tmp: Path | None = None
    clients: list[ServerForge] = []
    try:
        # Only the remote, main branch and forge access come from the worktree; the rest
        # (policy, environments, the forge PRs go to) from main.
        has_file = (repo.path / config.PROJECT_FILE).is_file()
        cfg = config.load_project(repo.path).config if has_file else config.ProjectConfig()
        remote, main = cfg.remote, cfg.main_branch
        tracking = f"refs/remotes/{remote}/{main}"
        url = repo.remote_url(remote)  # a clear error when the remote is not configured
        early = _make_server_forge(cfg, repo)
        clients += [early] if early else []
        with _environment(early.git_environment(url) if early else {}):
            try:
                repo.fetch(remote, [f"+refs/heads/{main}:{tracking}"])
            except GitUnavailable:
                if not offline or repo.try_resolve(tracking) is None:
                    if early is not None:
                        early.check_access()  # says why, when the forge knows (token, repo)
                    raise
                log.warning("%s cannot be reached; using the last fetched %s", remote, main)
            except GitError:
                if early is not None:
                    early.check_access()
                raise
            sha = repo.resolve(tracking)
            tmp = Path(tempfile.mkdtemp(prefix="promote-main-"))
            root = repo.export_tree(sha, tmp / "tree")
            project = config.load_project(root)
            if early is not None and project.config.forge == cfg.forge:
                forge: forge_base.Forge = early
            else:
                forge = make_forge(project, repo, offline=offline)
                clients += [f for f in [server_forge(forge)] if f is not None]
            yield Session(repo, remote, main, sha, root, project, forge, offline)
    finally:
        for client in clients:
            client.disconnect()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        repo.close()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# --- planning ----------------------------------------------------------------------------


def _render_after(s: Session, env: config.Environment, text: str, tree: str) -> Objects:
    """Render ``env``'s overlay with its kustomization replaced by ``text`` (git tree ``tree``).

    The copy sits beside the original, so relative references (``../base/app``) still resolve.
    """
    copy = env.overlay_dir.parent / f".{env.overlay_dir.name}."
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(env.overlay_dir, copy)
    try:
        overlay.kustomization_path(copy).write_text(text, encoding="utf-8")
        return s.render_overlay(copy, tree=tree)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _current(s: Session, env: config.Environment) -> tuple[str, list[overlay.Image]]:
    """The kustomization text of ``env`` on main and its images (parsed once per session)."""
    if env.name not in s._parsed:
        path = overlay.kustomization_path(env.overlay_dir)
        text = path.read_text(encoding="utf-8")
        s._parsed[env.name] = (text, plan.read_images(text, s.overlay_file(env)))
    return s._parsed[env.name]


def _plan_images(
    s: Session,
    env: config.Environment,
    wanted: Sequence[overlay.Image],
    *,
    kind: forge_base.PRKind,
    source: config.Environment | None = None,
    source_revision: str | None = None,
    gates: Callable[[Sequence[plan.ImageChange]], list[plan.GateResult]] | None = None,
    apps: Sequence[str] = (),
    render_diff: bool = True,
) -> plan.Plan:
    text, current = _current(s, env)
    changes = plan.image_changes(current, wanted)
    base = plan.Plan(
        kind=kind,
        source=source.name if source else None,
        target=env.name,
        revision=s.sha,
        source_revision=source_revision or s.sha,
        overlay_file=s.overlay_file(env),
        changes=tuple(changes),
        approvals=env.config.approvals,
        apps=tuple(apps),
    )
    if not changes:
        return base
    after_text = plan.apply_changes(text, changes, base.overlay_file)
    base = dataclasses.replace(base, overlay_after=after_text)
    if not render_diff:
        return base
    tree_after = s.repo.write_tree({base.overlay_file: after_text.encode()}, base=s.sha)
    s._kustomizer()  # find the binary once, before the threads need it
    with ThreadPoolExecutor(max_workers=3) as pool:
        before_f = pool.submit(s.render_overlay, env.overlay_dir, tree=s.tree)
        after_f = pool.submit(_render_after, s, env, after_text, tree_after)
        source_f = (
            pool.submit(s.render_overlay, source.overlay_dir, tree=s.tree) if source else None
        )
        before, after = before_f.result(), after_f.result()
        source_objs = source_f.result() if source_f else None
    ns = env.config.cluster.namespace
    result = None
    if source is not None and source_objs is not None:
        result = parity.check_parity(source.name, source_objs, env.name, after)
    return dataclasses.replace(
        base,
        diff=tuple(diff.diff_objects(before, after, default_namespace=ns)),
        parity=result,
        gates=tuple(gates(changes) if gates else ()),
    )


def plan_promotion(
    s: Session,
    target: str,
    *,
    source: str | None = None,
    apps: Sequence[str] = (),
    status_reader: plan.StatusReader = plan.no_status,
    now: datetime | None = None,
) -> plan.Plan:
    """What ``promote to TARGET`` would change, computed at the remote's main."""
    env = s.project.env(target)
    src_name = source or env.upstream
    if src_name is None:
        raise UsageError(
            f"{target} has no upstream (it is where new versions enter the pipeline); name the "
            f"source with --from ENV, or publish images with `promote set-image {target} ...`."
        )
    src = s.project.env(src_name)
    if src.name == env.name:
        raise UsageError(f"--from {src_name}: cannot promote {target} into itself.")
    wanted = plan.promotion_targets(
        _current(s, src)[1],
        _current(s, env)[1],
        source=src.name,
        source_apps=lambda: overlay.list_apps(src.overlay_dir),
        apps=apps,
    )
    soak = env.config.gates.soak

    def gates(changes: Sequence[plan.ImageChange]) -> list[plan.GateResult]:
        gate = plan.check_soak(
            soak,
            status_reader(src.name) if soak else None,
            changes,
            source=src.name,
            now=now or datetime.now(UTC),
        )
        return [gate] if gate else []

    return _plan_images(
        s,
        env,
        wanted,
        kind=forge_base.PRKind.PROMOTION,
        source=src,
        gates=gates,
        apps=apps,
    )


def plan_rollback(s: Session, target: str, revision: str) -> plan.Plan:
    """Restore ``target``'s images to what its overlay held at ``revision``."""
    env = s.project.env(target)
    path = s.overlay_file(env)
    raw = s.repo.read_file(revision, path)
    if raw is None:
        raise UsageError(f"{revision[:12]}: {path} does not exist at that revision.")
    then = plan.read_images(raw.decode("utf-8"), f"{path}@{revision[:12]}")
    names = {i.name for i in _current(s, env)[1]}
    wanted = [i for i in then if i.name in names]
    return _plan_images(s, env, wanted, kind=forge_base.PRKind.ROLLBACK, source_revision=revision)


def _wanted_from_args(
    current: Sequence[overlay.Image], specs: Sequence[str], env: str
) -> list[overlay.Image]:
    by_name = {i.name: i for i in current}
    wanted = []
    for spec in specs:
        name, tag, digest = plan.parse_image_arg(spec)
        img = by_name.get(name)
        if img is None:
            raise UsageError(
                f"{spec!r}: {env}'s overlay has no image {name!r} (its images: "
                f"{', '.join(sorted(by_name)) or 'none'}); add the entry once by hand."
            )
        wanted.append(overlay.Image(name, img.new_name, tag, digest))
    return wanted


def plan_set_image(
    s: Session, target: str, specs: Sequence[str], *, render_diff: bool = True
) -> plan.Plan:
    env = s.project.env(target)
    wanted = _wanted_from_args(_current(s, env)[1], specs, target)
    return _plan_images(s, env, wanted, kind=forge_base.PRKind.SET_IMAGE, render_diff=render_diff)


# --- changing --------------------------------------------------------------------------------


def _commit_plan(s: Session, p: plan.Plan, parent: str, title: str) -> str | None:
    """A commit on ``parent`` with ``p``'s image values applied (None when nothing changes)."""
    raw = s.repo.read_file(parent, p.overlay_file)
    if raw is None:
        raise ConfigError(f"{p.overlay_file}: missing at {parent[:12]}.")
    text = raw.decode("utf-8")
    if parent == p.revision and p.overlay_after:
        new = p.overlay_after  # computed while planning, on this very revision
    else:
        new = plan.apply_changes(text, p.changes, p.overlay_file)
    if new == text:
        return None
    tree = s.repo.write_tree({p.overlay_file: new.encode("utf-8")}, base=parent)
    message = plan.commit_message(p, title)
    return s.repo.commit(tree, [parent], message, author=s.repo.identity())


def open_pull_request(
    s: Session, p: plan.Plan, *, title: str | None = None, author: str | None = None
) -> forge_base.PullRequest:
    """Branch ``promote/<env>/<id>`` from main, commit the edit, push, open the PR."""
    title = title or plan.default_title(p)
    commit = _commit_plan(s, p, p.revision, title)
    if commit is None:
        raise UsageError(f"{p.target}: nothing to change; the overlay already has these images.")
    branch = f"promote/{p.target}/{os.urandom(4).hex()}"
    s.repo.push(
        s.remote, [git_repo.RefUpdate(f"refs/heads/{branch}", commit, git_repo.MUST_NOT_EXIST)]
    )
    return s.forge.open(
        forge_base.PullRequestDraft(
            title=title,
            body=plan.to_markdown(p),
            env=p.target,
            source=p.source,
            kind=p.kind,
            branch=branch,
            base=s.main,
            head_sha=commit,
            author=s.user(author),
            author_identity=str(s.repo.identity()),
            source_revision=p.source_revision,
            images=tuple(c.trailer for c in p.changes),
        )
    )


def push_images(
    s: Session, target: str, specs: Sequence[str], *, title: str | None = None
) -> tuple[plan.Plan, str | None]:
    """``set-image`` straight to main; a lost push race re-reads main and tries again."""
    env = s.project.env(target)
    path = s.overlay_file(env)
    tracking = f"refs/remotes/{s.remote}/{s.main}"
    parent = s.sha
    for attempt in range(MAX_PUSH_ATTEMPTS):
        raw = s.repo.read_file(parent, path)
        current = plan.read_images((raw or b"").decode("utf-8"), path)
        wanted = _wanted_from_args(current, specs, target)
        p = plan.Plan(
            kind=forge_base.PRKind.SET_IMAGE,
            source=None,
            target=target,
            revision=parent,
            source_revision=parent,
            overlay_file=path,
            changes=tuple(plan.image_changes(current, wanted)),
            approvals=env.config.approvals,
        )
        if p.empty:
            return p, None
        commit = _commit_plan(s, p, parent, title or plan.default_title(p))
        if commit is None:  # the values differ only in how YAML spells them
            return dataclasses.replace(p, changes=()), None
        try:
            s.repo.push(
                s.remote, [git_repo.RefUpdate(f"refs/heads/{s.main}", commit, expect=parent)]
            )
        except PushRejected:
            time.sleep(random.uniform(0.01, 0.03 * min(attempt + 1, 10)))
            s.repo.fetch(s.remote, [f"+refs/heads/{s.main}:{tracking}"])
            parent = s.repo.resolve(tracking)
            continue
        s.repo.set_ref(tracking, commit)
        return p, commit
    raise PushRejected(f"{s.main} kept moving; gave up after {MAX_PUSH_ATTEMPTS} attempts.")


# --- approvals and merge ---------------------------------------------------------------------


def _open_pr(s: Session, number: int, verb: str) -> forge_base.PullRequest:
    pr = s.forge.get(number)
    if pr.state is forge_base.PRState.MERGED and pr.merge:
        raise ForgeError(
            f"PR #{number} is already merged ({pr.merge.sha[:12]}, {pr.merge.at:%Y-%m-%d %H:%M} "
            f"UTC); cannot {verb} it."
        )
    if pr.state is not forge_base.PRState.OPEN:
        raise ForgeError(f"PR #{number} is {pr.state}; cannot {verb} it. Open a new one.")
    return pr


def approver_key(s: Session, name: str) -> str:
    """The approver's public key as it is on main (a PR cannot bring its own key)."""
    path = s.root / KEYS_DIR / f"{name}.asc"
    if not approvals.valid_name(name) or not path.is_file():
        raise ConfigError(
            f"{KEYS_DIR}/{name}.asc does not exist on {s.main}; add the approver's public key "
            f"there (`gpg --armor --export ID > {KEYS_DIR}/{name}.asc`) and merge it first."
        )
    return path.read_text(encoding="utf-8")


def approve(
    s: Session,
    number: int,
    *,
    approver: str | None,
    comment: str = "",
    signer: gpg.Signer | None = None,
    now: datetime | None = None,
) -> tuple[forge_base.PullRequest, forge_base.Approval]:
    """Record ``approver``'s signed approval of the PR's current head.

    On a server forge the approval is a review by the token's user (``approver``, when given,
    must be that user); nothing is signed: the forge authenticated the reviewer.
    """
    server = server_forge(s.forge)
    if server is not None:
        return _approve_on_server(s, server, number, approver=approver, comment=comment, now=now)
    if not approver:
        raise UsageError("say who approves: --as NAME (a name in approvals.approvers).")
    pr = _open_pr(s, number, "approve")
    policy = s.project.env(pr.env).config.approvals
    if approver not in policy.approvers:
        raise UsageError(
            f"--as {approver}: not an approver of {pr.env} (approvers: "
            f"{', '.join(policy.approvers) or 'none'}; see environments/{pr.env}.yaml)."
        )
    if approver == pr.author and not policy.allow_self_approval:
        raise PolicyBlocked(
            f"PR #{number} was opened by {approver}, and {pr.env} does not allow self-approval "
            "(approvals.allowSelfApproval: false); ask another approver."
        )
    key = approver_key(s, approver)
    fingerprints = gpg.key_fingerprints(key)
    if not fingerprints:
        raise ConfigError(f"{KEYS_DIR}/{approver}.asc holds no PGP public key; re-export it.")
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    payload = approvals.approval_payload(
        pr=number, env=pr.env, head_sha=pr.head_sha, approver=approver, at=at, comment=comment
    )
    signature = (signer or gpg.Signer()).sign(
        payload.encode(), fingerprints=fingerprints, who=approver
    )
    approval = forge_base.Approval(
        approver, number, pr.env, pr.head_sha, at, comment, payload, signature
    )
    return pr, s.forge.approve(number, approval)


def _approve_on_server(
    s: Session,
    server: ServerForge,
    number: int,
    *,
    approver: str | None,
    comment: str,
    now: datetime | None,
) -> tuple[forge_base.PullRequest, forge_base.Approval]:
    me = server.whoami()
    if approver and approver != me:
        raise UsageError(
            f"--as {approver}: on {server.name} the token's user approves, and the token in "
            f"${s.project.config.forge.token_env} belongs to {me}. Drop --as (and "
            "$PROMOTE_USER), or run with the approver's own token."
        )
    pr = _open_pr(s, number, "approve")
    policy = s.project.env(pr.env).config.approvals
    if me == pr.author and not policy.allow_self_approval:
        raise PolicyBlocked(
            f"PR #{number} was opened by {me}, and {pr.env} does not allow self-approval "
            "(approvals.allowSelfApproval: false); your own approval would not count. Ask "
            f"another approver ({', '.join(a for a in policy.approvers if a != me) or 'none'})."
        )
    if me not in policy.approvers:
        raise UsageError(
            f"{me} (the user of the token in ${s.project.config.forge.token_env}) is not an "
            f"approver of {pr.env} (approvers: {', '.join(policy.approvers) or 'none'}; see "
            f"environments/{pr.env}.yaml)."
        )
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    wanted = forge_base.Approval(me, number, pr.env, pr.head_sha, at, comment)
    return pr, s.forge.approve(number, wanted)


def check_approvals(
    s: Session, found: Sequence[forge_base.Approval]
) -> list[approvals.CheckedApproval]:
    """Verify each approval's signature now, against its approver's key on main.

    A server forge's reviews carry no signature: the forge authenticated each reviewer.
    """
    if server_forge(s.forge) is not None:
        return [approvals.CheckedApproval(a, approvals.SignatureStatus.FORGE) for a in found]
    return gpg.verify_approvals(found, s.root / KEYS_DIR, where=f"{KEYS_DIR}/ on {s.main}")


def evaluate(s: Session, pr: forge_base.PullRequest) -> approvals.Verdict:
    checked = check_approvals(s, s.forge.approvals(pr.number))
    return approvals.evaluate(
        s.project.env(pr.env).config.approvals,
        pr=pr.number,
        env=pr.env,
        author=pr.author,
        head_sha=pr.head_sha,
        approvals=checked,
    )


def _reapply(s: Session, pr: forge_base.PullRequest) -> forge_base.Resolver:
    """Resolve a conflict in the target overlay by applying the PR's image values to main's."""
    path = s.overlay_file(s.project.env(pr.env))

    def resolve(main_sha: str, conflicts: Sequence[str]) -> Mapping[str, bytes] | None:
        if list(conflicts) != [path]:
            return None
        text = (s.repo.read_file(main_sha, path) or b"").decode("utf-8")
        current = {i.name: i for i in overlay.parse_images(text, path)}
        for item in pr.images:
            name, _, version = item.partition("=")
            tag, digest = _split_version(version)
            mine = current.get(name)
            img = overlay.Image(name, mine.new_name if mine else None, tag, digest)
            text = overlay.set_image(text, img, path)
        return {path: text.encode("utf-8")}

    return resolve


def _split_version(version: str) -> tuple[str | None, str | None]:
    if "@" in version:
        tag, digest = version.split("@", 1)
        return tag or None, digest
    if ":" in version:  # a digest alone (sha256:...); tags cannot contain ':'
        return None, version
    return version, None


def merge(
    s: Session, number: int, *, by: str | None = None
) -> tuple[forge_base.PullRequest, forge_base.MergeResult, approvals.Verdict]:
    """Merge when the target's policy holds (exit 3 with what is missing otherwise)."""
    pr = _open_pr(s, number, "merge")
    verdict = evaluate(s, pr)
    server = server_forge(s.forge)
    if not verdict.ok:
        if verdict.refused:
            hint = f"Close PR #{number} and promote again; find out who wrote its record."
        elif server is not None:
            hint = (
                f"Each approver runs `promote approve {number}` with their own token in "
                f"${s.project.config.forge.token_env} (or approves the PR on {server.name})."
            )
        else:
            hint = f"Approve with `promote approve {number} --as NAME`."
        raise PolicyBlocked(verdict.summary(), problems=verdict.problems(), hint=hint)
    merger = server.whoami() if server is not None else s.user(by)
    message = (
        f"Merge PR #{number}: {pr.title}\n\nPromote-PR: {number}\nPromote-Env: {pr.env}\n"
        f"Promote-Approved-By: {', '.join(verdict.counted) or '-'}\nPromote-Merged-By: {merger}\n"
    )
    result = s.forge.merge(
        number,
        head_sha=pr.head_sha,
        by=merger,
        approvals=verdict.counted,
        message=message,
        resolve=_reapply(s, pr),
    )
    return pr, result, verdict


def parse_pr(text: str) -> int:
    value = text.lstrip("#")
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{text!r} is not a PR number; write e.g. 7 or #7.")
    return int(value)
