"""The ``promote`` command: a typer app; each command group lives in its own module.

Each module in ``_COMMAND_MODULES`` exposes ``register(app: typer.Typer) -> None`` and adds its
commands (or a sub-typer) to the root app. Commands parse, call one core function, print.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys

import typer

from promote import __version__
from promote.cli import output

_COMMAND_MODULES = [
    "project",
    "cluster",
    "promotion",
    "history",
    "releases",
    "auto",
    "prs",
    "keys",
    "secrets",
    "agent",
    "trust",
    "demo",
    "ui",
]

app = typer.Typer(
    name="promote",
    help=(
        "Secrets-aware GitOps promotion: move releases dev -> staging -> prod through reviewed, "
        "approved pull requests; agents decrypt in memory and self-heal drift.\n\n"
        "Exit codes: 0 ok, 1 error, 2 usage, 3 blocked by policy, 4 differences found."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a local may hold a decrypted value
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"promote {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More logging (-vv debug)."),
) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if os.environ.get("PROMOTE_LOG_LEVEL"):
        level = getattr(logging, os.environ["PROMOTE_LOG_LEVEL"].upper(), level)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # python-gnupg logs every non-zero gpg exit at WARNING ("gpg returned a non-zero error
    # code: 2"); our gpg adapter turns those into messages of its own, so only -vv shows them.
    logging.getLogger("gnupg").setLevel(logging.ERROR if level > logging.DEBUG else level)


# Which module defines each top-level command. Loading only the one being run keeps start-up
# fast (the Kubernetes client and hvac are heavy); `--help` loads them all.
# tests/unit/test_cli_main.py checks this table against what the modules register.
COMMAND_OWNERS = {
    "init": "project", "envs": "project", "validate": "project",
    "cluster": "cluster",
    "agent": "agent", "sync": "agent", "diff": "agent", "status": "agent", "hooks": "agent",
    "keys": "keys", "secrets": "secrets",
    "to": "promotion", "rollback": "promotion", "set-image": "promotion", "history": "history",
    "prs": "prs", "show": "prs", "approve": "prs", "merge": "prs", "close": "prs",
    "comment": "prs",
    "reject": "releases", "unreject": "releases", "hold": "releases", "resume": "releases",
    "trust": "trust", "pin": "trust", "auto": "auto",
    "demo": "demo",
    "ui": "ui",
}  # fmt: skip


def _modules_for(argv: list[str]) -> list[str]:
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None and "--version" in argv:
        return []
    owner = COMMAND_OWNERS.get(command or "")
    if owner in _COMMAND_MODULES:
        return [owner]
    return list(_COMMAND_MODULES)


def load_commands(argv: list[str] | None = None) -> None:
    for name in _modules_for(sys.argv[1:] if argv is None else argv):
        importlib.import_module(f"promote.cli.{name}").register(app)
    _one_line_summaries(app)


def _one_line_summaries(group: typer.Typer) -> None:
    """Each command's summary in a command list: the first paragraph of its help as one
    flowing line. Typer's rich mode keeps a docstring's line breaks there, which breaks the
    list's table mid-sentence."""
    for info in group.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if info.short_help is None and text:
            first = inspect.cleandoc(text).split("\n\n")[0]
            info.short_help = " ".join(first.split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_line_summaries(sub.typer_instance)


def run() -> None:
    load_commands()
    if not output.json_requested(sys.argv[1:]):
        app()
        return
    # Non-standalone: click raises what it would print as a usage box, and -o json gets the
    # error envelope instead (README: errors as {"status": "error", ...}).
    try:
        code = app(standalone_mode=False)
    except (typer.TyperException, typer.Abort) as exc:
        code = output.click_error_json(exc)
    sys.exit(code if isinstance(code, int) else 0)
