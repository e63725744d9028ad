"""``promote trust ENV REVISION``: accept a revision the agent refused, signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from promote.cli import common
from promote.cli.output import Format, OutputOpt, console, emit_json, handled, progress
from promote.errors import UsageError
from promote.promotion import engine
from promote.reconcile import acceptance, factory, pins


def register(app: typer.Typer) -> None:
    app.command("trust")(trust)
    app.command("pin")(pin)


def trust(
    env: str = typer.Argument(..., help="The environment whose agent should deploy REVISION."),
    revision: str = typer.Argument(..., help="The revision of main to accept."),
    as_name: str | None = typer.Option(
        None,
        "--as",
        envvar="PROMOTE_USER",
        help="Your name as an approver of ENV (keys/release-managers/NAME.asc): chooses the key.",
    ),
    base: str | None = typer.Option(
        None, "--from", help="The last verified revision (default: read from ENV's status)."
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Accept REVISION for ENV after seeing the whole rendered diff from its last verified
    revision: your signature is recorded; the agent deploys REVISION once enough approvers of
    ENV's policy have signed."""
    with handled(output):
        if not as_name:
            raise UsageError("say whose key signs: --as NAME (an approver of the environment).")
        with progress("Reading the change...", output), engine.session(repo_dir) as s:
            ov = factory.Overrides(kubeconfig=kubeconfig, context=context)
            v = base or acceptance.last_verified(s, env, ov)
            done = acceptance.accept(
                s,
                env,
                revision,
                base=v,
                approver=as_name,
                show=None if output == Format.json else _show,
            )
    if output == Format.json:
        emit_json(_to_dict(done))
        return
    counted = ", ".join(done.counted) or "none"
    if done.accepted:
        console.print(
            f"[green]{done.revision[:12]} is accepted for {done.env}[/] ({counted}); its agent "
            "deploys it on its next pass."
        )
    else:
        console.print(
            f"Signed as {done.approver}: {len(done.counted)} of {done.required} ({counted}); "
            f"{done.required - len(done.counted)} more from {' or '.join(done.waiting)} must "
            f"run `promote trust {done.env} {done.revision[:12]} --from {done.base[:12]}`."
        )


def _show(a: acceptance.Acceptance) -> None:
    console.print(
        f"Accepting {a.revision[:12]} for {a.env} from {a.base[:12]} (its last verified "
        f"revision): {len(a.changed)} file(s) changed",
        markup=False,
    )
    for path in a.changed:
        console.print(f"  {path}", markup=False, highlight=False)
    d = a.rendered
    if d.error:
        console.print(f"[red]{d.env}: cannot render {a.revision[:12]}[/]: {d.error}")
        return
    console.print(f"rendered changes in {d.env}: {len(d.diffs)} object(s) (Secrets redacted)")
    for o in d.diffs:
        console.print(o.text, markup=False, end="", highlight=False)


def _to_dict(a: acceptance.Acceptance) -> dict[str, Any]:
    return {
        "env": a.env,
        "base": a.base,
        "revision": a.revision,
        "approver": a.approver,
        "changedFiles": list(a.changed),
        "rendered": {
            "env": a.rendered.env,
            "error": a.rendered.error,
            "diff": [
                {"object": o.ref, "action": str(o.action), "text": o.text} for o in a.rendered.diffs
            ],
        },
        "counted": list(a.counted),
        "required": a.required,
        "waiting": list(a.waiting),
        "accepted": a.accepted,
    }


def pin(
    env: str = typer.Argument(..., help="The environment whose agents start trusting REVISION."),
    revision: str = typer.Argument(..., help="A commit of main (e.g. the first one)."),
    as_name: str | None = typer.Option(
        None, "--as", envvar="PROMOTE_USER", help="Your name as an approver of ENV."
    ),
    repo_dir: Path = common.RepoOpt,
    output: Format = OutputOpt,
) -> None:
    """Sign and push the tag promote/pin/ENV/NAME naming REVISION: ENV's agents start trust
    there once enough of its approvers have signed theirs (and no pin is given or stored)."""
    with handled(output):
        if not as_name:
            raise UsageError("say whose key signs: --as NAME (an approver of the environment).")
        with progress("Signing the pin...", output), engine.session(repo_dir) as s:
            done = pins.sign_pin(s, env, revision, approver=as_name)
    if output == Format.json:
        emit_json({"env": done.env, "revision": done.revision, "tag": done.tag,
                   "signer": done.signer})  # fmt: skip
        return
    console.print(f"Signed {done.tag} -> {done.revision[:12]} as {done.signer}.", markup=False)
