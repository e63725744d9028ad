"""Options shared by every command group."""

from __future__ import annotations

from pathlib import Path

import typer

from promote import config, errors

RepoOpt = typer.Option(
    Path("."),
    "-C",
    "--repo-dir",
    help="The GitOps repository's working tree (default: .).",
    envvar="PROMOTE_REPO_DIR",
)


def load(repo_dir: Path) -> config.Project:
    return config.load_project(repo_dir)


def check_envs(repo_dir: Path, *names: str | None) -> None:
    """Refuse an environment name the working tree does not define (a usage error, exit 2),
    before any Git or network work. A working tree whose configuration does not load leaves
    the check to the command (which reads the remote's main)."""
    try:
        project = config.load_project(repo_dir)
    except errors.ConfigError:
        return
    for name in names:
        if name is not None:
            project.env(name)
