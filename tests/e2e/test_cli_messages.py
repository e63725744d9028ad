"""Issue 14: what the CLI prints survives the terminal renderer; exit codes as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_example, run_cli

pytestmark = pytest.mark.e2e


def test_error_text_keeps_bracketed_parts(tmp_path: Path) -> None:
    """rich markup in a message (`[name="worker"]`) is printed, not swallowed (1a)."""
    repo = copy_example(tmp_path / "r")
    env_file = repo / "environments/dev.yaml"
    env_file.write_text(env_file.read_text() + 'env[name="worker"]: 1\n')
    res = run_cli("validate", cwd=repo)
    assert res.code == 1
    assert 'env[name="worker"]' in res.stderr, res.stderr


def test_table_cells_keep_bracketed_parts(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    env_file = repo / "environments/dev.yaml"
    env_file.write_text(env_file.read_text().replace("promote-local", "'[bold]ctx'", 1))
    res = run_cli("envs", cwd=repo, env={"COLUMNS": "300"})
    assert res.code == 0, res.stderr
    assert "[bold]ctx" in res.stdout, res.stdout
