"""``promote to``, ``rollback``, ``set-image``, ``history``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.markup import escape

from promote.cli import common, prs
from promote.cli.output import (
    Format,
    OutputOpt,
    console,
    emit_json,
    esc,
    handled,
    print_rows,
    progress,
)
from promote.errors import ExitCode, PolicyBlocked
from promote.forge import base as forge_base
from promote.promotion import auto, engine, history, plan, propose, setimage
from promote.reconcile import factory, gate, live

TitleOpt = typer.Option(None, "--title", help="PR title (default: generated from the plan).")
AuthorOpt = typer.Option(
    None,
    "--author",
    help="A label for the PR record only; it never says who opened the PR (the signature "
    "does, see --as). Gitea/GitHub: the token's user opens it.",
)
AsOpt = typer.Option(
    None,
    "--as",
    envvar="PROMOTE_USER",
    help="Whose registered key (keys/developers/NAME.asc or keys/release-managers/NAME.asc) "
    "signs the PR; default: the one registered key whose secret half GNUPGHOME holds.",
)
DryRunOpt = typer.Option(False, "--dry-run", help="Print the plan; change nothing.")


def register(app: typer.Typer) -> None:
    app.command("to")(to)
    app.command("rollback")(rollback)
    app.command("set-image")(set_image)


def _print_plan(p: plan.Plan, *, full_diff: bool) -> None:
    origin = f"{p.source} -> {p.target}" if p.source else p.target
    console.print(f"[bold]{esc(p.kind)}[/] {esc(origin)} (main {p.revision[:12]})")
    print_rows(
        ["app", "image", f"{p.target} now", "after"],
        [[c.app, c.name, c.old_version, c.new_version] for c in p.changes],
    )
    if p.parity is not None:
        if p.parity.ok:
            console.print(
                f"secrets: [green]ok[/] ({esc(p.target)} has every Secret and key of "
                f"{esc(p.source)})"
            )
        else:
            console.print("secrets: [red]missing[/]")
            for gap in p.parity.gaps:
                console.print(f"  - {gap}", markup=False)
    for g in p.gates:
        colour = "green" if not g.blocks else "red"
        console.print(f"gate {esc(g.name)}: [{colour}]{esc(g.status)}[/]: {esc(g.reason)}")
    for f in p.policy:
        colour = "red" if f.blocks else "yellow"
        console.print(f"[{colour}]policy[/] {escape(str(f))}", highlight=False)
    if p.policy_bindings and not p.policy:
        console.print(f"policies: [green]ok[/] ({p.policy_bindings} binding(s) checked)")
    for note in p.notes:
        console.print(f"note: {note}", markup=False)
    a = p.approvals
    who = f"{a.required} of {', '.join(a.approvers)}" if a.required else "none required"
    console.print(f"approvals: {who}", markup=False)
    console.print(f"rendered changes: {len(p.diff)} object(s) (Secret values redacted)")
    for d in p.diff if full_diff else ():
        console.print(d.text, markup=False, end="")


def _print_live(found: live.LiveCheck | None) -> None:
    """``--live``: the server's rejections and what would change in the cluster."""
    if found is None:
        return
    for r in found.rejections:
        console.print(f"[red]live[/] {esc(found.env)}: {escape(str(r))}", highlight=False)
    for d in found.diff:
        console.print(d.text, markup=False, end="")
    for name in found.prunes:
        console.print(f"live: {name} would be pruned", markup=False)


