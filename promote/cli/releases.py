"""``promote reject``, ``unreject``, ``hold``, ``resume``: release records kept in Git."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from promote.cli import common, prs
from promote.cli.output import Format, OutputOpt, console, emit_json, handled, progress
from promote.promotion import rejections, releases

AppArg = typer.Argument(..., help="The app: an image's last path segment (e.g. web-app).")
VersionArg = typer.Argument(..., help="TAG, sha256:DIGEST or TAG@sha256:DIGEST.")


def register(app: typer.Typer) -> None:
    app.command("reject")(reject)
    app.command("unreject")(unreject)
    app.command("hold")(hold)
    app.command("resume")(resume)


def reject(
    app_name: str = AppArg,
    version: str = VersionArg,
    reason: str = typer.Option(..., "--reason", help="Why (shown in every plan it blocks)."),
    evidence: str | None = typer.Option(None, "--evidence", help="A link to the evidence."),
    as_name: str | None = typer.Option(None, "--as", envvar="PROMOTE_USER", help="Who rejects."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Reject a version everywhere: pushed to main at once (placing a record needs no approval)."""
    with handled(output), progress(f"Rejecting {app_name} {version}...", output):
        placed = releases.reject(
            repo_dir,
            app_name,
            version,
            reason=reason,
            evidence=evidence,
            who=as_name,
            now=datetime.now(UTC),
        )
    r = placed.record
    hint = _not_recorded_hint(
        placed.not_recorded,
        f"lift it (`promote unreject {r.app} {r.version}`, a PR) and reject it again",
    )
    if output == Format.json:
        emit_json({"rejection": _to_dict(r), "commit": placed.commit, **hint})
        return
    if placed.commit is None:
        console.print(f"Already rejected: {r.describe()}", markup=False)
        _print_hint(hint)
        return
    console.print(f"Rejected {r.app} {r.version}: {r.path}, pushed {placed.commit[:12]} to main.")


def unreject(
    app_name: str = AppArg,
    version: str = VersionArg,
    as_name: str | None = typer.Option(
        None, "--as", envvar="PROMOTE_USER", help="Whose registered key signs the PR."
    ),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Open a PR lifting a rejection (it needs the strictest environment's approvals)."""
    with handled(output), progress(f"Proposing to lift {app_name} {version}...", output):
        proposal = releases.unreject(repo_dir, app_name, version, opener=as_name)
    pr = proposal.pull_request
    if output == Format.json:
        emit_json(
            {
                "rejection": _to_dict(proposal.result),
                "scope": list(proposal.scope.envs),
                "pullRequest": prs.pr_to_dict(pr) if pr else None,
            }
        )
        return
    if pr is not None:
        console.print(
            f"Opened PR [bold]#{pr.number}[/]: {pr.title}\n  affects {proposal.scope.describe()}"
            f"\n  next: approvals from the strictest environment, then `promote merge {pr.number}`"
        )


def _to_dict(r: rejections.Rejection) -> dict[str, object]:
    return {**r.to_dict(), "path": r.path}


def hold(
    env: str = typer.Argument(..., help="Environment to hold."),
    reason: str = typer.Option(..., "--reason", help="Why (shown in every plan into ENV)."),
    as_name: str | None = typer.Option(None, "--as", envvar="PROMOTE_USER", help="Who holds."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Pause auto-promotion into ENV: a record pushed to main (no approval needed)."""
    with handled(output), progress(f"Holding {env}...", output):
        held = releases.hold(repo_dir, env, reason=reason, who=as_name, now=datetime.now(UTC))
    _report_hold(held, output, placed=True)


def resume(
    env: str = typer.Argument(..., help="Environment to resume."),
    as_name: str | None = typer.Option(None, "--as", envvar="PROMOTE_USER", help="Who resumes."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Lift ENV's hold: the record is removed from main."""
    with handled(output), progress(f"Resuming {env}...", output):
        held = releases.resume(repo_dir, env, who=as_name)
    _report_hold(held, output, placed=False)


def _report_hold(held: releases.Held, output: Format, *, placed: bool) -> None:
    h = held.hold
    hint = {} if h is None or not placed else _not_recorded_hint(
        held.not_recorded, f"`promote resume {h.env}`, then `promote hold {h.env} --reason ...`"
    )  # fmt: skip
    if output == Format.json:
        found = None if h is None else {"env": h.env, "reason": h.reason, "at": h.at.isoformat(),
                                         "by": h.by, "path": h.path}  # fmt: skip
        emit_json({"hold": found, "commit": held.commit, **hint})
        return
    if h is None:
        console.print("Not on hold; nothing changed.")
    elif held.commit is None:
        console.print(f"Already held: {h.describe()}", markup=False)
        _print_hint(hint)
    else:
        verb = "Held" if placed else "Resumed"
        console.print(f"{verb} {h.env}: {h.path}, pushed {held.commit[:12]} to main.", markup=False)


def _not_recorded_hint(reason: str | None, how: str) -> dict[str, object]:
    """JSON fields (and the text line) for a record already placed with another reason."""
    if reason is None:
        return {"notRecorded": None}
    return {
        "notRecorded": {"reason": reason},
        "hint": f"Your reason {reason!r} was not recorded: the record keeps its first reason. "
        f"To change it: {how}.",
    }


def _print_hint(fields: dict[str, object]) -> None:
    if fields.get("hint"):
        console.print(str(fields["hint"]), markup=False)
