"""The Git adapter: trees built in the object database match git's, pushes are CAS."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from promote import errors
from promote.git import mirror
from promote.git import repo as git_repo
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
    m = mirror.mirror(url, tmp_path / "cache")
    sha = m.resolve("refs/heads/main")
    assert sha == git("rev-parse", "HEAD", cwd=clone)
    assert (m.export_tree(sha, tmp_path / "out") / "a.txt").read_text() == "a\n"
    again = mirror.mirror(url, tmp_path / "cache")
    assert again.path == m.path


def test_unreachable_remote_is_git_unavailable(tmp_path: Path) -> None:
    with pytest.raises(errors.GitUnavailable, match="cannot be reached"):
        mirror.mirror(str(tmp_path / "nowhere.git"), tmp_path / "cache")


def test_open_finds_the_repository_from_a_subfolder(clone: Path, tmp_path: Path) -> None:
    r = git_repo.Repo.open(clone / "dir" / "sub")
    assert r.path == clone.resolve() and r.git_dir == (clone / ".git").resolve()
    assert git_repo.Repo.open(clone / "dir" / "b.txt").path == r.path
    (tmp_path / "plain").mkdir()
    for where in (tmp_path / "plain", tmp_path / "nowhere"):
        with pytest.raises(errors.GitError, match="not inside a Git repository"):
            git_repo.Repo.open(where)


def test_environment_reaches_git_but_not_os_environ(
    clone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
    r = git_repo.Repo.open(clone)
    extra = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "eve"}
    with r.environment(extra):
        assert r.identity().name == "eve"
        assert "GIT_CONFIG_COUNT" not in os.environ
        with r.environment({"GIT_CONFIG_VALUE_0": "mallory"}):
            assert r.identity().name == "mallory"
        assert r.identity().name == "eve"
    assert r.identity() == git_repo.Identity("alice", "a@example.com")


def test_environment_never_reaches_the_object_reader(clone: Path, tmp_path: Path) -> None:
    r = git_repo.Repo.open(clone)
    nowhere = {"GIT_OBJECT_DIRECTORY": str(tmp_path / "no-objects")}
    with r.environment(nowhere):  # the reader starts here, and must not see it
        assert r.read_file("HEAD", "a.txt") == b"a\n"
        with pytest.raises(errors.GitError):
            r.log("HEAD")  # a command does see it
    assert r.log("HEAD")[0].subject == "init"


def test_read_file_and_try_resolve_edges(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    head = git("rev-parse", "HEAD", cwd=clone)
    assert (
        r.read_file("HEAD", "a.txt") == b"a\n" and r.read_file(head[:7], "dir/sub/c.txt") == b"c\n"
    )
    for missing in ("nope.txt", "dir", "dir/nope", "a.txt/x", "", "x\ny"):
        assert r.read_file(head, missing) is None
    for bad in ("no-such-branch", "0" * 40, "", "HEAD\nHEAD"):
        with pytest.raises(errors.NotFound, match="names no commit"):
            r.read_file(bad, "a.txt")
    assert r.try_resolve(head[:8]) == head == r.try_resolve("refs/remotes/origin/main")
    tree = git("rev-parse", "HEAD^{tree}", cwd=clone)
    for garbage in ("garbage", "HEAD~5", tree, "main:a.txt", " ", "zz" * 20):
        assert r.try_resolve(garbage) is None
    git("commit", "-q", "--allow-empty", "-m", "later", cwd=clone)  # after the reader started
    later = git("rev-parse", "HEAD", cwd=clone)
    assert r.resolve("HEAD") == later and r.try_resolve(later[:10]) == later


def _reader(r: git_repo.Repo) -> subprocess.Popen[bytes] | None:
    """The repository's persistent ``git cat-file --batch`` (GitPython's), if started."""
    db = r._proc._db
    batch = db.git.cat_file_all if db is not None else None
    return batch.proc if batch is not None else None


def test_a_killed_reader_is_replaced(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    assert _reader(r) is None  # started on the first read, not before
    assert r.read_file("HEAD", "a.txt") == b"a\n"
    reader = _reader(r)
    assert reader is not None and reader.poll() is None
    reader.kill()
    reader.wait()
    assert r.read_file("HEAD", "a.txt") == b"a\n" and _reader(r) not in (None, reader)
    r.close()
    assert _reader(r) is None and r.try_resolve("HEAD") is not None
    r.close()


def test_one_repo_read_from_several_threads(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    big = bytes(range(256)) * 4096  # larger than a pipe's buffer
    sha = r.commit(r.write_tree({"big.bin": big}, base="HEAD"), [r.resolve("HEAD")], "big",
                   author=r.identity())  # fmt: skip

    def read(i: int) -> bool:
        path, want = ("big.bin", big) if i % 2 else ("dir/b.txt", b"b\n")
        return all(r.read_file(sha, path) == want for _ in range(20))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, range(8)))
    r.close()


def test_write_tree_drops_emptied_folders(clone: Path) -> None:
    r = git_repo.Repo.open(clone)
    tree = r.write_tree({"dir/sub/c.txt": None}, base="HEAD")
    assert tree == r.write_tree({"dir/sub/c.txt": None, "dir/sub/d.txt": None}, base="HEAD")
    git("rm", "-q", "dir/sub/c.txt", cwd=clone)
    assert tree == git("write-tree", cwd=clone)
    assert r.write_tree({"a.txt": None, "dir.x": None, "dir/b.txt": None}, base=tree) == (
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # the empty tree
    )
    with pytest.raises(errors.NotFound):
        r.write_tree({"a.txt": b"x"}, base="no-such-rev")
    assert git("fsck", "--strict", "--no-dangling", cwd=clone) == ""


def test_agent_source_fetches_exports_and_tells_a_missing_branch_from_an_outage(
    clone: Path, tmp_path: Path
) -> None:
    from promote.reconcile.source import GitSource

    url = str(tmp_path / "remote.git")
    src = GitSource(url, branch="main", cache_root=tmp_path / "cache")
    sha = src.fetch()
    assert sha == git("rev-parse", "HEAD", cwd=clone)
    assert (src.export(sha, tmp_path / "out") / "a.txt").read_text() == "a\n"
    with pytest.raises(errors.GitError) as missing:
        GitSource(url, branch="nope", cache_root=tmp_path / "cache").fetch()
    assert not missing.value.retryable  # a configuration error: the agent raises an Event
    gone = GitSource(str(tmp_path / "gone.git"), branch="main", cache_root=tmp_path / "cache")
    with pytest.raises(errors.GitUnavailable):
        gone.fetch()


def test_a_git_command_that_does_not_answer_in_time_is_an_outage(tmp_path: Path) -> None:
    repo = mirror.open_mirror(str(tmp_path / "remote.git"), tmp_path / "cache")
    slow = git_repo.Repo(repo.path, repo.git_dir, timeout_s=1)
    started = time.monotonic()
    # A remote that never answers: git's ssh transport runs this "ssh", which just sleeps.
    with (
        slow.environment({"GIT_SSH_COMMAND": "sleep 60;:"}),
        pytest.raises(errors.GitUnavailable, match="no answer within 1s"),
    ):
        slow.fetch("ssh://example.invalid/remote.git", ["+refs/heads/main:refs/heads/main"])
    assert time.monotonic() - started < 20
