"""``promote init``, ``promote envs``, ``promote validate``."""

from __future__ import annotations

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
    esc,
    handled,
    new_table,
    print_broken,
    progress,
)
from promote.config import scaffold
from promote.errors import ConfigError, ExitCode, PolicyBlocked
from promote.promotion import validate


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("envs")(envs)
    app.command("validate")(validate_cmd)


def init(
    directory: Path = typer.Argument(Path("."), help="New or empty directory."),
    envs_csv: str = typer.Option("dev,staging,prod", "--envs", help="Environments, in order."),
    output: Format = OutputOpt,
) -> None:
    """Scaffold a GitOps repository: promote.yaml, environments/, overlays/, keys/."""
    with handled(output):
        names = [e.strip() for e in envs_csv.split(",") if e.strip()]
        written = scaffold.init_project(directory, names)
    if output == Format.json:
        emit_json({"directory": str(directory.resolve()), "environments": names, "files": written})
        return
    console.print(f"Created a promote repository in [bold]{esc(directory.resolve())}[/]")
    for rel in written:
        console.print(f"  {rel}", markup=False)
    console.print("Next: `promote keys init <env>` for each environment, then `promote validate`.")
    console.print(
        "Then commit and push, and pin that first commit as where trust starts: start each "
        "agent with `promote agent --env ENV --trust-from $(git rev-parse HEAD)`, or have "
        "ENV's approvers each sign it: `promote pin ENV $(git rev-parse HEAD) --as NAME`."
    )


def _env_row(env: config.Environment) -> dict[str, object]:
    c = env.config
    cluster = c.cluster
    target = "in-cluster" if cluster.in_cluster else (cluster.context or cluster.kubeconfig or "-")
    return {
        "name": env.name,
        "upstream": c.upstream,
        "overlay": str(c.overlay or f"overlays/{env.name}"),
        "cluster": {"target": target, "namespace": cluster.namespace},
        "approvals": {
            "required": c.approvals.required,
            "approvers": list(c.approvals.approvers),
            "allowSelfApproval": c.approvals.allow_self_approval,
        },
        "sync": {
            "interval": config.format_duration(c.sync.interval),
            "selfHeal": c.sync.self_heal,
            "prune": c.sync.prune,
        },
        "gates": {
            "soak": config.format_duration(c.gates.soak) if c.gates.soak else None,
            "pinDigests": c.gates.pin_digests,
            "signedImages": c.gates.signed_images,
        },
        "verification": _verification_row(c),
        "windows": {"allow": len(c.windows.allow), "deny": len(c.windows.deny)},
        "autoPromote": c.auto_promote,
    }


def _verification_row(c: config.EnvironmentConfig) -> dict[str, object] | None:
    """Verification after deploy, as ``promote envs`` shows it (None: nothing verified)."""
    v = c.verification
    if v is None:
        return None
    return {
        "healthyFor": config.format_duration(v.healthy_for),
        "http": v.http is not None,
        "job": v.job is not None,
        "rollback": c.rollback,
    }


def _gates_text(r: dict[str, Any]) -> str:
    """The table's gates cell: every gate and release control that is on, or "-"."""
    gates, checked, windows = r["gates"], r["verification"], r["windows"]
    parts = [f"soak {gates['soak']}"] if gates["soak"] else []
    parts += ["pinned digests"] if gates["pinDigests"] else []
    parts += ["signed images"] if gates["signedImages"] else []
    if checked:
        how = " + ".join(k for k in ("http", "job") if checked[k])
        parts.append(
            f"verify {checked['healthyFor']}" + (f" + {how}" if how else "")
            + f", rollback {checked['rollback']}"
        )  # fmt: skip
    if windows["allow"] or windows["deny"]:
        parts.append(f"windows {windows['allow']} allow / {windows['deny']} deny")
    parts += ["auto-promote"] if r["autoPromote"] else []
    return ", ".join(parts) or "-"


