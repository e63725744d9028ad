"""Outside tools that are missing or misnamed: one paragraph naming the variable or the tool and
the fix, exit 1, never a traceback nor a library's log lines (item: a new user's trial)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import Result, copy_example, run_cli

pytestmark = pytest.mark.e2e


def _one_paragraph(res: Result, code: int, *words: str) -> None:
    text = res.stdout + res.stderr
    assert res.code == code, text
    assert "Traceback" not in text and "Error ──" not in text and "gnupg:" not in text, text
    assert "GIT_PYTHON_REFRESH" not in text and "Errno" not in text, text
    for word in words:
        assert word in res.stderr, res.stderr


def _path_without(tmp_path: Path, *tools: str) -> str:
    """A PATH holding every program of ours except ``tools`` (links in one folder)."""
    farm = tmp_path / ("bin-without-" + "-".join(tools))
    farm.mkdir(exist_ok=True)
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = farm / name
            if name not in tools and not link.exists() and not link.is_symlink():
                link.symlink_to(Path(folder, name))
    return str(farm)


@pytest.fixture
def not_a_program(tmp_path: Path) -> Path:
    path = tmp_path / "kustomize.txt"
    path.write_text("not a program\n")
    return path


@pytest.mark.parametrize("kind", ["missing", "folder", "not executable"])
def test_tool_path_variable_that_names_no_program_is_named(
    tmp_path: Path, not_a_program: Path, kind: str
) -> None:
    bad = {"missing": "/nonexistent/kustomize", "folder": str(tmp_path), "not executable": ""}
    value = bad[kind] or str(not_a_program)
    repo = copy_example(tmp_path / "r")
    res = run_cli("validate", cwd=repo, env={"PROMOTE_KUSTOMIZE": value})
    _one_paragraph(res, 1, "PROMOTE_KUSTOMIZE", value, kind.split()[-1].replace("missing", "exist"))


def test_promote_sops_that_names_no_program_is_named(secrets_repo: Path) -> None:
    assert run_cli("keys", "init", "dev", cwd=secrets_repo).code == 0
    res = run_cli(
        "secrets", "set", "dev", "db", "password=-", "--no-pr",
        cwd=secrets_repo, input="x", env={"PROMOTE_SOPS": "/nonexistent/sops"},
    )  # fmt: skip
    _one_paragraph(res, 1, "PROMOTE_SOPS", "/nonexistent/sops does not exist")
