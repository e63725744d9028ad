"""``promote prs``, ``show``, ``approve``, ``merge``, ``close``, ``comment``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from promote.cli import common
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
from promote.errors import UsageError
from promote.forge import base as forge_base
from promote.promotion import change, documents, engine, readiness, review

BreakGlassOpt = typer.Option(
    False,
    "--break-glass",
    help="Outside the merge windows: approve / merge as break-glass (needs --reason).",
)
ReasonOpt = typer.Option(None, "--reason", help="Why glass is broken (signed; in history).")


def _break_glass(flag: bool, reason: str | None) -> str | None:
    if flag and not (reason or "").strip():
        raise UsageError("--break-glass needs --reason R: say why (it is signed and kept).")
    if reason and not flag:
        raise UsageError("--reason goes with --break-glass.")
    return " ".join(reason.split()) if flag and reason else None


ICON = {"valid": "[green]valid[/]", "forge": "[green]forge[/]"}
# The JSON shapes live with the core, so the dashboard's API gives the same documents.
pr_to_dict = documents.pr_to_dict
checked_to_dict = documents.checked_to_dict
verdict_to_dict = documents.verdict_to_dict
head_to_dict = documents.head_to_dict


def register(app: typer.Typer) -> None:
    app.command("prs")(prs)
    app.command("show")(show)
    app.command("approve")(approve)
    app.command("merge")(merge)
    app.command("close")(close)
    app.command("comment")(comment)


def print_head(seen: change.Inspection) -> None:
    """The head's actual change, before anyone approves it: in red where it is not the plan."""
    if seen.differs_from_plan:
        console.print(
            "[bold red]The head differs from the plan:[/] it changes "
            f"{len(seen.beyond_plan)} file(s) the plan does not explain:"
        )
        for path in seen.beyond_plan:
            console.print(f"  [red]{path}[/]", highlight=False)
    scope = seen.scope.describe()
    console.print(f"affects: {scope}", markup=False, highlight=False)
    console.print(f"opened by: {seen.opener or f'unknown ({seen.opener_problem})'}", markup=False)
    for c in seen.commits:
        how = "promote's own" if c.own else f"signed by {c.signer}" if c.signer else "UNVERIFIED"
        colour = "green" if c.own or c.signer else "red"
        line = f"  commit {c.sha[:12]} [{colour}]{how}[/]"
        console.print(line, highlight=False, end="")
        console.print(f": {c.subject}{f' ({c.detail})' if c.detail else ''}", markup=False)
    for d in seen.diffs:
        if d.error:
            console.print(f"[red]{d.env}: cannot render the head[/]: {d.error}", highlight=False)
            continue
        console.print(f"rendered changes in {d.env}: {len(d.diffs)} object(s) (Secrets redacted)")
        for o in d.diffs:
            console.print(o.text, markup=False, end="", highlight=False)


