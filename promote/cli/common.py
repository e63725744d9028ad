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


def parse_listen(text: str, *, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:9090``) -> (host, port); UsageError
    naming ``flag`` when it is not one, or the port is not 1-65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise errors.UsageError(f"{flag} {text}: write HOST:PORT, e.g. 127.0.0.1:8080.")
    if not 1 <= int(port) <= 65535:
        raise errors.UsageError(f"{flag} {text}: the port must be a number from 1-65535.")
    return host.strip("[]"), int(port)


def parse_duration_flag(text: str, *, flag: str) -> float:
    """Seconds of a duration flag (``60s``, ``5m``, ``1h30m``); UsageError naming ``flag``."""
    try:
        seconds = config.parse_duration(text).total_seconds()
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise errors.UsageError(
            f"{flag} {text}: not a duration; write a number with a unit: 500ms, 30s, 5m, 1h30m."
        )
    return seconds


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
