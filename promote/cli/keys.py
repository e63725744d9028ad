"""``promote keys init|add|remove|sync|list``: an environment's recipients and ``.sops.yaml``."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from pathlib import Path

import typer

from promote import config
from promote.cli import changes, common
from promote.cli.output import Format, OutputOpt, console, emit_json, handled, progress
from promote.errors import UsageError
from promote.forge.base import PRKind
from promote.promotion import governance
from promote.secrets.authoring import keys, rekey


class KeyType(enum.StrEnum):
    age = "age"
    pgp = "pgp"
    vault_transit = "vault-transit"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Environment keys: public recipients in keys/ENV/, private keys outside the repo.",
        no_args_is_help=True,
    )
    group.command("init")(init)
    group.command("add")(add)
    group.command("remove")(remove)
    group.command("sync")(sync)
    group.command("list")(list_keys)
    app.add_typer(group, name="keys")


def _files(report: rekey.RekeyReport) -> list[dict[str, object]]:
    return [
        {"env": f.env, "file": f.file, "action": f.action, "reason": f.reason, "needs": f.needs}
        for f in report.files
    ]


def _finish(
    report: rekey.RekeyReport,
    what: str,
    output: Format,
    payload: dict[str, object],
    done: governance.Outcome[rekey.RekeyReport] | None = None,
) -> None:
    body = {**payload, "sopsConfig": report.config_file, "files": _files(report)}
    if report.blocked:
        raise rekey.blocked_error(report, what)
    if output == Format.json:
        emit_json({**body, **(changes.change_json(done) if done else {})})
        return
    for f in report.files:
        if f.action != "current":
            console.print(f"  {f.action}: {f.file}", markup=False)
    state = "updated" if report.config_changed else "unchanged"
    console.print(
        f"{report.config_file} {state}; {len(report.files)} encrypted file(s) checked.",
        markup=False,
    )
    if done is not None:
        changes.print_change(done)


def _run(
    repo_dir: Path,
    what: str,
    env: str | None,
    pr: bool | None,
    step: Callable[[config.Project, dict[str, str]], rekey.RekeyReport],
    title: str,
) -> governance.Outcome[rekey.RekeyReport]:
    """A keys change: governance (keys/ and .sops.yaml belong to every environment), so a PR
    by default wherever any environment requires approvals."""

    def make(p: config.Project, environ: dict[str, str]) -> rekey.RekeyReport:
        report = step(p, environ)
        if report.blocked:  # nothing half-done is committed or proposed
            raise rekey.blocked_error(report, what)
        return report

    project = common.load(repo_dir)
    decision = governance.decide(project, governance.keys_paths(env))
    return governance.run(
        project,
        repo_dir,
        decision,
        pr=pr,
        environ=os.environ,
        kind=PRKind.KEYS,
        make=make,
        title=lambda r: title,
        summary=lambda r: (
            f"{title}. `.sops.yaml` regenerated; {len(r.files)} encrypted "
            "file(s) checked and re-wrapped where their recipients changed."
        ),
    )


def init(
    env: str = typer.Argument(..., help="Environment name."),
    key_type: KeyType = typer.Option(KeyType.age, "--type", help="age, pgp or vault-transit."),
    out: Path | None = typer.Option(
        None, "--out", help="age: where to write the PRIVATE identity (outside the repository)."
    ),
    pgp_key: str | None = typer.Option(
        None, "--pgp-key", help="pgp: a fingerprint in your keyring or an armoured public key file."
    ),
    vault_uri: str | None = typer.Option(
        None, "--vault-uri", help="vault-transit: https://VAULT/v1/transit/keys/NAME."
    ),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Create (age) or record (pgp, vault-transit) a key for ENV, then update .sops.yaml."""
    with handled(output):
        project = common.load(repo_dir)
        project.env(env)
        identity: Path | None = None
        if key_type == KeyType.age:
            identity, label = keys.create_age_identity(project, env, out=out, environ=os.environ)
        elif key_type == KeyType.pgp:
            if not pgp_key:
                raise UsageError("--type pgp needs --pgp-key FINGERPRINT or --pgp-key FILE.asc.")
            label = keys.add_recipient(project, env, pgp_key, environ=os.environ)
        else:
            if not vault_uri or keys.recipient_kind(vault_uri) != "vault-transit":
                raise UsageError(
                    "--type vault-transit needs --vault-uri https://VAULT/v1/transit/keys/NAME."
                )
            label = keys.add_recipient(project, env, vault_uri, environ=os.environ)
        with progress("Re-wrapping encrypted files...", output):
            report = rekey.sync(project, environ=os.environ, envs=[env])
        if output == Format.text:
            console.print(f"{env}: recipient {label}", markup=False)
            if identity:
                console.print(
                    f"{env}: private identity written to {identity} (mode 0600). Keep it out of "
                    "Git; give it to the agent as SOPS_AGE_KEY_FILE.",
                    markup=False,
                )
        _finish(
            report,
            "keys init",
            output,
            {
                "environment": env,
                "type": key_type.value,
                "recipient": label,
                "identityFile": str(identity) if identity else None,
            },
        )


