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
