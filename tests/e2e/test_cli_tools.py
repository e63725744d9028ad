"""Outside tools that are missing or misnamed: one paragraph naming the variable or the tool and
the fix, exit 1, never a traceback nor a library's log lines (item: a new user's trial)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Result, copy_example, run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    example_gitops,
    gpg_keys,
)

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


def test_without_git_on_path_one_paragraph_says_so(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    path = _path_without(tmp_path, "git")
    for args in (("history", "dev"), ("status",)):
        res = run_cli(*args, cwd=repo, env={"PATH": path})
        _one_paragraph(res, 1, "cannot run git: not found on PATH", "install git")


@pytest.fixture
def ops(tmp_path: Path, gpg_keys: Keys) -> GitOps:  # noqa: F811
    ops = example_gitops(tmp_path, gpg_keys)
    ops.env = {"GNUPGHOME": str(gpg_keys.home), "PROMOTE_USER": "dev1"}
    return ops


def _pr(ops: GitOps) -> str:
    assert (
        run_cli("set-image", "dev", "web-app=v3.0.0", "-C", str(ops.clone), env=ops.env).code == 0
    )
    opened = run_cli("to", "staging", "-o", "json", "-C", str(ops.clone), env=ops.env)
    assert opened.code == 0, opened.stderr
    return str(opened.json()["pullRequest"]["number"])


def test_approve_without_gpg_prints_only_our_message(ops: GitOps, tmp_path: Path) -> None:
    number = _pr(ops)
    env = {**ops.env, "PATH": _path_without(tmp_path, "gpg")}
    res = run_cli("approve", number, "--as", "rm2", "-C", str(ops.clone), env=env)
    _one_paragraph(res, 1, "cannot run gpg: not found on PATH", "GnuPG")
    assert "ERROR" not in res.stderr, res.stderr


def test_missing_tools_name_no_library(tmp_path: Path) -> None:
    """`promote init` without git: the files are written and the message says what to do."""
    path = _path_without(tmp_path, "git")
    res = run_cli("init", str(tmp_path / "gitops"), env={"PATH": path})
    _one_paragraph(res, 1, "git init", "Install git")
    assert shutil.which("git")  # the other tests' git is still there


def test_pin_without_the_signers_secret_key_names_the_keyring(
    ops: GitOps,
    gpg_keys: Keys,  # noqa: F811
    tmp_path: Path,
) -> None:
    """rm2's keyring, pinning as rm1: say whose key is missing where, before git runs gpg."""
    rm2_home = tmp_path / "rm2-gnupg"
    rm2_home.mkdir(mode=0o700)
    secret = subprocess.run(
        ["gpg", "--homedir", str(gpg_keys.home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", "--export-secret-keys", gpg_keys.fingerprints["rm2"]],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    subprocess.run(
        ["gpg", "--homedir", str(rm2_home), "--batch", "--import"],
        input=secret, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    sha = ops.git("rev-parse", "origin/main").strip()
    env = {**ops.env, "GNUPGHOME": str(rm2_home)}
    res = run_cli("pin", "prod", sha, "--as", "rm1", "-C", str(ops.clone), env=env)
    fpr = gpg_keys.fingerprints["rm1"]
    _one_paragraph(res, 1, f"no secret key for rm1 (fingerprint {fpr})", str(rm2_home))
    assert "gpg failed to sign" not in res.stderr and "git tag" not in res.stderr, res.stderr
    subprocess.run(["gpgconf", "--homedir", str(rm2_home), "--kill", "gpg-agent"], check=False)


@pytest.mark.parametrize(
    ("rrule", "expected"),
    [
        ("every monday", "'every monday' is not a NAME=VALUE part"),
        ("BYDAY=MO", "FREQ is missing"),
        ("FREQ=WEEKLY;BYDAY=monday", "BYDAY=MONDAY is not a weekday"),
        ("FREQ=SOMETIMES", "FREQ=SOMETIMES is not one of"),
    ],
)
def test_bad_rrule_is_explained_in_rfc_5545_terms(
    tmp_path: Path, rrule: str, expected: str
) -> None:
    repo = copy_example(tmp_path / "r")
    prod = repo / "environments/prod.yaml"
    prod.write_text(
        prod.read_text()
        + f"windows:\n  allow:\n  - rrule: {rrule}\n    start: 2026-01-05T09:00:00\n"
        "    duration: 8h\n"
    )
    res = run_cli("validate", cwd=repo)
    _one_paragraph(res, 1, "environments/prod.yaml", "not an RFC 5545 RRULE", expected)
    assert "unpack" not in res.stderr and "expected 2" not in res.stderr, res.stderr


def test_auto_for_an_environment_without_auto_promote_names_it(ops: GitOps) -> None:
    res = run_cli("auto", "--once", "--env", "staging", "-C", str(ops.clone), env=ops.env)
    _one_paragraph(res, 2, "--env staging", "environments/staging.yaml", "autoPromote: true")
    assert "No environment sets" not in res.stdout


def test_status_with_a_kubeconfig_that_does_not_exist_says_so(ops: GitOps) -> None:
    args = ("status", "--kubeconfig", "/nonexistent/kubeconfig", "-C", str(ops.clone))
    res = run_cli(*args, env=ops.env)
    _one_paragraph(res, 2, "--kubeconfig /nonexistent/kubeconfig", "does not exist")
    assert "Unknown" not in res.stdout, res.stdout
