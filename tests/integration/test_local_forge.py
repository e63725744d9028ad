"""The local forge against a bare repository only: records, states, concurrent writers."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from promote import errors
from promote.forge.base import PRKind, PRState, PullRequestDraft
from promote.forge.local import LocalForge
from promote.git import repo as git_repo
from tests.integration.test_promotion_helpers import git

pytestmark = pytest.mark.integration


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    work = tmp_path / "clone"
    git("clone", "-q", str(remote), str(work), cwd=tmp_path)
    git("config", "user.name", "alice", cwd=work)
    git("config", "user.email", "alice@example.com", cwd=work)
    (work / "README.md").write_text("hello\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return work


def forge(clone: Path) -> LocalForge:
    return LocalForge(git_repo.Repo.open(clone), remote="origin", main_branch="main")


def draft(clone: Path, env: str = "staging", title: str = "t") -> PullRequestDraft:
    """A PR of HEAD; ``open`` creates its branch (atomically with the record)."""
    head = git("rev-parse", "HEAD", cwd=clone)
    branch = f"promote/{env}/{title}"
    return PullRequestDraft(
        title=title, body="## plan\n", env=env, source="dev", kind=PRKind.PROMOTION,
        branch=branch, base="main", head_sha=head, author="alice", images=("web=v2",),
    )  # fmt: skip


def test_open_get_list_comment_close(clone: Path) -> None:
    f = forge(clone)
    first = f.open(draft(clone, title="a"))
    second = f.open(draft(clone, env="prod", title="b"))
    assert (first.number, second.number) == (1, 2)
    assert first.url == "origin#refs/promote/prs/1" and first.state is PRState.OPEN
    on_remote = git("ls-remote", "origin", "refs/heads/promote/*", cwd=clone)
    assert "refs/heads/promote/staging/a" in on_remote and "refs/heads/promote/prod/b" in on_remote
    with pytest.raises(errors.ForgeError, match="branch promote/staging/a already exists"):
        forge(clone).open(draft(clone, title="a"))

    fresh = forge(clone)
    got = fresh.get(1)
    assert (got.title, got.body, got.images, got.author) == ("a", "## plan\n", ("web=v2",), "alice")
    assert [p.number for p in fresh.list(env="prod")] == [2]
    fresh.comment(1, author="bob", text="why now?")
    closed = fresh.close(1, by="bob")
    assert closed.state is PRState.CLOSED and closed.closed_by == "bob"
    assert [c.text for c in closed.comments] == ["why now?"]
    assert [p.number for p in forge(clone).list(state=PRState.OPEN)] == [2]
    with pytest.raises(errors.ForgeError, match="PR #1 is closed"):
        fresh.close(1, by="bob")
    with pytest.raises(errors.NotFound, match=r"PR #9 does not exist on origin \(PRs: #1, #2\)"):
        fresh.get(9)


def test_the_record_is_json_in_commits_and_its_history_is_the_audit_log(clone: Path) -> None:
    f = forge(clone)
    pr = f.open(draft(clone))
    f.comment(pr.number, author="bob", text="one")
    f.comment(pr.number, author="carol", text="two")
    ref = "refs/promote/prs/1"
    git("fetch", "-q", "origin", f"+{ref}:{ref}", cwd=clone)
    record = json.loads(git("show", f"{ref}:pr.json", cwd=clone))
    assert record["state"] == "open" and record["env"] == "staging"
    assert git("show", f"{ref}:body.md", cwd=clone) == "## plan"
    log = git("log", "--format=%s", ref, cwd=clone).splitlines()
    assert log == ["comment on PR #1 by carol", "comment on PR #1 by bob", "open PR #1"]


def test_concurrent_opens_get_distinct_numbers(clone: Path) -> None:
    drafts = [draft(clone, title=f"p{i}") for i in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        numbers = list(pool.map(lambda d: forge(clone).open(d).number, drafts))
    assert sorted(numbers) == list(range(1, 11))
    titles = {p.number: p.title for p in forge(clone).list()}
    assert sorted(titles.values()) == sorted(d.title for d in drafts)


def test_concurrent_updates_to_one_pr_are_all_kept(clone: Path) -> None:
    forge(clone).open(draft(clone))
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda i: forge(clone).comment(1, author=f"u{i}", text=f"c{i}"), range(10)))
    comments = forge(clone).get(1).comments
    assert sorted(c.text for c in comments) == sorted(f"c{i}" for i in range(10))


def test_merge_fast_forwards_and_records_the_result(clone: Path) -> None:
    (clone / "CHANGE.md").write_text("x\n")
    git("add", "-A", cwd=clone)
    git("commit", "-q", "-m", "change", cwd=clone)
    f = forge(clone)
    pr = f.open(draft(clone))
    result = f.merge(1, head_sha=pr.head_sha, by="alice", approvals=["rm1"], message="m")
    assert result.method == "fast-forward" and result.sha == pr.head_sha
    assert git("ls-remote", "origin", "refs/heads/main", cwd=clone).split()[0] == pr.head_sha
    merged = forge(clone).get(1)
    assert merged.state is PRState.MERGED and merged.merge is not None
    assert merged.merge.approvals == ("rm1",)
    with pytest.raises(errors.ForgeError, match="already merged"):
        forge(clone).close(1, by="x")


def test_merge_refuses_when_the_head_moved(clone: Path) -> None:
    f = forge(clone)
    pr = f.open(draft(clone))
    with pytest.raises(errors.ForgeError, match="its head moved"):
        f.merge(pr.number, head_sha="0" * 40, by="alice", approvals=[], message="m")


def test_list_picks_records_by_their_trailers_and_still_reads_records_without_them(
    clone: Path,
) -> None:
    f = forge(clone)
    for title in ("a", "b", "c"):
        f.open(draft(clone, title=title))
    f.close(1, by="bob")
    assert [p.number for p in forge(clone).list(state=PRState.OPEN)] == [2, 3]
    assert [p.number for p in forge(clone).list(state=PRState.CLOSED)] == [1]
    # A record written before the trailers existed: same tree, a bare message.
    record = git("ls-remote", "origin", "refs/promote/prs/2", cwd=clone).split()[0]
    git("fetch", "-q", "origin", "refs/promote/prs/2", cwd=clone)
    assert "Promote-State: open" in git("log", "-1", "--format=%B", record, cwd=clone)
    tree = git("rev-parse", f"{record}^{{tree}}", cwd=clone)
    bare = git("commit-tree", tree, "-p", record, "-m", "open PR #2", cwd=clone)
    git("push", "-q", "origin", f"{bare}:refs/promote/prs/2", cwd=clone)
    assert [p.number for p in forge(clone).list(state=PRState.OPEN)] == [2, 3]
    assert [p.number for p in forge(clone).list(env="prod")] == []
