"""The Git adapter: trees built in the object database match git's, pushes are CAS."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote import errors
from promote import repo as git_repo
from tests.integration.test_promotion_helpers import git

pytestmark = pytest.mark.integration


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    work = tmp_path / "clone"
    git("clone", "-q", str(remote), str(work), cwd=tmp_path)
    for name, value in (("user.name", "alice"), ("user.email", "a@example.com")):
        git("config", name, value, cwd=work)
    for rel, text in {
        "a.txt": "a\n",
        "dir/b.txt": "b\n",
        "dir/sub/c.txt": "c\n",
        "dir.x": "x",
    }.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return work


def test_write_tree_matches_what_git_builds(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree({"dir/sub/c.txt": b"C\n", "dir/new.txt": b"n\n", "a.txt": None}, base=head)
    (clone / "dir/sub/c.txt").write_text("C\n")
    (clone / "dir/new.txt").write_text("n\n")
    (clone / "a.txt").unlink()
    git("add", "-A", cwd=clone)
    assert tree == git("write-tree", cwd=clone)
    git("reset", "-q", "--hard", cwd=clone)


def test_commit_reads_back_with_trailers_and_export(clone: Path, tmp_path: Path) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree({"dir/b.txt": b"B\n"}, base=head)
    sha = r.commit(tree, [head], "subject\n\nbody\n\nPromote-Env: dev\nPromote-From: x\n",
                   author=git_repo.Identity("bob", "b@example.com"))  # fmt: skip
    info = r.commit_info(sha)
    assert info.parents == (head,) and info.author.name == "bob"
    assert info.trailers == {"Promote-Env": "dev", "Promote-From": "x"}
    assert r.read_file(sha, "dir/b.txt") == b"B\n" and r.read_file(sha, "nope") is None
    out = r.export_tree(sha, tmp_path / "export")
    assert (out / "dir/sub/c.txt").read_text() == "c\n" and (out / "dir/b.txt").read_text() == "B\n"
    assert git("fsck", "--strict", "--no-dangling", cwd=clone) == ""


def test_push_is_compare_and_swap(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    head = r.resolve("HEAD")
    tree = r.write_tree({"z.txt": b"z"}, base=head)
    one = r.commit(tree, [head], "one", author=r.identity())
    r.push("origin", [git_repo.RefUpdate("refs/promote/x", one, git_repo.MUST_NOT_EXIST)])
    with pytest.raises(errors.PushRejected):
        r.push("origin", [git_repo.RefUpdate("refs/promote/x", one, git_repo.MUST_NOT_EXIST)])
    two = r.commit(tree, [one], "two", author=r.identity())
    with pytest.raises(errors.PushRejected):
        r.push("origin", [git_repo.RefUpdate("refs/promote/x", two, head)])  # stale expect
    r.push("origin", [git_repo.RefUpdate("refs/promote/x", two, one)])
    assert r.ls_remote("origin", "refs/promote/*") == {"refs/promote/x": two}


def test_mirror_resolve_and_export_for_the_agent(clone: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "remote.git")
    m = git_repo.mirror(url, tmp_path / "cache")
    sha = m.resolve("refs/heads/main")
    assert sha == git("rev-parse", "HEAD", cwd=clone)
    assert (m.export_tree(sha, tmp_path / "out") / "a.txt").read_text() == "a\n"
    again = git_repo.mirror(url, tmp_path / "cache")
    assert again.path == m.path


def test_unreachable_remote_is_git_unavailable(tmp_path: Path) -> None:
    with pytest.raises(errors.GitUnavailable, match="cannot be reached"):
        git_repo.mirror(str(tmp_path / "nowhere.git"), tmp_path / "cache")
