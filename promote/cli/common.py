"""Options shared by every command group."""

from __future__ import annotations

from pathlib import Path

import typer

from promote import config

RepoOpt = typer.Option(
    Path("."),
    "-C",
    "--repo-dir",
    help="The GitOps repository's working tree (default: .).",
    envvar="PROMOTE_REPO_DIR",
)


def load(repo_dir: Path) -> config.Project:
    return config.load_project(repo_dir)
