"""Commits the Git adapter writes: file modes kept, the local UTC offset, GnuPG signatures."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from promote import errors
from promote.git import archive
from promote.git import repo as git_repo
from tests.conftest import GpgKeyring
from tests.integration.test_promotion_helpers import git

pytestmark = pytest.mark.integration


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone whose first commit holds an executable script and a symbolic link."""
    work = tmp_path / "clone"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    for name, value in (("user.name", "alice"), ("user.email", "a@example.com")):
        git("config", name, value, cwd=work)
    (work / "bin").mkdir()
    (work / "bin/run.sh").write_text("#!/bin/sh\necho one\n")
    (work / "bin/run.sh").chmod(0o755)
    (work / "a.txt").write_text("a\n")
    (work / "link").symlink_to("a.txt")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    return work


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets a test set ``TZ``; the process's zone is restored afterwards."""
    yield
    monkeypatch.undo()
    time.tzset()


def _modes(clone: Path, rev: str) -> dict[str, str]:
    out = git("ls-tree", "-r", rev, cwd=clone)
    return {line.split("\t")[1]: line.split()[0] for line in out.splitlines()}


def test_modes_of_existing_files_survive_write_tree_and_commit(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    assert _modes(clone, head) == {"a.txt": "100644", "bin/run.sh": "100755", "link": "120000"}
    tree = r.write_tree({"bin/run.sh": b"#!/bin/sh\necho two\n", "bin/new.txt": b"n\n"}, base=head)
    sha = r.commit(tree, [head], "edit the script", author=r.identity())
    assert _modes(clone, sha) == {
        "a.txt": "100644",
        "bin/new.txt": "100644",
        "bin/run.sh": "100755",  # content replaced, mode kept
        "link": "120000",  # untouched
    }
    # What git itself builds from the same change in the work tree.
    (clone / "bin/run.sh").write_text("#!/bin/sh\necho two\n")
    (clone / "bin/new.txt").write_text("n\n")
    git("add", "-A", cwd=clone)
    assert tree == git("write-tree", cwd=clone)
    assert git("fsck", "--strict", "--no-dangling", cwd=clone) == ""
    # Checked out, the script still runs and the link is still a link.
    out = clone.parent / "checkout"
    git("worktree", "add", "-q", "--detach", str(out), sha, cwd=clone)
    assert os.access(out / "bin/run.sh", os.X_OK) and (out / "link").is_symlink()
    assert subprocess.run([out / "bin/run.sh"], capture_output=True, check=True).stdout == b"two\n"


def test_a_replaced_link_stays_a_link_and_callers_can_give_modes(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree(
        {
            "link": b"bin/run.sh",  # a link's content is its target
            "tool": (git_repo.EXECUTABLE_MODE, b"#!/bin/sh\n"),
            "alias": (git_repo.SYMLINK_MODE, b"a.txt"),
            "bin/run.sh": (git_repo.FILE_MODE, b"no longer executable\n"),
        },
        base=head,
    )
    modes = _modes(clone, tree)
    assert modes["link"] == "120000" and modes["tool"] == "100755" and modes["alias"] == "120000"
    assert modes["bin/run.sh"] == "100644"
    assert git("cat-file", "blob", f"{tree}:link", cwd=clone) == "bin/run.sh"
    with pytest.raises(ValueError, match="not a file's mode"):
        r.write_tree({"x": (0o40000, b"")}, base=head)
    for bad in ("a//b", ".git/config", "../up", "/abs"):
        with pytest.raises(errors.GitError, match="cannot write a tree"):
            r.write_tree({bad: b"x"}, base=head)


@pytest.mark.parametrize(
    ("zone", "when", "offset"),
    [
        ("Asia/Kolkata", None, "+0530"),
        ("America/New_York", datetime(2026, 1, 15, 12, tzinfo=UTC), "-0500"),
        ("America/New_York", datetime(2026, 7, 15, 12, tzinfo=UTC), "-0400"),  # summer time
        ("UTC", None, "+0000"),
    ],
)
def test_commit_dates_carry_the_local_utc_offset(
    clone: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_zone: None,
    zone: str,
    when: datetime | None,
    offset: str,
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree({"a.txt": b"b\n"}, base=head)
    sha = r.commit(
        tree, [head], "dated\n\nbody\n", author=git_repo.Identity("bob", "b@x"), when=when
    )
    headers = git("cat-file", "commit", sha, cwd=clone).split("\n\n")[0].splitlines()
    author = next(h for h in headers if h.startswith("author "))
    committer = next(h for h in headers if h.startswith("committer "))
    assert author.endswith(f" {offset}") and committer.endswith(f" {offset}")
    stamp = int(author.split()[-2])
    if when is not None:
        assert stamp == int(when.timestamp())
    assert r.commit_info(sha).authored_at == datetime.fromtimestamp(stamp, UTC)
    # The object is the one git itself writes for the same commit.
    date = f"{stamp} {offset}"
    env = {**os.environ, "GIT_AUTHOR_NAME": "bob", "GIT_AUTHOR_EMAIL": "b@x"}
    env |= {"GIT_COMMITTER_NAME": "bob", "GIT_COMMITTER_EMAIL": "b@x"}
    env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    again = subprocess.run(
        ["git", "commit-tree", tree, "-p", head, "-m", "dated\n\nbody"],
        cwd=clone, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert again == sha


def test_a_signed_commit_verifies_with_git(
    clone: Path, tmp_path: Path, gpg_keyring: GpgKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GNUPGHOME", raising=False)
    fpr = gpg_keyring.new_key("signer")
    gnupg = {"GNUPGHOME": str(gpg_keyring.home)}
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree({"a.txt": b"signed\n"}, base=head)
    with r.environment(gnupg):
        sha = r.commit(tree, [head], "signed\n\nPromote-Env: dev\n", author=r.identity(),
                       sign_with=fpr)  # fmt: skip
        assert "GNUPGHOME" not in os.environ
    unsigned = r.commit(tree, [head], "signed\n\nPromote-Env: dev\n", author=r.identity())
    env = {**os.environ, **gnupg}

    def verify_commit(rev: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "verify-commit", "--raw", rev],
            cwd=clone, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    checked = verify_commit(sha)
    assert checked.returncode == 0, checked.stderr
    assert f"VALIDSIG {fpr}" in checked.stderr
    assert verify_commit(unsigned).returncode != 0
    info = r.commit_info(sha)
    assert info.tree == tree and info.parents == (head,)
    assert info.trailers == {"Promote-Env": "dev"}
    assert r.read_file(sha, "a.txt") == b"signed\n"

    # signed_payload hands a verifier exactly what was signed.
    assert r.signed_payload(unsigned) is None
    found = r.signed_payload(sha)
    assert found is not None
    signature, payload = found
    assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert b"gpgsig" not in payload and payload.startswith(f"tree {tree}\n".encode())
    (tmp_path / "sig.asc").write_bytes(signature)

    def gpg_verify(data: bytes) -> int:
        return subprocess.run(
            ["gpg", "--batch", "--verify", str(tmp_path / "sig.asc"), "-"],
            input=data, env=env, capture_output=True, check=False,
        ).returncode  # fmt: skip

    assert gpg_verify(payload) == 0
    assert gpg_verify(payload.replace(b"Promote-Env: dev", b"Promote-Env: prod")) != 0
    with pytest.raises(errors.NotFound):
        r.signed_payload("no-such-rev")


def test_signing_with_a_key_gpg_does_not_have_is_a_git_error(
    clone: Path, gpg_keyring: GpgKeyring
) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree({"a.txt": b"x\n"}, base=head)
    with (
        r.environment({"GNUPGHOME": str(gpg_keyring.home)}),
        pytest.raises(errors.GitError, match="gpg failed to sign"),
    ):
        r.commit(tree, [head], "x", author=r.identity(), sign_with="0" * 40)


def test_export_refuses_a_link_out_of_the_tree_even_one_write_tree_made(
    clone: Path, tmp_path: Path
) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    inside = r.commit(r.write_tree({}, base=head), [head], "same", author=r.identity())
    out = r.export_tree(inside, tmp_path / "inside")
    assert (out / "link").read_text() == "a\n" and os.access(out / "bin/run.sh", os.X_OK)
    for n, target in enumerate((b"/etc/passwd", b"../../outside")):
        tree = r.write_tree({"bin/escape": (git_repo.SYMLINK_MODE, target)}, base=head)
        sha = r.commit(tree, [head], "escape", author=r.identity())
        # Left out and recorded (not fatal: only an overlay reading that folder is refused).
        out = r.export_tree(sha, tmp_path / f"out{n}")
        assert not (out / "bin/escape").is_symlink() and not (out / "bin/escape").exists()
        assert "bin/escape" in archive.refused_links(out)
        with pytest.raises(errors.GitError, match="link promote will not follow"):
            archive.check_links(out, [out / "bin"])
