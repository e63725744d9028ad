"""``promote auto``: promote versions verified upstream into environments with autoPromote."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import typer

from promote.cli import common, prs
from promote.cli.output import Format, OutputOpt, console, emit_json, esc, handled
from promote.errors import ExitCode
from promote.promotion import auto, engine, plan
from promote.reconcile import gate


def register(app: typer.Typer) -> None:
    app.command("auto")(auto_cmd)


def auto_cmd(
    envs: list[str] = typer.Option([], "--env", help="Only this environment (repeatable)."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit (3 if one is refused)."),
    interval: float = typer.Option(60.0, "--interval", min=1.0, help="Seconds between passes."),
    as_name: str | None = typer.Option(
        None, "--as", envvar="PROMOTE_USER", help="Whose registered key signs the PRs it opens."
    ),
    status_file: Path | None = typer.Option(
        None,
        "--status-file",
        envvar="PROMOTE_AUTO_STATUS_FILE",
        help="Status JSON instead of the agents' promote-status-ENV ConfigMaps.",
    ),
    kubeconfig: str | None = common.KubeconfigOpt,
    context: str | None = common.ContextOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Promote what each autoPromote environment's upstream agent verified (a loop)."""
    stop = threading.Event()
    while True:
        with handled(output):
            targets = auto.auto_targets(repo_dir, envs)
            reader: plan.StatusReader = (
                engine.status_from_file(status_file)
                if status_file
                else _agents(repo_dir, kubeconfig=kubeconfig, context=context)
            )
        results = auto.promote_all(
            repo_dir, targets, status_reader=reader, now=datetime.now(UTC), opener=as_name
        )
        code = ExitCode.BLOCKED if any(r.blocked for r in results) else 0
        if any(r.outcome is auto.Outcome.FAILED for r in results):
            code = ExitCode.ERROR
        _report(results, output, code if once else 0)
        if once:
            raise typer.Exit(code)
        stop.wait(interval)


def _agents(repo_dir: Path, *, kubeconfig: str | None, context: str | None) -> plan.StatusReader:
    with engine.session(repo_dir, offline=True) as s:
        return gate.AgentStatusReader(s.project, kubeconfig=kubeconfig, context=context)


def _report(results: list[auto.Result], output: Format, code: int) -> None:
    if output == Format.json:
        emit_json(
            {
                "results": [
                    {
                        "env": r.env,
                        "outcome": str(r.outcome),
                        "message": r.message,
                        "problems": list(r.problems),
                        "plan": plan.to_dict(r.plan) if r.plan else None,
                        "pullRequest": prs.pr_to_dict(r.pull_request) if r.pull_request else None,
                    }
                    for r in results
                ]
            },
            exit_code=code,
        )
        return
    if not results:
        console.print("No environment sets autoPromote: true; nothing to do.")
    for r in results:
        colour = "red" if r.blocked else "green" if r.outcome is auto.Outcome.MERGED else "yellow"
        console.print(f"{esc(r.env)}: [{colour}]{esc(r.outcome)}[/]: {esc(r.message)}")
