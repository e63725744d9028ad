"""Issue 14: what the CLI prints survives the terminal renderer; exit codes as documented."""

from __future__ import annotations

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


# --- item 9: exit codes and messages as documented -------------------------------------------


@pytest.fixture
def ops(tmp_path: Path, gpg_keys: Keys) -> GitOps:  # noqa: F811
    """The example GitOps repository with a private copy of the approvers' keyring (these
    tests expire and revoke keys in it)."""
    home = tmp_path / "gnupg"
    shutil.copytree(gpg_keys.home, home, ignore=shutil.ignore_patterns("S.*", "*.lock"))
    ops = example_gitops(tmp_path, gpg_keys)
    ops.env = {"GNUPGHOME": str(home), "PROMOTE_USER": "dev1"}  # dev1 opens the PRs, signed
    return ops


def _cli(ops: GitOps, *args: str, code: int = 0) -> Result:
    res = run_cli(*args, "-C", str(ops.clone), env=ops.env)
    assert res.code == code, f"{args}: exit {res.code}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.mark.parametrize("command", ["show", "merge", "approve", "close"])
def test_unknown_pr_number_is_a_usage_error(ops: GitOps, command: str) -> None:
    res = _cli(ops, command, "4242", code=2)
    assert "PR #4242 does not exist" in res.stderr
    assert _cli(ops, command, "4242", "-o", "json", code=2).json()["exit_code"] == 2


def _gpg(ops: GitOps, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["gpg", "--homedir", ops.env["GNUPGHOME"], "--batch", "--yes", *args],
        input=stdin, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def _publish_key(ops: GitOps, name: str, fingerprint: str) -> None:
    ops.git("fetch", "-q", "origin")
    ops.git("reset", "-q", "--hard", "origin/main")
    armored = _gpg(ops, "--armor", "--export", fingerprint)
    (ops.clone / f"keys/release-managers/{name}.asc").write_text(armored)
    ops.commit_and_push(f"update {name}'s key")


def _key_that_expired_in_2020(ops: GitOps) -> str:
    """A new key for rm1 made (with gpg's faked clock) on 2020-01-01, valid for one day."""
    _gpg(ops, "--faked-system-time", "20200101T000000", "--pinentry-mode", "loopback",
         "--passphrase", "", "--quick-gen-key", "rm1 <rm1-2020@example.com>", "ed25519", "sign",
         "1d")  # fmt: skip
    listing = _gpg(ops, "--with-colons", "--list-keys", "rm1-2020@example.com")
    return next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))


@pytest.mark.parametrize("change", ["expired", "revoked"])
def test_approval_by_an_expired_or_revoked_key_says_so(
    ops: GitOps,
    gpg_keys: Keys,  # noqa: F811
    change: str,
) -> None:
    fpr = gpg_keys.fingerprints["rm1"]
    conf = Path(ops.env["GNUPGHOME"], "gpg.conf")
    if change == "expired":  # rm1 signs while gpg's clock says 2020, inside the key's one day
        fpr = _key_that_expired_in_2020(ops)
        _publish_key(ops, "rm1", fpr)
    _cli(ops, "set-image", "dev", "web-app=v3.0.0")
    number = str(_cli(ops, "to", "staging", "-o", "json").json()["pullRequest"]["number"])
    if change == "expired":
        conf.write_text("faked-system-time 20200101T060000!\n")
    _cli(ops, "approve", number, "--as", "rm1")
    conf.unlink(missing_ok=True)
    if change == "revoked":
        rev = Path(ops.env["GNUPGHOME"], "openpgp-revocs.d", f"{fpr}.rev").read_text()
        _gpg(ops, "--import", stdin=rev.replace(":-----BEGIN", "-----BEGIN"))
        _publish_key(ops, "rm1", fpr)
    shown = _cli(ops, "show", number)
    text = shown.stdout + shown.stderr
    assert f"key-{change}" in text and f"rm1's key {change}" in text.replace(
        "was revoked", "revoked"
    ).replace("has expired", "expired"), text
    assert "does not verify" not in text and "signature valid" not in text
    assert "WARNING gnupg" not in text
    js = _cli(ops, "show", number, "-o", "json").json()
    assert js["approvals"][0]["signature"] == f"key-{change}"
    merged = _cli(ops, "merge", number, code=3)
    assert "WARNING" not in merged.stderr and "rm1's key" in merged.stderr, merged.stderr


