"""What the agent reads from a server forge about a merged PR (``forge/merges.py``): who
pushed and wrote its commits, which PR merged a commit, and the per-SHA cache. The shapes are
Gitea v1.26's and GitHub's documented ones (the integration and contract tests run them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from promote.forge import merges, payload

A, B, C = "a" * 40, "b" * 40, "c" * 40


def _push(user: str, ids: list[str], *, force: bool = False) -> dict[str, object]:
    body = json.dumps({"is_force_push": force, "commit_ids": ids})
    return {"type": "pull_push", "user": {"login": user}, "body": body}


def test_every_pusher_is_named_whatever_the_commits_say() -> None:
    events = [
        _push("dev1", [A]),
        {"type": "comment", "user": {"login": "rm2"}, "body": "lgtm"},
        _push("rm1", [B]),
        _push("rm1", [A, C], force=True),  # a force push names [old, new], not what it pushed
        {"event": "head_ref_force_pushed", "actor": {"login": "ci-bot"}},  # GitHub
        {"type": "pull_push", "user": None, "body": "not json"},
    ]
    pushers, named = merges.pushers_of(events)
    assert pushers == ("ci-bot", "dev1", "rm1")
    assert named == {A, B}


def test_commit_writers_are_the_users_the_forge_maps_them_to() -> None:
    commits = [
        {"sha": A, "author": {"login": "dev1"}, "committer": {"login": "dev1"}},
        {"sha": B, "author": None, "committer": {"login": "rm1"}},  # unknown author address
        {"sha": C, "author": None, "committer": None},
    ]
    assert merges.writers_of(commits) == ("dev1", "rm1")


def test_a_pr_counts_only_for_the_commit_it_names_as_its_merge() -> None:
    merged = {"merged": True, "merge_commit_sha": A}
    assert merges.merged_pull_of(merged, A)
    assert not merges.merged_pull_of(merged, B)
    assert merges.merged_pull_of({"merged_at": "2026-11-29T10:00:00Z", "merge_commit_sha": A}, A)
    assert not merges.merged_pull_of({"state": "open", "merge_commit_sha": A}, A)


def test_answers_are_kept_per_merge_sha(tmp_path: Path) -> None:
    at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    found = merges.MergedPull(
        number=7,
        branch="promote/prod/1a2b",
        base="main",
        head_sha=B,
        merge_sha=A,
        merged_at=at,
        author="dev1",
        reviews=(payload.Review("rm1", "approved", B, at, "ok"),),
        writers=("dev1",),
    )
    cache = merges.MergeCache(tmp_path)
    cache.put(found)
    assert cache.get(A) == found and cache.hits == 1
    assert cache.get(C) is None
    (tmp_path / f"{A}.json").write_text("{broken")
    assert cache.get(A) is None  # a damaged file is asked again, never trusted half-read
    assert merges.MergeCache(None).get(A) is None
