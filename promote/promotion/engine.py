"""Promotion sessions: the remote's main, opened once per command, and the forge it names.

Every command starts from the REMOTE's main, never from the user's worktree: a
:class:`Session` fetches main, exports its tree into a temporary folder (overlays hold only
ciphertext, so this is safe) and loads the configuration from there, so the policy that
applies is the one on main. Commits are built in the object database from main's tree (see
``promote.git``); the user's checkout, index and branches are never touched.

The verbs live beside this module: ``propose`` plans promotions, rollbacks and set-image and
opens their pull requests; ``review`` approves and merges them. What changes is decided by the
pure ``plan`` module, what counts as approval by the pure ``approvals`` module; these modules
only move data between them and the adapters.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promote import config
from promote.errors import (
    ConfigError,
    GitError,
    GitUnavailable,
    PromoteError,
    PushRejected,
    RemoteBranchMissing,
)
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.git import archive
from promote.git import repo as git_repo
from promote.kustomize import folder, imagetag, overlay, render, renderstore
from promote.kustomize import sandbox as sandbox_mod
from promote.promotion import holds, plan, rejections

if TYPE_CHECKING:
    from promote.forge.rest import ServerForge

log = logging.getLogger(__name__)

MAX_PUSH_ATTEMPTS = 60  # compare-and-swap retries of a push to main (concurrent writers)

SIGNING_KEY_ENV = "PROMOTE_SIGNING_KEY"  # a GnuPG fingerprint: promote signs its commits
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

    def render_overlay(
        self, overlay_dir: Path, *, tree: str, project: config.Project | None = None
    ) -> Objects:
        """``kustomize build`` of ``overlay_dir``, whose files are those of git tree ``tree``
        (``project``: the exported tree it belongs to, when not main's; its sandbox applies).

        A render is a function of the tree and the kustomize binary (as Argo CD assumes when it
        caches manifests per revision), so results are kept in ``<git-dir>/promote/render-cache``
        (rendered manifests hold only ciphertext): a dry run followed by the real promotion
        renders once, and the target's "after" render is the next promotion's source render.
        ``PROMOTE_RENDER_CACHE=off`` disables it (e.g. for unpinned remote bases).
        """
        root = project.root if project is not None else self.root
        box = sandbox_mod.for_project(project) if project is not None else self.sandbox
        # a link left out of the export, in a folder this overlay reads
        archive.check_links(root, box.check(overlay_dir))
        kustomize = self.kustomizer()
        if os.environ.get("PROMOTE_RENDER_CACHE", "").lower() in ("off", "0", "false"):
            return kustomize.build(overlay_dir, sandbox=box)
        rel = overlay_dir.relative_to(root) if overlay_dir.is_relative_to(root) else overlay_dir
        key = hashlib.sha256(f"{self._binary}\0{tree}\0{rel}".encode()).hexdigest()
        cache = self.repo.git_dir / "promote" / "render-cache"
        hit = cache / f"{key}.yaml.gz"
        try:
            text = gzip.decompress(hit.read_bytes()).decode("utf-8")
            hit.touch()
        except (OSError, EOFError, gzip.BadGzipFile):
            text = kustomize.build_text(overlay_dir, sandbox=box)
            with contextlib.suppress(OSError):
                cache.mkdir(parents=True, exist_ok=True)
                tmp = cache / f".{key}.{os.getpid()}.tmp"
                tmp.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=1))
                tmp.replace(hit)
                for old in sorted(cache.glob("*.yaml.gz"), key=_mtime)[:-RENDER_CACHE_SIZE]:
                    old.unlink(missing_ok=True)
        return render.parse_objects(text, str(rel))

    def render_variants(self, overlay_dir: Path, texts: Sequence[str]) -> list[Objects]:
        """``overlay_dir`` rendered once per kustomization text in ``texts`` (its versions).

        Versions that differ only in ``images:`` (a promotion's before and after) cost one
        kustomize build: the overlay is built without its ``images:`` and each version's images
        are applied by :mod:`imagetag`, kustomize's own transformer ported to Python. Overlays
        that port cannot reproduce exactly are built by kustomize once per version.
        """
        archive.check_links(self.root, self.sandbox.check(overlay_dir))
        display = self.project.relpath(folder.kustomization_path(overlay_dir))
        splits = [imagetag.split(text, display) for text in texts]
        stripped = {s.text for s in splits if s is not None}
        if None not in splits and len(stripped) == 1:
            base = self._render_text(overlay_dir, stripped.pop())
            try:
                return [imagetag.apply(base, s.images) for s in splits if s is not None]
            except imagetag.NotEmulated as exc:
                log.debug("%s: kustomize renders each version (%s)", display, exc)
        return [self._render_text(overlay_dir, text) for text in texts]

    def _render_text(self, overlay_dir: Path, text: str) -> Objects:
        """Render ``overlay_dir`` with its kustomization replaced by ``text``.

        The copy sits beside the original, so relative references (``../base/app``) resolve.
        """
        path = folder.kustomization_path(overlay_dir)
        if folder.read_text(path) == text:
            return self.render_overlay(overlay_dir, tree=self.tree)
        digest = hashlib.sha256(text.encode()).hexdigest()
        copy = overlay_dir.parent / f".{overlay_dir.name}.{digest[:12]}."
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(overlay_dir, copy)
        try:
            (copy / path.name).write_text(text, encoding="utf-8")
            return self.render_overlay(copy, tree=f"{self.tree}:{digest}")
        except PromoteError as exc:  # name the user's overlay, not the scratch copy
            for attr in ("message", "hint"):
                text = getattr(exc, attr)
                if text:
                    text = text.replace(str(copy), str(overlay_dir))
                    setattr(exc, attr, text.replace(copy.name, overlay_dir.name))
            raise
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def kustomizer(self) -> render.Kustomize:
        """The kustomize binary, found once per session (before render threads need it)."""
        if self._kustomize is None:
            argv = render.find_kustomize()
            with contextlib.suppress(OSError):  # an upgraded binary must not reuse old renders
                st = Path(argv[0]).stat()
                self._binary = f"{argv} {st.st_size} {st.st_mtime_ns}"
            where = os.environ.get("PROMOTE_RENDER_STORE") or render.cache_dir() / "renders"
            store = renderstore.RenderStore(Path(where), binary=self._binary or str(argv))
            self._kustomize = render.Kustomize(argv, store=store)
        return self._kustomize

    @property
    def sandbox(self) -> sandbox_mod.Sandbox:
        """What main's overlays may read: main's files and promote.yaml's remote bases."""
        return sandbox_mod.for_project(self.project)

    @property
    def tree(self) -> str:
        """The git tree of main (what the exported files are)."""
        if not self._tree:
            self._tree = self.repo.commit_info(self.sha).tree
        return self._tree

    def push_main(self, commit: str, parent: str, attempt: int) -> str | None:
        """Move the remote's main from ``parent`` to ``commit`` (a compare-and-swap): None
        when it moved, else main's new head after a short backoff, to rebuild on and retry
        (``attempt`` counts the tries; past MAX_PUSH_ATTEMPTS it gives up with PushRejected)."""
        tracking = f"refs/remotes/{self.remote}/{self.main}"
        try:
            self.repo.push(
                self.remote, [git_repo.RefUpdate(f"refs/heads/{self.main}", commit, expect=parent)]
            )
        except PushRejected:
            if attempt + 1 >= MAX_PUSH_ATTEMPTS:
                raise PushRejected(
                    f"{self.main} kept moving; gave up after {MAX_PUSH_ATTEMPTS} attempts."
                ) from None
            time.sleep(random.uniform(0.01, 0.03 * min(attempt + 1, 10)))
            self.repo.fetch(self.remote, [f"+refs/heads/{self.main}:{tracking}"])
            return self.repo.resolve(tracking)
        self.repo.set_ref(tracking, commit)
        return None

    def overlay_file(self, env: config.Environment) -> str:
        return self.project.relpath(folder.kustomization_path(env.overlay_dir))

    def read_overlay(self, env: config.Environment) -> tuple[str, list[overlay.Image]]:
        """The kustomization text of ``env`` on main and its images (parsed once per session)."""
        if env.name not in self._parsed:
            path = folder.kustomization_path(env.overlay_dir)
            text = folder.read_text(path, self.overlay_file(env))
            self._parsed[env.name] = (text, overlay.parse_images(text, self.overlay_file(env)))
        return self._parsed[env.name]

    def rejections(self) -> list[rejections.Rejection]:
        """The rejected versions on main (``releases/rejected/``), read once per call."""
        return read_rejections(self.project)

    def hold(self, env: str) -> holds.Hold | None:
        """``env``'s hold on main (``releases/holds/ENV.yaml``), if it is held."""
        return read_hold(self.project, env)

    def user(self, explicit: str | None = None) -> str:
        """Who runs the command: --author/--as, else $PROMOTE_USER, else the forge token's user
        (server forges), else git user.name."""
        found = explicit or os.environ.get("PROMOTE_USER")
        if found:
            return found
        server = forge_factory.server_forge(self.forge)
        return server.whoami() if server is not None else self.repo.identity().name


def read_rejections(project: config.Project) -> list[rejections.Rejection]:
    """The rejected versions in ``project``'s files (main's, in a session or an export)."""
    folder_ = project.root / rejections.REJECTED_DIR
    found = sorted(folder_.glob("*/*.yaml")) if folder_.is_dir() else []
    return [rejections.parse(p.read_text(encoding="utf-8"), project.relpath(p)) for p in found]


def read_hold(project: config.Project, env: str) -> holds.Hold | None:
    """``env``'s hold in ``project``'s files (``releases/holds/ENV.yaml``), if it is held."""
    path = project.root / holds.record_path(env)
    if not path.is_file():
        return None
    return holds.parse(path.read_text(encoding="utf-8"), holds.record_path(env))


def status_from_file(path: Path) -> plan.StatusReader:
    """A status reader over a JSON file ``{ENV: {synced, healthy, since, images, revision,
    verified}}`` (``verified``: the images its agent verified after deploy).

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
            verified={str(k): str(v) for k, v in item["verified"].items()}
            if isinstance(item.get("verified"), dict)
            else None,
        )

    return read


@contextlib.contextmanager
def session(repo_dir: Path, *, offline: bool = False) -> Iterator[Session]:
    """Fetch the remote's main and open it; ``offline`` falls back to the last fetched main."""
    repo = git_repo.Repo.open(repo_dir)
    repo.signing_key = os.environ.get(SIGNING_KEY_ENV) or None  # promote's own commits
    tmp: Path | None = None
    clients: list[ServerForge] = []
    try:
        # Only the remote, main branch and forge access come from the worktree; the rest
        # (policy, environments, the forge PRs go to) from main.
        has_file = (repo.path / config.PROJECT_FILE).is_file()
        # Isolated (here and for main): one environment's broken file stops only the commands
        # that use that environment (Project.env raises its error), never the others.
        wt = config.load_project(repo.path, isolate=True) if has_file else None
        cfg = wt.config if wt is not None else config.ProjectConfig()
        remote, main = cfg.remote, cfg.main_branch
        tracking = f"refs/remotes/{remote}/{main}"
        url = repo.remote_url(remote)  # a clear error when the remote is not configured
        early = forge_factory.open_server_forge(cfg, repo)
        clients += [early] if early else []
        # The local forge's PR refs come in the same fetch as main (one round trip, not two).
        specs = forge_factory.fetch_refspecs(cfg)
        with repo.environment(early.git_environment(url) if early else {}):
            fetched = _fetch_main(repo, cfg, early, url, specs, offline=offline)
            sha = repo.resolve(tracking)
            tmp = archive.scratch_dir("promote-main-")
            root = repo.export_tree(sha, tmp / "tree")
            project = config.load_project(root, isolate=True)
            if early is not None and project.config.forge == cfg.forge:
                forge: forge_base.Forge = early
            else:
                forge = forge_factory.open_forge(project, repo, offline=offline)
                clients += [f for f in [forge_factory.server_forge(forge)] if f is not None]
            if fetched:
                forge_factory.mark_fetched(forge)
            try:
                yield Session(repo, remote, main, sha, root, project, forge, offline)
            except PromoteError as exc:
                exc.relative_to(root)  # the repository's paths, not the scratch copy's
                raise
    finally:
        for client in clients:
            client.disconnect()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        repo.close()


def _fetch_main(
    repo: git_repo.Repo,
    cfg: config.ProjectConfig,
    early: ServerForge | None,
    url: str,
    specs: list[str],
    *,
    offline: bool,
) -> bool:
    """Fetch main (and the local forge's PR refs); False when ``offline`` allowed the last
    fetched main instead. A failure asks the forge why first, when it can tell."""
    remote, main = cfg.remote, cfg.main_branch
    tracking = f"refs/remotes/{remote}/{main}"
    local = cfg.forge.type == "local"
    try:
        repo.fetch(remote, specs, prune=local)
        return True
    except GitUnavailable:
        if not offline or repo.try_resolve(tracking) is None:
            if early is not None:
                early.check_access()  # says why, when the forge knows (token, repo)
            raise
        log.warning("%s cannot be reached; using the last fetched %s", remote, main)
    except RemoteBranchMissing as exc:
        raise GitError(
            f"{remote} ({url}) has no branch {main!r} yet: promote works from the "
            f"remote's {main}, and nothing has been pushed there.",
            hint=f"Commit the repository and push it: `git add -A && git commit -m "
            f"'promote init' && git push -u {remote} {main}`.",
        ) from exc
    except GitError:
        if early is not None:
            early.check_access()
        raise
    return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