def _finish(
    p: plan.Plan,
    output: Format,
    *,
    dry_run: bool,
    open_pr: bool,
    s: engine.Session,
    title: str | None,
    author: str | None,
    opener: str | None = None,
    live_check: live.LiveCheck | None = None,
) -> tuple[forge_base.PullRequest | None, bool]:
    """The common tail of to/rollback/set-image --pr: stop when empty or blocked, else open the
    PR; returns it and whether it already existed (an open PR proposing the same images)."""
    if p.empty or dry_run:
        return None, False
    if p.blocked:
        if output == Format.json:
            errors = [{"code": "blocked", "message": m} for m in p.problems()]
            extra = {"live": live_check.to_dict()} if live_check else {}
            emit_json(
                {"plan": plan.to_dict(p), **extra, "errors": errors}, exit_code=ExitCode.BLOCKED
            )
            raise typer.Exit(ExitCode.BLOCKED)
        _print_plan(p, full_diff=False)
        _print_live(live_check)
        raise PolicyBlocked(
            f"cannot promote into {p.target}: {len(p.problems())} problem(s); no PR opened.",
            problems=p.problems(),
        )
    if not open_pr:
        return None, False
    existing = propose.open_duplicate(s, p)
    if existing is not None:
        return existing, True
    return propose.open_pull_request(s, p, title=title, author=author, opener=opener), False


def _print_existing(pr: forge_base.PullRequest) -> None:
    console.print(
        f"PR [bold]#{pr.number}[/] (opened by {esc(pr.author)}, "
        f"{pr.created_at:%Y-%m-%d %H:%M} UTC) "
        f"already proposes exactly these images; no new PR.\n  {esc(pr.url)}\n"
        f"  next: approve and merge #{pr.number}, or `promote close {pr.number}` and run again"
    )


def _report(
    p: plan.Plan,
    pr: forge_base.PullRequest | None,
    output: Format,
    dry: bool,
    existing: bool = False,
    live_check: live.LiveCheck | None = None,
) -> None:
    if output == Format.json:
        emit_json(
            {
                "upToDate": p.empty,
                "dryRun": dry,
                "plan": plan.to_dict(p),
                "pullRequest": prs.pr_to_dict(pr) if pr else None,
                "existing": existing,
                **({"live": live_check.to_dict()} if live_check else {}),
            }
        )
        return
    if p.empty:
        console.print(f"{p.target} is already up to date; nothing to promote.", markup=False)
        return
    _print_plan(p, full_diff=dry)
    _print_live(live_check)
    if pr is not None and existing:
        _print_existing(pr)
    elif pr is not None:
        as_name = "" if pr.url.startswith(("http://", "https://")) else " --as NAME"
        approve = f"`promote approve {pr.number}{as_name}`, then " if p.approvals.required else ""
        console.print(
            f"Opened PR [bold]#{pr.number}[/]: {esc(pr.title)}\n"
            f"  {esc(pr.url)} (branch {esc(pr.branch)})\n"
            f"  next: {approve}`promote merge {pr.number}`"
        )
    elif p.blocked:
        raise typer.Exit(ExitCode.BLOCKED)


