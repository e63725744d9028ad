"""``promote history``: what reached an environment, with approvals verified now."""

from __future__ import annotations

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
    new_table,
    progress,
)
from promote.promotion import engine, history
from promote.reconcile import audit


def register(app: typer.Typer) -> None:
    app.command("history")(history_cmd)


def history_cmd(
    env: str = typer.Argument(..., help="Environment."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="At most N entries."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """What reached ENV, newest first, with approvals verified now (works offline); a change
    that reached ENV's inputs without approval is marked unapproved."""
    with handled(output):
        common.check_envs(repo_dir, env)
    with (
        handled(output),
        progress("Reading history...", output),
        engine.session(repo_dir, offline=True) as s,
    ):
        entries = audit.history(s, env, limit=limit)
        rejected = history.rejected_in(entries, s.rejections())
    if output == Format.json:
        emit_json(
            {
                "env": env,
                "entries": [history.to_dict(e) for e in entries],
                "rejections": [history.rejection_to_dict(r, c) for r, c in rejected],
            }
        )
        return
    if not entries:
        console.print(f"Nothing has reached {env} yet.", markup=False)
        return
    table = new_table()
    for col in ("when (UTC)", "kind", "from", "images", "PR", "approvals"):
        table.add_column(col)
    for e in entries:
        source = f"{e.source or '-'}" + (f"@{e.source_revision[:8]}" if e.source_revision else "")
        images = "\n".join(f"{c.name} {c.old_version} -> {c.new_version}" for c in e.changes)
        approvals = "\n".join(
            f"{esc(c.approval.approver)}: "
            + prs.ICON.get(str(c.signature), f"[red]{esc(c.signature)}[/]")
            for c in e.approvals
        )
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M}",
            esc(e.kind) + (f"\n[red]break-glass[/]: {esc(e.break_glass)}" if e.break_glass else ""),
            esc(source),
            esc(images or ", ".join(e.files) or "-"),
            f"#{e.pr.number}" if e.pr else e.commit[:8],
            approvals or "-",
            style="red" if e.judged is history.Judged.UNAPPROVED else None,
        )
    console.print(table)
    _print_judged(entries)
    for r, commits in rejected:
        where = ", ".join(c[:8] for c in commits)
        console.print(f"[red]rejected[/] {esc(r.describe())} (reached {esc(env)} in {where})")


def _print_judged(entries: list[history.Entry]) -> None:
    """Below the table: each change that reached the environment without approval."""
    for e in entries:
        if e.judged is history.Judged.UNAPPROVED:
            console.print(
                f"[bold red]unapproved[/] {e.commit[:8]} ({', '.join(e.files) or '-'}): "
                f"{escape(e.why)}",
                highlight=False,
            )
        elif e.judged is history.Judged.RESTORED:
            console.print(
                f"[yellow]restored[/] {e.commit[:8]}: back to a verified revision's inputs",
                highlight=False,
            )