def envs(repo_dir: Path = common.RepoOpt, output: Format = OutputOpt) -> None:
    """Show the pipeline in promotion order with each environment's settings (an environment
    whose file does not load: its error, after the others; exit 1)."""
    with handled(output):
        project = common.load(repo_dir, isolate=True)
    order = project.pipeline()
    rows = [_env_row(project.environments[n]) for n in order]
    code = ExitCode.ERROR if project.broken else ExitCode.OK
    if output == Format.json:
        errs = [{"code": e.code, "message": str(e)} for e in project.broken.values()]
        emit_json({"pipeline": order, "environments": rows, "errors": errs}, exit_code=code)
        raise typer.Exit(code)
    console.print("Pipeline: " + " -> ".join(f"[bold]{esc(n)}[/]" for n in order))
    table = new_table(show_lines=False)
    for col in ("env", "upstream", "cluster / namespace", "approvals", "sync", "gates and checks"):
        table.add_column(col)
    for r in rows:
        a, s, cl = r["approvals"], r["sync"], r["cluster"]
        assert isinstance(a, dict) and isinstance(s, dict) and isinstance(cl, dict)
        approvals = (
            f"{a['required']} of {', '.join(a['approvers'])}" if a["required"] else "none"
        ) + (" (self ok)" if a["allowSelfApproval"] else "")
        sync = (
            f"every {s['interval']}"
            + (", self-heal" if s["selfHeal"] else "")
            + (", prune" if s["prune"] else "")
        )
        cells = (
            str(r["name"]),
            str(r["upstream"] or "-"),
            f"{cl['target']} / {cl['namespace']}",
            approvals,
            sync,
            _gates_text(r),
        )
        table.add_row(*map(esc, cells))
    console.print(table)
    print_broken(project.broken)
    raise typer.Exit(code)


def validate_cmd(
    env: list[str] = typer.Option([], "--env", "-e", help="Only these environments."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Load the configuration, render every environment and check it (exit 3 on findings)."""
    with handled(output):
        project = common.load(repo_dir, isolate=True)  # a broken file is reported, not fatal
        with progress("Rendering environments...", output):
            report = validate.validate_project(project, env or None)
        result = {
            "environments": [
                {
                    "name": e.env,
                    "objects": e.objects,
                    "ok": e.ok,
                    "error": e.error,
                    "notices": list(e.notices),
                    "unchecked": list(e.unchecked),
                    "findings": [
                        {"object": f.object, "field": f.field, "message": f.message}
                        for f in e.findings
                    ],
                }
                for e in report.envs
            ],
            "keys": list(report.people),
        }
        # An environment file that does not load is a configuration error (exit 1); the
        # other environments are still checked and every problem is named at once.
        unloaded = [e.env for e in report.envs if e.unloaded]
        if not report.ok:
            code, kind = (ExitCode.ERROR, "config") if unloaded else (ExitCode.BLOCKED, "invalid")
            if output == Format.json:
                errs = [{"code": kind, "message": p} for p in report.problems()]
                emit_json({**result, "errors": errs}, exit_code=code)
                raise typer.Exit(code)
            _print_passed(report)
            summary = f"validation failed: {len(report.problems())} problem(s) found"
            if unloaded:
                raise ConfigError(
                    f"{summary}; environment file(s) that do not load: {', '.join(unloaded)}.",
                    problems=report.problems(),
                )
            raise PolicyBlocked(summary + ".", problems=report.problems())
    if output == Format.json:
        emit_json(result)
        return
    _print_passed(report)


def _print_passed(report: validate.Report) -> None:
    """The environments that passed (a failed run then names every problem on stderr)."""
    for e in report.envs:
        if not e.ok:
            continue
        console.print(f"[green]ok[/] {esc(e.env)}: {e.objects} objects rendered and checked")
        for notice in e.notices:
            console.print(f"  note: {notice}", markup=False)
        if e.unchecked:
            console.print(
                f"   {e.env}: no schema for {', '.join(e.unchecked)} (not checked; add its "
                "CustomResourceDefinition to the render to check it)",
                markup=False,
            )
