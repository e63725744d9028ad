"""Output for people (rich) and machines (``-o json``), and the one place errors become exit codes.

Every command takes ``-o/--output text|json``. With json, a success prints
``{"status": "ok", "exit_code": N, ...result}`` and an error prints the envelope
``{"status": "error", "exit_code": N, "errors": [{"code", "message"}]}`` on stdout
(pipx's result envelope); the human form goes to stderr.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from promote import errors

if TYPE_CHECKING:
    from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def esc(value: object) -> str:
    """``value`` as text that rich prints as written: every dynamic part of a message printed
    with markup goes through this (a Kubernetes error's ``[name="worker"]`` is not a style)."""
    return escape(str(value))


def new_table(**options: Any) -> Table:
    """A rich table for people (rich.table is imported here: ~50 ms that json output skips)."""
    from rich.table import Table

    return Table(**options)


def print_rows(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned columns under a bold header: a long list (a 100-app plan) in a millisecond,
    where a rich table takes ~0.1 s."""
    cells = [headers, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    console.print(line(headers), style="bold", markup=False)
    if rows:
        console.print("\n".join(line(r) for r in rows), markup=False)


class Format(enum.StrEnum):
    text = "text"
    json = "json"


OutputOpt = typer.Option(Format.text, "-o", "--output", help="Output format: text or json.")


def emit_json(payload: dict[str, Any], *, exit_code: int = 0) -> None:
    body = {"status": "ok" if exit_code in (0, errors.ExitCode.DIFFERENCES) else "error"}
    body["exit_code"] = exit_code  # type: ignore[assignment]
    body.update(payload)
    sys.stdout.write(json.dumps(body, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def print_broken(broken: Mapping[str, errors.PromoteError]) -> None:
    """Each environment whose file does not load, on stderr as an error (the command then
    exits 1 after printing what the other environments show)."""
    for name, exc in broken.items():
        err_console.print(f"[bold red]error:[/] {esc(name)}: {esc(str(exc))}", markup=True)


def fail(exc: errors.PromoteError, fmt: Format) -> NoReturn:
    """Print a PromoteError (text to stderr, or the json envelope) and exit with its code."""
    code = int(exc.exit_code)
    if fmt == Format.json:
        errs: list[dict[str, str]] = [{"code": exc.code, "message": str(exc)}]
        for problem in getattr(exc, "problems", []) or []:
            errs.append({"code": exc.code, "message": problem})
        emit_json({"errors": errs}, exit_code=code)
    else:
        label = "blocked" if code == errors.ExitCode.BLOCKED else "error"
        err_console.print(f"[bold red]{label}:[/] {esc(exc.message)}", markup=True, highlight=False)
        for problem in getattr(exc, "problems", []) or []:
            err_console.print(f"  - {problem}", markup=False)
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {esc(exc.hint)}", markup=True)
    raise typer.Exit(code)


def json_requested(argv: list[str]) -> bool:
    """Whether the command line asks for json (read before click parses it: a usage error
    stops parsing before ``--output`` has a value)."""
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and argv[i + 1 : i + 2] == ["json"]:
            return True
        if arg in ("-ojson", "--output=json"):
            return True
    return False


def click_error_json(exc: typer.TyperException | typer.Abort) -> int:
    """The json envelope for what the parser refuses (an unknown option, a missing argument)
    or an abort; returns the exit code: 2 for usage, as the text form's."""
    if isinstance(exc, typer.Abort):
        emit_json({"errors": [{"code": "error", "message": "Aborted."}]}, exit_code=1)
        return 1
    code = int(getattr(exc, "exit_code", 1))
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    if code == errors.ExitCode.USAGE:
        path = ctx.command_path if ctx is not None else "promote"
        message = f"{path}: {message} (see `{path} --help`)."
    kind = errors.UsageError.code if code == errors.ExitCode.USAGE else errors.PromoteError.code
    emit_json({"errors": [{"code": kind, "message": message}]}, exit_code=code)
    return code


@contextlib.contextmanager
def handled(fmt: Format) -> Iterator[None]:
    """Map PromoteError to its exit code; anything else is a bug and shows its traceback."""
    try:
        yield
    except errors.PromoteError as exc:
        fail(exc, fmt)


@contextlib.contextmanager
def progress(message: str, fmt: Format) -> Iterator[None]:
    """A spinner for people on a terminal; silent for json and when stderr is not a TTY."""
    if fmt == Format.json or not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield
