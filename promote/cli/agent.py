"""``promote agent``, ``promote sync``, ``promote diff``, ``promote status``, ``promote hooks``."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from promote import config
from promote.cli import common
from promote.cli.output import (
    Format,
    OutputOpt,
    console,
    emit_json,
    err_console,
    esc,
    handled,
    new_table,
    print_broken,
    progress,
)
from promote.cluster import client
from promote.errors import ExitCode, PolicyBlocked, UsageError
from promote.git import hooks as hooks_mod
from promote.reconcile import control, factory, webhook
from promote.reconcile import loop as loop_mod
from promote.reconcile import report as report_mod
from promote.reconcile.agent import Agent


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
    app.command("sync")(sync)
    app.command("diff")(diff)
    app.command("status")(status)
    group = typer.Typer(help="Push notifications from a local bare remote to agents.")
    group.command("install")(hooks_install)
    app.add_typer(group, name="hooks")


KubeconfigOpt = common.KubeconfigOpt
ContextOpt = common.ContextOpt
RepoUrlOpt = typer.Option(None, "--repo", help="Git URL to deploy from (default: the remote).")
BranchOpt = typer.Option(None, "--branch", help="Branch to deploy (default: mainBranch).")
TrustFromOpt = typer.Option(
    None,
    "--trust-from",
    help="Pinned revision trust starts at (kept in the cluster after the first pass).",
)


def _build(
    project: config.Project,
    env: str,
    repo_url: str | None,
    branch: str | None,
    kubeconfig: str | None,
    context: str | None,
    allow_mass_prune: bool = False,
    trust_from: str | None = None,
) -> Agent:
    ov = factory.Overrides(
        repo_url=repo_url,
        branch=branch,
        kubeconfig=kubeconfig,
        context=context,
        allow_mass_prune=allow_mass_prune,
        trust_from=trust_from,
    )
    return factory.build_agent(project, env, ov)


def _refuse_unverified(report: Any) -> None:
    """`sync` and `diff` stop where the agent would: an unverified head is not compared."""
    if report.verdict is not None and not report.verdict.verified:
        raise PolicyBlocked(
            report.verdict.summary(),
            hint="Revert the commit, merge the change through an approved PR, or have release "
            "managers accept it with `promote trust ENV REV`.",
        )


def agent(
    env: str = typer.Option(..., "--env", "-e", help="The environment this agent reconciles."),
    repo_url: str | None = RepoUrlOpt,
    branch: str | None = BranchOpt,
    interval: str | None = typer.Option(None, "--interval", help="Full resync period (60s)."),
    listen: str | None = typer.Option(None, "--listen", help="Serve /status, /metrics here."),
    kubeconfig: str | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    once: bool = typer.Option(False, "--once", help="One pass, then exit."),
    allow_mass_prune: bool = typer.Option(
        False,
        "--allow-mass-prune",
        help="Let one pass prune more than half of the environment's objects (refused "
        "otherwise: an emptied overlay is more often a mistake).",
    ),
    no_leader_election: bool = typer.Option(
        False,
        "--no-leader-election",
        help="Act without the Lease promote-agent-ENV: for one replica only (two would both "
        "write).",
    ),
    trust_from: str | None = TrustFromOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Reconcile ENV continuously: verify, render, decrypt in memory, apply, prune, self-heal."""
    with handled(output):
        # None: each revision's own sync.interval (read by the agent from what it deploys).
        interval_s = common.parse_duration_flag(interval, flag="--interval") if interval else None
        if listen:
            common.parse_listen(listen)
        project = common.load_for(repo_dir, env)
        the_agent = _build(
            project, env, repo_url, branch, kubeconfig, context, allow_mass_prune, trust_from
        )
        if once:
            report = the_agent.run_pass()
            the_agent.cache.stop()
            _print_report(env, report, output)
            if report.error:
                raise report.error.cause
            return
        loop = loop_mod.AgentLoop(
            the_agent,
            loop_mod.LoopSettings(
                interval_s=interval_s, listen=listen, leader_election=not no_leader_election
            ),
        )
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        console.print(
            f"promote agent for [bold]{esc(env)}[/]: "
            + (f"syncing every {interval_s:.0f}s" if interval_s else "syncing per sync.interval")
            + (f", serving http://{esc(listen)}/status" if listen else "")
        )
        try:
            loop.run()
        except KeyboardInterrupt:
            loop.stop()


def _print_report(env: str, report: Any, output: Format, *, differences: bool = False) -> None:
    """``differences``: a dry run that would change something (exit 4)."""
    if output == Format.json:
        emit_json(
            {
                "env": env,
                "revision": report.revision,
                "applied": [client.describe_key(k) for k in report.applied],
                "outOfSync": {client.describe_key(k): v for k, v in report.out_of_sync.items()},
                "replace": {client.describe_key(k): v for k, v in report.replace.items()},
                "pruned": [client.describe_key(k) for k in report.pruned],
                "pruneBlocked": report.prune_blocked,
                "health": report.health,
                "error": {"stage": report.error.stage, "message": str(report.error.cause)}
                if report.error
                else None,
                "durationSeconds": round(report.duration_s, 3),
            },
            exit_code=report.error.cause.exit_code
            if report.error
            else (ExitCode.DIFFERENCES if differences else ExitCode.OK),
        )
        if report.error:
            raise typer.Exit(report.error.cause.exit_code)
        if differences:
            raise typer.Exit(ExitCode.DIFFERENCES)
        return
    if report.error:
        return  # handled() prints the error
    console.print(
        f"[bold]{esc(env)}[/] @ {(report.revision or '?')[:12]}: {report.objects} objects, "
        f"{len(report.applied)} applied, {len(report.pruned)} pruned, "
        f"health {esc(report.health)} ({report.duration_s:.2f}s)"
    )
    for k in report.applied:
        console.print(f"  applied {client.describe_key(k)}", markup=False)
    for k in report.pruned:
        console.print(f"  pruned  {client.describe_key(k)}", markup=False)
    if report.prune_blocked:
        console.print(f"[yellow]prune blocked:[/] {esc(report.prune_blocked)}")


