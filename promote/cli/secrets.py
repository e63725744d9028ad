"""``promote secrets set|list|rotate|check``: an environment's encrypted Secrets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from promote import config
from promote.cli import changes, common
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
from promote.errors import PolicyBlocked
from promote.forge.base import PRKind
from promote.promotion import governance
from promote.secrets.authoring import rekey, store


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Secrets encrypted per environment (SOPS) or referenced in Vault; values never "
        "leave memory unencrypted.",
        no_args_is_help=True,
    )
    group.command("set")(set_cmd)
    group.command("list")(list_cmd)
    group.command("rotate")(rotate)
    group.command("check")(check)
    app.add_typer(group, name="secrets")


def set_cmd(
    env: str = typer.Argument(..., help="Environment name."),
    name: str = typer.Argument(..., help="Secret name (overlays/ENV/secrets/NAME.sops.yaml)."),
    pairs: list[str] = typer.Argument(
        ...,
        help="KEY=-  (value from stdin, safest), KEY=@FILE (the file's bytes) or KEY=VALUE "
        "(visible in your shell history and process list).",
        show_default=False,
    ),
    pr: bool | None = changes.PrOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Create or update a Secret of ENV; other keys keep their values."""
    with handled(output):
        project = common.load(repo_dir)
        assignments = store.parse_assignments(
            pairs, read_stdin=lambda: sys.stdin.buffer.read(), read_file=Path.read_bytes
        )
        decision = governance.decide(project, governance.secret_paths(project, env, name))
        with progress("Encrypting...", output):
            done = governance.run(
                project,
                repo_dir,
                decision,
                pr=pr,
                environ=os.environ,
                kind=PRKind.SECRETS,
                make=lambda p, environ: store.set_secret(
                    p, env, name, assignments, environ=environ
                ),
                title=lambda r: f"Set {', '.join(r.changed)} of Secret {r.name} in {r.env}",
                summary=lambda r: (
                    f"{'Creates' if r.created else 'Updates'} `{r.file}`: sets "
                    f"{', '.join(r.changed)} (keys now: {', '.join(r.keys)})."
                ),
            )
    _show_set(done, output)


def _show_set(done: governance.Outcome[store.SetResult], output: Format) -> None:
    result = done.result
    if output == Format.json:
        emit_json(
            {
                "environment": result.env,
                "name": result.name,
                "file": result.file,
                "created": result.created,
                "keys": list(result.keys),
                "changed": list(result.changed),
                "resourceAdded": result.resource_added,
                **changes.change_json(done),
            }
        )
        return
    verb = "created" if result.created else "updated"
    console.print(
        f"{verb} {result.file}: set {', '.join(result.changed)} "
        f"(keys now: {', '.join(result.keys)})",
        markup=False,
    )
    if result.resource_added:
        console.print(
            f"  added secrets/{result.name}.sops.yaml to the overlay's resources", markup=False
        )
    changes.print_change(done)


def list_cmd(
    env: str = typer.Argument(..., help="Environment name."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Secret names and their KEYS (no private key needed; values are never shown)."""
    with handled(output), progress("Rendering...", output):
        project = common.load(repo_dir)
        infos = store.list_secrets(project, env)
    if output == Format.json:
        emit_json(
            {
                "environment": env,
                "secrets": [
                    {
                        "name": i.name,
                        "keys": list(i.keys),
                        "encrypted": i.encrypted,
                        "vaultRefs": dict(i.vault_refs),
                        "file": i.file,
                    }
                    for i in infos
                ],
            }
        )
        return
    if not infos:
        console.print(f"{env}: no Secrets.", markup=False)
        return
    table = new_table()
    for col in ("secret", "keys", "stored", "file"):
        table.add_column(col)
    for i in infos:
        stored = "sops" if i.encrypted else ("vault" if i.vault_refs else "plain!")
        table.add_row(*map(esc, (i.name, ", ".join(i.keys), stored, i.file or "-")))
    console.print(table)


def rotate(
    env: str = typer.Argument(..., help="Environment name."),
    pr: bool | None = changes.PrOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """A new data key for every encrypted file of ENV (exit 3 for files no key here opens)."""

    def make(p: config.Project, environ: dict[str, str]) -> rekey.RekeyReport:
        report = rekey.rotate_env(p, env, environ=environ)
        if report.blocked:  # before anything is committed or proposed
            raise rekey.blocked_error(report, "secrets rotate")
        return report

    with handled(output):
        project = common.load(repo_dir)
        decision = governance.decide(project, governance.env_secret_paths(project, env))
        with progress("Rotating data keys...", output):
            done = governance.run(
                project,
                repo_dir,
                decision,
                pr=pr,
                environ=os.environ,
                kind=PRKind.SECRETS,
                make=make,
                title=lambda r: f"Rotate the data keys of {env}'s Secrets",
                summary=lambda r: f"A new data key for {len(r.files)} encrypted file(s) of {env}.",
            )
    report = done.result
    files = [{"file": f.file, "action": f.action} for f in report.files]
    if output == Format.json:
        emit_json({"environment": env, "files": files, **changes.change_json(done)})
        return
    for f in report.files:
        console.print(f"  {f.action}: {f.file}", markup=False)
    console.print(f"{env}: {len(report.files)} file(s) have a new data key.", markup=False)
    changes.print_change(done)


def check(
    source: str = typer.Argument(..., help="Environment the secrets should come from."),
    target: str = typer.Argument(..., help="Environment that must have them too."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Every Secret and key of SOURCE must exist in TARGET (no decryption; exit 3 on a gap)."""
    with handled(output):
        project = common.load(repo_dir)
        with progress("Rendering...", output):
            result = store.check_parity(project, source, target)
        if not result.ok:
            raise PolicyBlocked(
                f"{target} lacks {len(result.gaps)} secret(s)/key(s) that {source} has; add them "
                f"with `promote secrets set {target} NAME KEY=-`.",
                problems=[str(g) for g in result.gaps],
            )
    if output == Format.json:
        emit_json({"source": source, "target": target, "gaps": []})
        return
    console.print(f"ok: {target} has every Secret and key that {source} has.", markup=False)
