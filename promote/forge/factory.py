"""Which forge a project uses: the one place that knows every forge (DESIGN.md §3).

The promotion engine asks here for "the project's forge" and gets a
:class:`~promote.forge.base.Forge`; it never imports a concrete forge. The forges themselves stay
unaware of each other (an import contract says so); only this module names all three.
Gitea and GitHub are imported on demand: httpx and the API clients cost ~0.2 s of start-up that
the local forge never needs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

from promote import config
from promote.errors import ForgeError
from promote.forge import base as forge_base
from promote.forge import local as local_forge
from promote.git import repo as git_repo

if TYPE_CHECKING:
    from promote.forge.rest import ServerForge


def open_forge(
    project: config.Project, repo: git_repo.Repo, *, offline: bool = False
) -> forge_base.Forge:
    """The forge ``promote.yaml`` names; raises ForgeError for an unknown ``forge.type``."""
    cfg = project.config
    if cfg.forge.type == "local":
        return local_forge.LocalForge(
            repo, remote=cfg.remote, main_branch=cfg.main_branch, offline=offline
        )
    server = open_server_forge(cfg, repo)
    if server is None:
        raise ForgeError(f"promote.yaml: forge.type {cfg.forge.type!r} is not known.")
    return server


def open_server_forge(cfg: config.ProjectConfig, repo: git_repo.Repo) -> ServerForge | None:
    """A Gitea/GitHub forge (reads the token from forge.tokenEnv), None for the local forge."""
    if cfg.forge.type == "gitea":
        from promote.forge.gitea import GiteaForge

        return GiteaForge.from_config(cfg.forge, main_branch=cfg.main_branch, git=repo)
    if cfg.forge.type == "github":
        from promote.forge.github import GitHubForge

        return GitHubForge.from_config(cfg.forge, main_branch=cfg.main_branch, git=repo)
    return None


def server_forge(forge: forge_base.Forge) -> ServerForge | None:
    """The forge when it is a server (approvals are reviews, the token says who you are).

    No server forge exists unless its module was loaded, so an unloaded module answers "no"
    without importing httpx.
    """
    rest = sys.modules.get("promote.forge.rest")
    if rest is not None and isinstance(forge, rest.ServerForge):
        return cast("ServerForge", forge)
    return None


def fetch_refspecs(cfg: config.ProjectConfig) -> list[str]:
    """What one fetch brings: main, and on the local forge its PR branches and records too."""
    remote, main = cfg.remote, cfg.main_branch
    if cfg.forge.type == "local":
        return local_forge.refspecs(remote, main)
    return [f"+refs/heads/{main}:refs/remotes/{remote}/{main}"]


def mark_fetched(forge: forge_base.Forge) -> None:
    """Tell a forge that keeps its PRs in the remote that this session's fetch brought them."""
    if isinstance(forge, local_forge.LocalForge):
        forge.mark_fresh()