def add(
    env: str = typer.Argument(..., help="Environment name."),
    recipient: str = typer.Argument(
        ..., help="age1..., a PGP fingerprint or .asc file, or a Vault transit key URI."
    ),
    pr: bool | None = changes.PrOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Add a recipient to ENV and re-wrap ENV's files so it can decrypt them (exit 3: no key)."""
    label: list[str] = []

    def step(p: config.Project, environ: dict[str, str]) -> rekey.RekeyReport:
        label.append(keys.add_recipient(p, env, recipient, environ=environ))
        return rekey.sync(p, environ=environ, envs=[env])

    with handled(output), progress("Re-wrapping encrypted files...", output):
        done = _run(repo_dir, "keys add", env, pr, step, f"Add a recipient to {env}")
        _finish(done.result, "keys add", output, {"environment": env, "added": label[0]}, done)


def remove(
    env: str = typer.Argument(..., help="Environment name."),
    recipient: str = typer.Argument(..., help="The recipient to remove, as it was added."),
    pr: bool | None = changes.PrOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Remove a recipient from ENV, re-wrap ENV's files and rotate their data keys."""
    label: list[str] = []

    def step(p: config.Project, environ: dict[str, str]) -> rekey.RekeyReport:
        label.append(keys.remove_recipient(p, env, recipient, environ=environ))
        return rekey.sync(p, environ=environ, envs=[env], rotate={env})

    with handled(output), progress("Re-wrapping and rotating encrypted files...", output):
        done = _run(repo_dir, "keys remove", env, pr, step, f"Remove a recipient from {env}")
        _finish(done.result, "keys remove", output, {"environment": env, "removed": label[0]}, done)


def sync(
    pr: bool | None = changes.PrOpt,
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Regenerate .sops.yaml from keys/ and re-wrap every file whose recipients changed."""

    def step(p: config.Project, environ: dict[str, str]) -> rekey.RekeyReport:
        return rekey.sync(p, environ=environ)

    with handled(output), progress("Re-wrapping encrypted files...", output):
        done = _run(repo_dir, "keys sync", None, pr, step, "Regenerate .sops.yaml from keys/")
        _finish(done.result, "keys sync", output, {}, done)


def list_keys(
    env: list[str] = typer.Argument(None, help="Environments (default: all)."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Show each environment's recipients (public keys only)."""
    with handled(output):
        project = common.load(repo_dir)
        names = env or project.pipeline()
        rows = {n: keys.read_keys(project, n, environ=os.environ).recipients for n in names}
    if output == Format.json:
        emit_json(
            {
                "environments": [
                    {
                        "name": n,
                        "age": sorted(r.age),
                        "pgp": sorted(r.pgp),
                        "vaultTransit": sorted(r.vault_transit),
                    }
                    for n, r in rows.items()
                ]
            }
        )
        return
    for n, r in rows.items():
        console.print(f"{n}: {', '.join(r.labels()) or '(no recipients)'}", markup=False)