def test_gpg_failures_print_no_library_warnings(ops: GitOps) -> None:
    """python-gnupg logs gpg's exit codes at WARNING; the user sees our message only."""
    (ops.clone / "keys/release-managers/rm2.asc").write_text(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    ops.commit_and_push("a broken key file")
    _cli(ops, "set-image", "dev", "web-app=v3.0.0")
    number = str(_cli(ops, "to", "staging", "-o", "json").json()["pullRequest"]["number"])
    res = run_cli("approve", number, "--as", "rm2", "-C", str(ops.clone), env=ops.env)
    assert res.code != 0 and "rm2" in res.stderr, res.stderr
    assert "WARNING" not in res.stderr and "gnupg:" not in res.stderr, res.stderr


# --- item 11: a new user's first steps -------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """What `promote init` leaves: files, `git init`, no commit, no remote."""
    target = tmp_path / "gitops"
    assert run_cli("init", str(target)).code == 0
    return target


@pytest.mark.parametrize(
    "args",
    [
        ("to", "nowhere"),
        ("to", "staging", "--from", "nowhere"),
        ("rollback", "nowhere"),
        ("set-image", "nowhere", "web=v1"),
        ("history", "nowhere"),
    ],
)
def test_unknown_environment_is_named_before_git(fresh: Path, args: tuple[str, ...]) -> None:
    res = run_cli(*args, "-C", str(fresh))
    assert res.code == 2, res.stderr
    assert "unknown environment 'nowhere'" in res.stderr and "dev, staging, prod" in res.stderr
    assert "remote" not in res.stderr, res.stderr


def test_first_steps_explain_an_empty_repository(fresh: Path, tmp_path: Path) -> None:
    status = run_cli("status", "-C", str(fresh))
    assert status.code == 1
    assert "couldn't find remote ref" not in status.stderr
    assert "no commit" in status.stderr and "git commit" in status.stderr, status.stderr
    to = run_cli("to", "staging", "-C", str(fresh))
    assert to.code == 1 and "git remote add origin" in to.stderr, to.stderr
    # a remote that is still empty: say so and how to push
    git_run = ["git", "-C", str(fresh)]
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "r.git")], check=True)
    subprocess.run([*git_run, "remote", "add", "origin", str(tmp_path / "r.git")], check=True)
    for args in (("status",), ("to", "staging")):
        res = run_cli(*args, "-C", str(fresh))
        assert res.code == 1
        assert "couldn't find remote ref" not in res.stderr, res.stderr
        assert "has no branch 'main' yet" in res.stderr, res.stderr
        assert "git push -u origin main" in res.stderr, res.stderr