def prs(
    env: str | None = typer.Option(None, "--env", "-e", help="Only PRs into this environment."),
    state: str = typer.Option("open", "--state", help="open, merged, closed or all."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """List pull requests (promotions, rollbacks, set-image PRs)."""
    with handled(output):
        if state not in ("open", "merged", "closed", "all"):
            raise UsageError(f"--state {state}: use open, merged, closed or all.")
        with progress("Fetching pull requests...", output), engine.session(repo_dir) as s:
            if env:
                s.project.env(env)
            found = s.forge.list(
                env=env, state=None if state == "all" else forge_base.PRState(state)
            )
    if output == Format.json:
        emit_json({"pullRequests": [pr_to_dict(p) for p in found]})
        return
    if not found:
        console.print(f"No {'' if state == 'all' else state + ' '}pull requests.", markup=False)
        return
    table = new_table()
    for col in ("#", "state", "into", "from", "title", "author", "created"):
        table.add_column(col)
    for p in found:
        cells = (
            str(p.number),
            str(p.state),
            p.env,
            p.source or str(p.kind),
            p.title,
            p.author,
            f"{p.created_at:%Y-%m-%d %H:%M}",
        )
        table.add_row(*map(esc, cells))
    console.print(table)


def show(
    pr: str = typer.Argument(..., help="PR number."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Show a pull request: its plan, approvals (signatures verified now) and mergeability."""
    with handled(output):
        number = review.parse_pr(pr)
        with progress("Verifying approvals...", output), engine.session(repo_dir) as s:
            found = s.forge.get(number)
            checked = review.check_approvals(s, s.forge.approvals(number))
            seen, gates = None, None
            if found.state is forge_base.PRState.OPEN:
                seen = review.inspect_pr(s, found, rendered=True)
                gates = readiness.assess(s, found, now=datetime.now(UTC), seen=seen)
    verdict = gates.verdict if gates else None
    if output == Format.json:
        emit_json(
            {
                "pullRequest": pr_to_dict(found, body=True),
                "head": head_to_dict(seen) if seen else None,
                "approvals": [checked_to_dict(c) for c in checked],
                "policy": verdict_to_dict(verdict) if verdict else None,
                "gates": readiness.to_dict(gates) if gates else None,
            }
        )
        return
    console.print(f"[bold]PR #{found.number}[/] {esc(found.title)}")
    console.print(
        f"  {found.state} · {documents.kind_label(found)} · branch {found.branch} "
        f"@ {found.head_sha[:12]} · by {found.author} · {found.url}",
        markup=False,
    )
    if found.merge:
        console.print(
            f"  merged {found.merge.at:%Y-%m-%d %H:%M} UTC by {found.merge.by} "
            f"({found.merge.method}, {found.merge.sha[:12]})",
            markup=False,
        )
    console.print(found.body, markup=False)
    if seen is not None:
        print_head(seen)
    for c in checked:
        status = ICON.get(str(c.signature), f"[red]{esc(c.signature)}[/]")
        console.print(
            f"  approval: {esc(c.approval.approver)} on {c.approval.head_sha[:12]} "
            f"{c.approval.at:%Y-%m-%d %H:%M} UTC: {status} {esc(c.detail)}"
        )
    for note in found.comments:
        console.print(f"  comment by {note.author}: {note.text}", markup=False)
    if gates is not None:
        _print_gates(gates)


def _print_gates(gates: readiness.Readiness) -> None:
    """Approvals, then what else stands before the merge now (what `merge` would say)."""
    mark = "[green]mergeable[/]" if gates.ok else "[yellow]not mergeable[/]"
    console.print(f"{mark}: {esc(gates.verdict.summary())}")
    for problem in gates.verdict.problems() + gates.blocking():
        console.print(f"  - {problem}", markup=False)
    for env, w in gates.window_states:
        console.print(f"  merge windows of {env}: {w.describe()}", markup=False)
    for h in gates.holds:
        console.print(f"  hold: {h.describe()}", markup=False)


def approve(
    pr: str = typer.Argument(..., help="PR number."),
    as_name: str | None = typer.Option(
        None,
        "--as",
        envvar="PROMOTE_USER",
        help="Approver name (keys/release-managers/NAME.asc); default $PROMOTE_USER. "
        "Gitea/GitHub: the token's user approves; omit it.",
    ),
    note: str = typer.Option("", "--comment", "-m", help="A comment, signed with the approval."),
    break_glass: bool = BreakGlassOpt,
    reason: str | None = ReasonOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Approve a PR's current head: signed with your GnuPG key (GNUPGHOME) on the local forge,
    a review by the token's user on Gitea/GitHub."""
    with handled(output):
        number = review.parse_pr(pr)
        glass = _break_glass(break_glass, reason)
        with progress("Signing approval...", output), engine.session(repo_dir) as s:
            seen = review.inspect_pr(s, review.open_pr(s, number, "approve"), rendered=True)
            if output != Format.json:
                print_head(seen)
            found, approval = review.approve(
                s, number, approver=as_name, comment=note, seen=seen, break_glass=glass
            )
    if output == Format.json:
        emit_json(
            {
                "pr": number,
                "approver": approval.approver,
                "env": approval.env,
                "scope": list(approval.scope),
                "head": approval.head_sha,
                "at": approval.at.isoformat(),
                "change": head_to_dict(seen),
            }
        )
        return
    recorded = "signature recorded" if approval.signature else f"review recorded ({found.url})"
    console.print(
        f"Approved PR #{number} ({found.env}) as {approval.approver}, bound to head "
        f"{approval.head_sha[:12]}; {recorded}.",
        markup=False,
    )


def merge(
    pr: str = typer.Argument(..., help="PR number."),
    break_glass: bool = BreakGlassOpt,
    reason: str | None = ReasonOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Merge a PR into main when the target environment's approval policy holds and its merge
    windows are open (else exit 3)."""
    with handled(output):
        number = review.parse_pr(pr)
        glass = _break_glass(break_glass, reason)
        with progress("Checking approvals and merging...", output), engine.session(repo_dir) as s:
            found, result, verdict = review.merge(s, number, break_glass=glass)
    if output == Format.json:
        emit_json(
            {
                "pr": number,
                "env": found.env,
                "merge": {
                    "sha": result.sha,
                    "method": result.method,
                    "by": result.by,
                    "head": result.head_sha,
                    "approvals": list(result.approvals),
                },
                "policy": verdict_to_dict(verdict),
            }
        )
        return
    who = ", ".join(result.approvals) or "no approvals required"
    console.print(
        f"Merged PR #{number} into {found.base} for {found.env} ({result.method}); "
        f"{found.base} is now {result.sha[:12]}. Approved by: {who}.",
        markup=False,
    )


def close(
    pr: str = typer.Argument(..., help="PR number."),
    note: str | None = typer.Option(None, "--comment", "-m", help="Why it is closed."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Close a PR without merging it."""
    with handled(output):
        number = review.parse_pr(pr)
        with engine.session(repo_dir) as s:
            if note:
                s.forge.comment(number, author=s.user(), text=note)
            found = s.forge.close(number, by=s.user())
    if output == Format.json:
        emit_json({"pullRequest": pr_to_dict(found)})
        return
    console.print(f"Closed PR #{number}.")


def comment(
    pr: str = typer.Argument(..., help="PR number."),
    text: str = typer.Argument(..., help="The comment."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Add a comment to a PR."""
    with handled(output):
        number = review.parse_pr(pr)
        with engine.session(repo_dir) as s:
            found = s.forge.comment(number, author=s.user(), text=text)
    if output == Format.json:
        emit_json({"pullRequest": pr_to_dict(found)})
        return
    console.print(f"Commented on PR #{number}.")
