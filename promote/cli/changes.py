"""What ``secrets set|rotate`` and ``keys add|remove|sync`` share: ``--pr/--no-pr`` and how a
change that went to a pull request or the working tree is shown."""

from __future__ import annotations

from typing import Any

import typer

from promote.cli import prs
from promote.cli.output import console, err_console
from promote.promotion import governance

PrOpt = typer.Option(
    None,
    "--pr/--no-pr",
    help="Open a pull request from main (the default when the change touches an environment "
    "that requires approvals; keys/ and .sops.yaml touch every environment), or edit the "
    "working tree only (--no-pr).",
    show_default=False,
)


def change_json(done: governance.Outcome[Any]) -> dict[str, Any]:
    """The fields every PR-capable authoring command adds to its ``-o json`` output."""
    pr = done.pull_request
    return {
        "route": str(done.route),
        "scope": list(done.scope.envs),
        "pullRequest": prs.pr_to_dict(pr) if pr else None,
        "warning": done.warning,
    }


def print_change(done: governance.Outcome[Any]) -> None:
    pr = done.pull_request
    if pr is not None:
        as_name = "" if pr.url.startswith(("http://", "https://")) else " --as NAME"
        console.print(
            f"Opened PR [bold]#{pr.number}[/]: {pr.title}\n  {pr.url} (branch {pr.branch})\n"
            f"  affects: {done.scope.describe()}\n"
            f"  next: `promote approve {pr.number}{as_name}`, then `promote merge {pr.number}`"
        )
    elif done.route is governance.Route.PULL_REQUEST:
        console.print("Nothing changed on main; no pull request opened.")
    if done.warning:
        err_console.print(f"[yellow]warning:[/] {done.warning}", highlight=False)
