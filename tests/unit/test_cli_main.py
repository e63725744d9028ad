"""The command table that keeps start-up fast matches what the command modules register."""

from __future__ import annotations

import importlib

import typer

from promote.cli import main


def _registered(module: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(f"promote.cli.{module}").register(app)
    names = {c.name for c in app.registered_commands}
    names |= {g.name for g in app.registered_groups}
    return {n for n in names if n}


def test_every_command_is_owned_by_the_module_that_registers_it() -> None:
    for module in main._COMMAND_MODULES:
        for command in _registered(module):
            assert main.COMMAND_OWNERS.get(command) == module, command


def test_only_the_commands_module_is_loaded_for_a_command() -> None:
    assert main._modules_for(["-v", "validate", "--env", "dev"]) == ["project"]
    assert main._modules_for(["--help"]) == main._COMMAND_MODULES
    assert main._modules_for(["nonsense"]) == main._COMMAND_MODULES


def test_command_lists_show_each_summary_as_one_flowing_line() -> None:
    """`promote --help` and a group's --help list each command with its summary unbroken
    (a docstring's line break once split envs' summary mid-sentence)."""
    import subprocess
    import sys

    env = {"COLUMNS": "400", "PATH": "/usr/bin:/bin", "TERM": "dumb"}
    for args in (["--help"], ["keys", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "promote", *args], capture_output=True, text=True, env=env
        ).stdout
        rows = [line for line in out.splitlines() if line.startswith("│ ")]
        assert rows, out
        for row in rows:  # a row whose summary was split leaves a row with no command name
            assert not row.startswith("│   "), row
    listing = subprocess.run(
        [sys.executable, "-m", "promote", "--help"], capture_output=True, text=True, env=env
    ).stdout
    envs_row = next(line for line in listing.splitlines() if line.startswith("│ envs "))
    assert "an environment whose file does not load" in envs_row