# --- item 10(b): repository-relative paths in messages ---------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("- ../base/api\n", "- ../base/api\n- missing.yaml\n"), "overlays/dev"),
        (("images:\n", "images: 7\nx-images:\n"), "overlays/dev/kustomization.yaml"),
    ],
)
def test_overlay_errors_name_repository_paths(
    ops: GitOps, edit: tuple[str, str], expected: str
) -> None:
    kz = ops.clone / "overlays/dev/kustomization.yaml"
    kz.write_text(kz.read_text().replace(*edit, 1))
    ops.commit_and_push("break dev's overlay")
    res = _cli(ops, "to", "staging", code=1)
    assert expected in res.stderr, res.stderr
    assert "/dev/shm" not in res.stderr and "promote-main-" not in res.stderr, res.stderr
    assert str(ops.clone) not in res.stderr and "/tmp/" not in res.stderr, res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("to", "prod", "--bogus", "-o", "json"),  # an unknown option
        ("to", "--output", "json"),  # a missing argument
        ("hold", "staging", "-ojson"),  # a missing required option
        ("to", "prod", "--output=json", "--no-such"),
        ("no-such-command", "-o", "json"),
    ],
)
def test_usage_errors_come_back_as_json_when_json_is_asked_for(
    fresh: Path, args: tuple[str, ...]
) -> None:
    res = run_cli(*args, "-C", str(fresh))
    assert res.code == 2, res.stdout + res.stderr
    body = res.json()
    assert body["status"] == "error" and body["exit_code"] == 2
    [error] = body["errors"]
    assert error["code"] == "usage" and error["message"], body
    assert "╭" not in res.stdout + res.stderr  # no usage box


def test_usage_errors_stay_text_without_json(fresh: Path) -> None:
    res = run_cli("to", "prod", "--bogus", "-C", str(fresh))
    assert res.code == 2 and "No such option" in res.stderr and res.stdout == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("agent", "--env", "dev", "--interval", "5sec"), "--interval 5sec"),
        (("agent", "--env", "dev", "--listen", "notaport"), "HOST:PORT"),
        (("agent", "--env", "dev", "--listen", "127.0.0.1:99999"), "1-65535"),
        (("agent", "--env", "dev", "--once", "--interval", "5sec"), "--interval 5sec"),
        (("agent", "--env", "dev", "--once", "--listen", "host:port"), "HOST:PORT"),
        (("ui", "--listen", "127.0.0.1:99999"), "1-65535"),
        (("ui", "--listen", "127.0.0.1:0"), "1-65535"),
        (("rollback", "dev", "--steps", "0", "--dry-run"), "--steps"),
    ],
)
def test_bad_flag_values_are_usage_errors_before_anything_runs(
    fresh: Path, args: tuple[str, ...], words: str
) -> None:
    """A flag's bad value: one paragraph naming the flag, exit 2, never a traceback (and
    with --once too, where the value would not be used)."""
    res = run_cli(*args, "-C", str(fresh))
    assert res.code == 2, res.stdout + res.stderr
    assert words in res.stderr and "Traceback" not in res.stderr, res.stderr
    if args[0] == "agent":
        res = run_cli(*args, "-o", "json", "-C", str(fresh))
        assert res.code == 2 and res.json()["errors"][0]["code"] == "usage", res.stdout
        assert words in res.json()["errors"][0]["message"]


def test_status_without_a_readable_cluster_exits_1_naming_the_kubeconfig(tmp_path: Path) -> None:
    """No cluster to read: each environment's error on stderr (and in -o json's errors), the
    file looked for named as it is (not "Invalid kube-config file"), exit 1."""
    from tests.gitops import make_repo

    repo = make_repo(tmp_path)
    missing = tmp_path / "no-such-kubeconfig"
    env = {"KUBECONFIG": str(missing)}
    res = run_cli("status", "-o", "json", cwd=repo.work, env=env)
    assert res.code == 1, res.stdout + res.stderr
    errors = res.json()["errors"]
    assert [e["code"] for e in errors] == ["cluster"] * 3, errors
    assert all(f"KUBECONFIG={missing} does not exist" in e["message"] for e in errors), errors
    text = run_cli("status", cwd=repo.work, env=env)
    assert text.code == 1
    assert "dev: status unavailable: no kubeconfig" in text.stderr, text.stderr
    assert "Invalid kube-config" not in text.stdout + text.stderr


def test_cluster_status_without_a_cluster_names_where_it_looked(tmp_path: Path) -> None:
    res = run_cli("cluster", "status", "--dir", str(tmp_path / "none"))
    assert res.code == 0, res.stderr
    assert f"No cluster in {tmp_path / 'none'}" in res.stdout and "--dir" in res.stdout
