"""Rejected versions (issue 16 item 3) as a user runs them: a real bare Git remote and real
GnuPG keys (dev1 a registered developer, rm1..rm3 release managers). A rejection is pushed to
main without approval; `to`, `set-image` and `rollback` refuse the version (exit 3 naming the
rejection); lifting it is a PR that needs the strictest environment's (prod's: 2) approvals.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
    push_to_branch,
)
from tests.integration.test_promotion_trust import cli, ops  # noqa: F401  (ops is a fixture)
from tests.ui_world import free_port, serve

pytestmark = pytest.mark.integration
RECORD = "releases/rejected/web-app/v2.4.0.yaml"


def _reject(repo: GitOps, version: str = "v2.4.0") -> None:
    cli(repo, "reject", "web-app", version, "--reason", "crashes on start",
        "--evidence", "https://ci.example.com/run/7")  # fmt: skip


def test_a_rejected_version_is_pushed_to_main_and_refused_by_promote_to(ops: GitOps) -> None:  # noqa: F811
    before = ops.git("ls-remote", "origin", "refs/heads/main").split()[0]
    _reject(ops)
    record = ops.main_file(RECORD)
    assert "crashes on start" in record and "by: dev1" in record
    assert ops.git("rev-parse", "origin/main^") == before  # one commit on main, no PR
    refused = cli(ops, "to", "staging", code=3)
    text = refused.stdout + refused.stderr
    assert "web-app v2.4.0 was rejected by dev1" in text and "crashes on start" in text
    assert ops.git("ls-remote", "origin", "refs/heads/promote/*") == ""  # no PR branch
    again = cli(ops, "reject", "web-app", "v2.4.0", "--reason", "twice")
    assert "Already rejected" in again.stdout
    assert cli(ops, "to", "staging", "--app", "api", "-o", "json").json()["pullRequest"]


def test_set_image_and_rollback_refuse_a_rejected_version(ops: GitOps) -> None:  # noqa: F811
    cli(ops, "set-image", "dev", "web-app=v2.5.0")
    cli(ops, "set-image", "dev", "web-app=v2.6.0")
    _reject(ops, "v2.7.0")
    refused = cli(ops, "set-image", "dev", "web-app=v2.7.0", code=3)
    assert "web-app v2.7.0 was rejected" in refused.stderr
    assert "v2.6.0" in ops.main_file("overlays/dev/kustomization.yaml")
    _reject(ops, "v2.5.0")
    back = cli(ops, "rollback", "dev", code=3)  # back to v2.5.0
    assert "web-app v2.5.0 was rejected" in back.stdout + back.stderr
    assert cli(ops, "set-image", "dev", "web-app=v2.7.0", "--pr", code=3).code == 3


def test_lifting_a_rejection_needs_the_strictest_approvals(ops: GitOps) -> None:  # noqa: F811
    _reject(ops)
    opened = cli(ops, "unreject", "web-app", "v2.4.0", "-o", "json").json()
    assert opened["scope"] == ["dev", "staging", "prod"]
    number = str(opened["pullRequest"]["number"])
    cli(ops, "approve", number, "--as", "rm1")
    blocked = cli(ops, "merge", number, code=3)
    assert "prod needs 2 approval(s)" in blocked.stderr
    cli(ops, "approve", number, "--as", "rm2")
    cli(ops, "merge", number)
    ops.git("fetch", "-q", "origin")
    assert RECORD not in ops.git("ls-tree", "-r", "--name-only", "origin/main")
    assert cli(ops, "to", "staging", "-o", "json").json()["pullRequest"]


def test_unreject_of_a_version_never_rejected_is_a_usage_error(ops: GitOps) -> None:  # noqa: F811
    refused = cli(ops, "unreject", "web-app", "v9.9.9", code=2)
    assert "not rejected on main" in refused.stderr
    assert cli(ops, "reject", "nope", "v1", "--reason", "x", code=2).code == 2


def test_an_approver_may_not_open_a_pr_their_exclusion_makes_unmergeable(ops: GitOps) -> None:  # noqa: F811
    _reject(ops)
    refused = cli(ops, "unreject", "web-app", "v2.4.0", "--as", "rm1", code=3)
    text = " ".join(refused.stderr.split())
    assert "rm1 may not open" in text and "prod needs 2 approval(s) from rm1, rm2" in text
    assert "only 1 other approver (rm2)" in text and "dev1" in text  # who may open it
    assert ops.git("ls-remote", "origin", "refs/heads/promote/*") == ""  # nothing pushed
    direct = cli(ops, "set-image", "prod", "web-app=v2.3.2", "--pr", "--as", "rm2", code=3)
    assert "rm2 may not open this PR" in direct.stderr  # every flow that opens a PR
    assert ops.git("ls-remote", "origin", "refs/heads/promote/*") == ""


def test_merge_says_when_the_approvals_can_no_longer_be_met(ops: GitOps) -> None:  # noqa: F811
    _reject(ops)
    opened = cli(ops, "unreject", "web-app", "v2.4.0", "-o", "json").json()["pullRequest"]
    number = str(opened["number"])

    def note(root: Path) -> None:
        (root / "NOTES.md").write_text("reviewed\n")

    push_to_branch(ops, opened["branch"], note, sign_as="rm1")  # rm1 now wrote a commit of it
    cli(ops, "approve", number, "--as", "rm2")
    blocked = cli(ops, "merge", number, code=3)
    text = " ".join(blocked.stderr.split())
    assert "can no longer be met" in text and "Missing: 1 more from -" not in text
    assert "rm1 signed commit" in text and "open it again" in text


def test_promotes_own_unreject_pr_is_explained_by_its_plan(ops: GitOps) -> None:  # noqa: F811
    _reject(ops)
    _reject(ops, "v2.5.0")
    opened = cli(ops, "unreject", "web-app", "v2.4.0", "-o", "json").json()["pullRequest"]
    number = str(opened["number"])
    shown = cli(ops, "show", number)
    assert "differs from the plan" not in shown.stdout
    assert "unreject web-app v2.4.0" in " ".join(shown.stdout.split())
    assert cli(ops, "show", number, "-o", "json").json()["head"]["beyondPlan"] == []
    from promote.ui import app

    with serve(app.Settings(repo_dir=ops.clone, port=free_port())) as base:
        page = httpx.get(f"{base}/prs/{number}", timeout=60)
    words = " ".join(re.sub(r"<[^>]+>", " ", page.text).split())
    assert "unreject web-app v2.4.0" in words and "differs from the plan" not in words

    def lift_another(root: Path) -> None:
        (root / "releases/rejected/web-app/v2.5.0.yaml").unlink()

    push_to_branch(ops, opened["branch"], lift_another, sign_as="dev1")
    head = cli(ops, "show", number, "-o", "json").json()["head"]
    assert head["beyondPlan"] == ["releases/rejected/web-app/v2.5.0.yaml"]


def test_rejecting_again_with_another_reason_says_it_was_not_recorded(ops: GitOps) -> None:  # noqa: F811
    _reject(ops)
    again = cli(ops, "reject", "web-app", "v2.4.0", "--reason", "leaks memory")
    assert "Already rejected" in again.stdout and "crashes on start" in again.stdout
    assert "'leaks memory' was not recorded" in again.stdout
    shown = cli(ops, "reject", "web-app", "v2.4.0", "--reason", "leaks memory", "-o", "json")
    body = shown.json()
    assert body["commit"] is None and body["notRecorded"] == {"reason": "leaks memory"}
    assert "promote unreject web-app v2.4.0" in body["hint"]
