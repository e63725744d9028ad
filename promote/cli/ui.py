"""``promote ui``: the read-only web dashboard (the web stack is imported only here)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from promote.cli import common
from promote.cli.output import Format, console, handled
from promote.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)


def _agent_urls(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        env, sep, url = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise UsageError(f"--agent-url {item}: write ENV=URL, e.g. dev=http://127.0.0.1:9101.")
        out[env] = url
    return out


def ui(
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HOST:PORT to serve on."),
    token_env: str | None = typer.Option(
        None,
        "--token-env",
        help="Name of the environment variable holding the access token (required when "
        "--listen is not a loopback address).",
    ),
    agent_url: list[str] = typer.Option(
        [],
        "--agent-url",
        help="ENV=URL: read ENV's status from its agent's /status (repeatable); other "
        "environments are read from their promote-status-ENV ConfigMap.",
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", help="For the status ConfigMaps."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    refresh: float = typer.Option(2.0, "--refresh", help="Seconds before main is read again."),
    repo_dir: Path = common.RepoOpt,
) -> None:
    """Serve the read-only dashboard: release matrix, pull requests, history, agents."""
    with handled(Format.text):
        from promote.ui import app

        host, port = common.parse_listen(listen)
        token = None
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise UsageError(f"--token-env {token_env}: that variable is not set or empty.")
        settings = app.Settings(
            repo_dir=repo_dir.resolve(),
            host=host,
            port=port,
            token=token,
            agent_urls=_agent_urls(agent_url),
            kubeconfig=kubeconfig,
            context=context,
            refresh_s=refresh,
        )
        app.check_exposure(settings)
        shown = f"[{host}]" if ":" in host else host
        console.print(f"promote ui: serving http://{shown}:{port}/ (read-only; Ctrl-C stops)")
        app.serve(settings)
