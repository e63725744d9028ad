"""``promote demo [--dir D] [--keep] | --stop --dir D``: the narrated end-to-end demo."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from rich.status import Status

from promote.cli.output import Format, OutputOpt, console, emit_json, err_console, esc, handled
from promote.errors import UsageError
from promote.local import demo


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


class _Narrator:
    """The story on a console: step headers, the commands run with their output, checks."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self._spinner: Status | None = None

    def begin(self, index: int, total: int, title: str) -> None:
        self.out.print(f"\n[bold cyan]{index:>2}/{total}[/] [bold]{esc(title)}[/]", highlight=False)
        if self.out.is_terminal:
            self._spinner = self.out.status("working...")
            self._spinner.start()

    def say(self, text: str) -> None:
        self.out.print(f"      {text}", markup=False, highlight=False)

    def command(self, display: str, output: str) -> None:
        self.out.print(f"      [dim]$[/] {esc(display)}", highlight=False, markup=True, emoji=False)
        for line in output.splitlines():
            self.out.print(f"        {line}", style="dim", markup=False, highlight=False)

    def end(self, result: demo.StepResult) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        mark = "[green]ok[/]" if result.ok else "[bold red]FAILED[/]"
        self.out.print(f"      {mark} ({result.duration_s:.1f}s) ", end="", highlight=False)
        self.out.print(result.detail, markup=False, highlight=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so the demo's cleanup runs on SIGTERM as on Ctrl-C


def _step_dict(s: demo.StepResult) -> dict[str, Any]:
    return {"name": s.name, "title": s.title, "ok": s.ok, "duration": s.duration_s,
            "detail": s.detail}  # fmt: skip


def demo_cmd(
    directory: Path | None = typer.Option(
        None, "--dir", help="Where the demo keeps everything (default: a new temporary dir)."
    ),
    keep: bool = typer.Option(
        False, "--keep", help="Leave the cluster, agents and OpenBao running to explore."
    ),
    stop: bool = typer.Option(False, "--stop", help="Stop a kept demo (needs --dir)."),
    output: Format = OutputOpt,
) -> None:
    """Run the whole story locally: CI -> dev -> staging -> prod with approvals, self-heal."""
    with handled(output):
        if stop:
            _stop(directory, output)
            return
        signal.signal(signal.SIGTERM, _interrupt)
        narrator = _Narrator(err_console if output == Format.json else console)
        options = demo.Options(directory=directory, keep=keep, show_views=output == Format.text)
        outcome = demo.run(options, narrator)
    code = 1 if outcome.failed else 0
    if output == Format.json:
        _emit_outcome(outcome, code)
        raise typer.Exit(code)
    _print_outcome(outcome)
    sys.stdout.flush()
    raise typer.Exit(code)


def _stop(directory: Path | None, output: Format) -> None:
    if directory is None:
        raise UsageError("--stop needs --dir D: the directory `promote demo --keep` used.")
    problems = demo.stop(directory)
    if problems:
        raise demo.DemoError("the demo was not fully stopped: " + "; ".join(problems))
    if output == Format.json:
        emit_json({"stopped": str(directory)})
    else:
        console.print(f"Stopped the demo and removed {directory}.", markup=False)


def _emit_outcome(outcome: demo.Outcome, code: int) -> None:
    failed = outcome.failed
    payload: dict[str, Any] = {
        "dir": str(outcome.directory),
        "kept": outcome.kept,
        "durationSeconds": outcome.duration_s,
        "steps": [_step_dict(s) for s in outcome.steps],
        "pids": outcome.pids,
        "explore": outcome.explore,
    }
    if failed:
        payload["errors"] = [
            {"code": "demo", "message": f"step {failed.name} failed: {failed.detail}"}
        ]
    emit_json(payload, exit_code=code)


def _print_outcome(outcome: demo.Outcome) -> None:
    failed = outcome.failed
    if failed:
        err_console.print(
            f"\n[bold red]error:[/] the demo failed at step {esc(failed.name)}: ", end=""
        )
        err_console.print(failed.detail, markup=False)
    else:
        passed = sum(1 for s in outcome.steps if s.name != "teardown")
        console.print(
            f"\n[bold green]Demo complete[/] in {outcome.duration_s:.0f}s: {passed} steps "
            "behaved as narrated."
        )
    if outcome.kept:
        console.print(f"\nIt is still running in {outcome.directory}. Explore it:", markup=False)
        for line in outcome.explore:
            console.print(f"  {line}", markup=False, highlight=False)
        ours = [str(p) for n, p in outcome.pids.items() if n not in ("etcd", "kube-apiserver")]
        pids = " ".join(ours)
        console.print(
            f"Or by hand: promote cluster down --dir {outcome.directory / 'cluster'}; kill {pids}",
            markup=False,
        )