def to(
    env: str = typer.Argument(..., help="Target environment."),
    source: str | None = typer.Option(
        None, "--from", help="Source environment (default: upstream)."
    ),
    apps: list[str] = typer.Option([], "--app", help="Only this app (repeatable)."),
    dry_run: bool = DryRunOpt,
    title: str | None = TitleOpt,
    author: str | None = AuthorOpt,
    as_name: str | None = AsOpt,
    status_file: Path | None = typer.Option(
        None,
        "--status-file",
        envvar="PROMOTE_STATUS_FILE",
        help="Status JSON for the soak gate instead of the agents' promote-status-ENV.",
    ),
    live_check: bool = typer.Option(
        False,
        "--live",
        help="Also dry-run the change against ENV's cluster (server-side, dryRun=All; "
        "settings from main): admission rejections block, the live diff is shown. Secrets "
        "are sent with placeholder values, never decrypted.",
    ),
    kubeconfig: str | None = common.KubeconfigOpt,
    context: str | None = common.ContextOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Promote images from the upstream environment into ENV through a pull request."""
    with handled(output):
        common.check_envs(repo_dir, env, source)
        from_file = engine.status_from_file(status_file) if status_file else None
        found, ov = None, factory.Overrides(kubeconfig=kubeconfig, context=context)
        with progress(f"Planning into {env}...", output), engine.session(repo_dir) as s:
            reader = from_file or gate.AgentStatusReader(s.project, kubeconfig=kubeconfig,
                                                         context=context)  # fmt: skip
            p = propose.plan_promotion(s, env, source=source, apps=apps, status_reader=reader)
            if live_check:
                found = live.check_plan(s, p, overrides=ov)
                p = live.fold(p, found)
            if dry_run and p.blocked and output == Format.json:
                emit_json(
                    {"plan": plan.to_dict(p), "live": found.to_dict() if found else None},
                    exit_code=ExitCode.BLOCKED,
                )
                raise typer.Exit(ExitCode.BLOCKED)
            pr, existing = _finish(
                p,
                output,
                dry_run=dry_run,
                open_pr=True,
                s=s,
                title=title,
                author=author,
                opener=as_name,
                live_check=found,
            )
        _report(p, pr, output, dry_run, existing, live_check=found)


def rollback(
    env: str = typer.Argument(..., help="Environment to roll back."),
    to_rev: str | None = typer.Option(None, "--to", help="Main revision to restore images from."),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Undo the last N changes (default 1)."
    ),
    dry_run: bool = DryRunOpt,
    title: str | None = TitleOpt,
    author: str | None = AuthorOpt,
    as_name: str | None = AsOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Open a PR restoring ENV's images to an earlier state (same approval policy)."""
    with handled(output):
        common.check_envs(repo_dir, env)
        with progress(f"Planning the rollback of {env}...", output), engine.session(repo_dir) as s:
            rev = history.rollback_revision(s, env, to=to_rev, steps=steps)
            p = propose.plan_rollback(s, env, rev)
            pr, existing = _finish(
                p,
                output,
                dry_run=dry_run,
                open_pr=True,
                s=s,
                title=title,
                author=author,
                opener=as_name,
            )
        if pr is not None and not existing:  # a manual rollback holds auto-promotion
            auto.hold_after_rollback(repo_dir, env, pr, now=datetime.now(UTC), who=as_name)
        _report(p, pr, output, dry_run, existing)


def set_image(
    env: str = typer.Argument(..., help="Environment whose overlay gets the images (usually dev)."),
    images: list[str] = typer.Argument(..., help="NAME=TAG, NAME@DIGEST or NAME=TAG@DIGEST."),
    as_pr: bool = typer.Option(False, "--pr", help="Open a PR instead of pushing to main."),
    title: str | None = TitleOpt,
    author: str | None = AuthorOpt,
    as_name: str | None = AsOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Set image versions in ENV's overlay (CI's entry point): push to main, or open a PR."""
    with handled(output):
        common.check_envs(repo_dir, env)
    with handled(output), progress(f"Updating {env}...", output), engine.session(repo_dir) as s:
        commit = None
        if as_pr:
            p = setimage.plan_set_image(s, env, images)
            pr, existing = _finish(
                p,
                output,
                dry_run=False,
                open_pr=True,
                s=s,
                title=title,
                author=author,
                opener=as_name,
            )
        else:
            p, commit = setimage.push_images(s, env, images, title=title)
            pr, existing = None, False
    if output == Format.json:
        emit_json(
            {
                "upToDate": p.empty,
                "plan": plan.to_dict(p),
                "commit": commit,
                "pullRequest": prs.pr_to_dict(pr) if pr else None,
                "existing": existing,
            }
        )
        return
    if p.empty:
        console.print(f"{env} already has these images; nothing changed.", markup=False)
        return
    for c in p.changes:
        console.print(
            f"{esc(env)}: {esc(c.name)} {esc(c.old_version)} -> [bold]{esc(c.new_version)}[/]"
        )
    if commit:
        console.print(f"Pushed {commit[:12]} to main.")
    if pr and existing:
        _print_existing(pr)
    elif pr:
        console.print(f"Opened PR [bold]#{pr.number}[/]: {esc(pr.title)} ({esc(pr.url)})")
