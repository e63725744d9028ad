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
# Every command that reaches a cluster takes both (the demo's hints pass --kubeconfig to each).
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="Kubeconfig file (default: env file).")
ContextOpt = typer.Option(None, "--context", help="Kubeconfig context (default: env file).")


def load(repo_dir: Path, *, isolate: bool = False) -> config.Project:
    """``isolate``: an environment whose file does not load is in ``Project.broken``."""
    return config.load_project(repo_dir, isolate=isolate)


def load_for(repo_dir: Path, env: str) -> config.Project:
    """The project as one environment's agent needs it: promote.yaml and that environment's
    file only, so another environment's broken file never stops this agent (issue 14)."""
    env_dir = Path(repo_dir) / config.ENV_DIR
    if env_dir.is_dir() and not (env_dir / f"{env}.yaml").is_file():
        try:
            config.load_project(repo_dir).env(env)  # the usage error, in pipeline order
        except errors.ConfigError:  # another file is broken: list the files' names
            known = ", ".join(sorted(p.stem for p in env_dir.glob("*.yaml"))) or "none"
            raise errors.UsageError(
                f"unknown environment {env!r}; this project defines: {known} "
                f"(one file per environment in {config.ENV_DIR}/)."
            ) from None
    return config.load_project(repo_dir, only=env)


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