def sync(
    env: str = typer.Argument(..., help="Environment to sync once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Apply nothing; show what would."),
    repo_url: str | None = RepoUrlOpt,
    branch: str | None = BranchOpt,
    kubeconfig: str | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    allow_mass_prune: bool = typer.Option(False, "--allow-mass-prune"),
    trust_from: str | None = TrustFromOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Run one reconcile pass for ENV (with --dry-run: print what it would apply and prune)."""
    with handled(output):
        project = common.load_for(repo_dir, env)
        the_agent = _build(
            project, env, repo_url, branch, kubeconfig, context, allow_mass_prune, trust_from
        )
        with progress(f"Syncing {env}...", output):
            report = the_agent.run_pass(dry_run=dry_run)
        the_agent.cache.stop()
        _refuse_unverified(report)
        changes = bool(report.out_of_sync or report.pruned)
        if dry_run and output != Format.json and not report.error:
            console.print(f"[bold]{esc(env)}[/] dry run @ {(report.revision or '?')[:12]}:")
            for k, paths in report.out_of_sync.items():
                verb = "replace" if k in report.replace else "apply"
                line = f"  would {verb} {client.describe_key(k)} ({', '.join(paths[:4])})"
                console.print(line, markup=False)
                if k in report.replace:
                    console.print(f"    {report.replace[k]}", markup=False)
            for k in report.pruned:
                console.print(f"  would prune {client.describe_key(k)}", markup=False)
            if not changes:
                console.print("  nothing to do: in sync")
            raise typer.Exit(ExitCode.DIFFERENCES if changes else ExitCode.OK)
        _print_report(env, report, output, differences=dry_run and changes)
        if report.error:
            raise report.error.cause


def diff(
    env: str = typer.Argument(..., help="Environment to compare."),
    repo_url: str | None = RepoUrlOpt,
    branch: str | None = BranchOpt,
    kubeconfig: str | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    trust_from: str | None = TrustFromOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Desired (Git) vs live (cluster), Secret values redacted; exit 4 when they differ."""
    with handled(output):
        project = common.load_for(repo_dir, env)
        the_agent = _build(project, env, repo_url, branch, kubeconfig, context, False, trust_from)
        with progress(f"Comparing {env}...", output):
            report = the_agent.run_pass(dry_run=True)
        the_agent.cache.stop()
        if report.error:
            raise report.error.cause
        _refuse_unverified(report)
        entries = report_mod.live_differences(report)
    code = ExitCode.DIFFERENCES if entries else ExitCode.OK
    if output == Format.json:
        emit_json(
            {
                "env": env,
                "revision": report.revision,
                "inSync": not entries,
                "differences": entries,
            },
            exit_code=code,
        )
    else:
        if not entries:
            console.print(f"[green]{esc(env)} is in sync[/] with {(report.revision or '?')[:12]}")
        for e in entries:
            if e["replace"]:
                console.print(f"# {e['object']} needs replacement: {e['reason']}", markup=False)
            console.print(e["diff"] or f"{e['object']}: {', '.join(e['paths'])}", markup=False)
    raise typer.Exit(code)


def status(
    repo_url: str | None = RepoUrlOpt,
    kubeconfig: str | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """The release matrix: apps down, environments across: tag in Git, sync, health, behind.
    An environment whose file does not load, or whose cluster cannot be read, is shown with
    its error (exit 1 at the end)."""
    with handled(output):
        project = common.load(repo_dir, isolate=True)
        with progress("Reading Git and each environment's status...", output):
            images, revision, at_main, records = report_mod.git_images(project, repo_url)
            envs = report_mod.read_statuses(
                project, factory.Overrides(kubeconfig=kubeconfig, context=context)
            )
        matrix = report_mod.release_matrix(at_main, images, envs)
        control.mark_rejected(matrix, records)
        main, now = {"project": at_main, **records}, datetime.now(UTC)
        names = at_main.pipeline(broken=True)
        release = {e: control.release_state(main, e, envs.get(e) or {}, now) for e in names}
    # An environment whose file does not load, or whose status cannot be read: exit 1.
    unread = {n: e["error"] for n, e in envs.items() if e["error"] and n not in at_main.broken}
    code = ExitCode.ERROR if at_main.broken or unread else ExitCode.OK
    if output == Format.json:
        errors = [{"code": e.code, "message": str(e)} for e in at_main.broken.values()]
        errors += [{"code": "cluster", "message": f"{n}: {m}"} for n, m in unread.items()]
        emit_json(
            {
                "revision": revision,
                "pipeline": names,
                "apps": matrix,
                "environments": envs,
                "release": release,
                "errors": errors,
            },
            exit_code=code,
        )
        raise typer.Exit(code)
    _print_status(at_main, revision, matrix, envs, release)
    raise typer.Exit(code)


def _print_status(
    at_main: config.Project,
    revision: str,
    matrix: list[dict[str, Any]],
    envs: dict[str, dict[str, Any]],
    release: dict[str, dict[str, Any]],
) -> None:
    table = new_table(title=f"promote status @ {revision[:12]}")
    table.add_column("app")
    names = at_main.pipeline(broken=True)
    for name in names:
        table.add_column(name)
    for row in matrix:
        cells = []
        for name in names:
            c = row["environments"][name]
            if c["error"]:
                cells.append("[red]broken file[/]")
                continue
            mark = " [yellow](behind)[/]" if c["behindUpstream"] else ""
            mark += " [red](rejected)[/]" if c["rejected"] else ""
            cells.append(f"{esc(c['tag'] or '-')}{mark}\n{esc(c['sync'])} · {esc(c['health'])}")
        table.add_row(esc(row["app"]), *cells)
    console.print(table)
    print_broken(at_main.broken)
    for row in matrix:
        for name, c in row["environments"].items():
            if c.get("rejected"):
                console.print(f"{name}: runs a rejected version: {c['rejected']}", markup=False)
    for name, e in envs.items():
        if name in at_main.broken:
            continue  # its file's error, printed above
        for line in control.describe(name, release[name]):
            console.print(line, markup=False)
        checked = (e["status"] or {}).get("verification")
        if checked:
            console.print(
                f"{name}: verification {checked['state']}: {checked['reason']}", markup=False
            )
        rolled = (e["status"] or {}).get("rollback")
        if rolled:
            done = ", ".join(rolled.get("rejected") or []) or "nothing"
            console.print(f"{name}: rollback: rejected {done}; {rolled['message']}", markup=False)
        if e["error"]:
            err_console.print(f"{name}: status unavailable: {e['error']}", markup=False)
        elif e["status"] and e["status"].get("last_error"):
            err = e["status"]["last_error"]
            console.print(
                f"[red]{esc(name)}: failed at {esc(err['stage'])}:[/] {esc(err['message'])}",
                markup=True,
            )


def hooks_install(
    remote: Path = typer.Argument(..., help="The bare repository the team pushes to."),
    agents: list[str] = typer.Option(
        ..., "--agent", help="An agent's --listen address (host:port or URL); repeatable."
    ),
    output: Format = OutputOpt,
) -> None:
    """Write REMOTE's post-receive hook: each push POSTs a signed notification to the agents'
    /hooks/git, signed with $PROMOTE_WEBHOOK_SECRET (the agents must have the same)."""
    with handled(output):
        secret = os.environ.get(webhook.SECRET_ENV, "")
        if not secret:
            raise UsageError(
                f"{webhook.SECRET_ENV} is not set",
                hint="Export the secret the agents were started with, then run this again.",
            )
        urls = [
            (a if "://" in a else f"http://{a}").rstrip("/")
            + ("" if a.endswith(webhook.PATH) else webhook.PATH)
            for a in agents
        ]
        hook = hooks_mod.install_post_receive(remote, urls=urls, secret=secret.encode())
        if output == Format.json:
            emit_json({"hook": str(hook), "agents": urls})
        else:
            console.print(f"installed {hook}: notifies {', '.join(urls)}")
