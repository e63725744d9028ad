"""`promote to / approve / merge / history / rollback / set-image / prs` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Result, run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    CANARY,
    GitOps,
    Keys,
    example_gitops,
    git,
    gpg_keys,
    write_secret,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def ops(tmp_path: Path, gpg_keys: Keys) -> GitOps:  # noqa: F811
    ops = example_gitops(tmp_path, gpg_keys)
    ops.env = {"GNUPGHOME": str(gpg_keys.home), "PROMOTE_USER": "dev1"}
    return ops


def cli(ops: GitOps, *args: str, code: int = 0) -> Result:
    res = run_cli(*args, "-C", str(ops.clone), env=ops.env)
    assert res.code == code, f"{args}: exit {res.code}\n{res.stdout}\n{res.stderr}"
    assert CANARY not in res.stdout + res.stderr
    return res


def test_the_pipeline_from_ci_push_to_prod_rollback(ops: GitOps) -> None:
    pushed = cli(ops, "set-image", "dev", "web-app=v3.0.0", "-o", "json").json()
    assert pushed["commit"] and pushed["plan"]["changes"][0]["to"] == "v3.0.0"
    blocked = cli(ops, "set-image", "staging", "web-app=v9", code=3)
    assert "requires 1 approval(s)" in blocked.stderr and "--pr" in blocked.stderr

    dry = cli(ops, "to", "staging", "--dry-run", "-o", "json").json()
    assert dry["dryRun"] and dry["pullRequest"] is None
    assert [(c["image"], c["from"], c["to"]) for c in dry["plan"]["changes"]] == [
        ("web-app", "v2.3.2", "v3.0.0"),
        ("api", "v1.7.5", "v1.8.0"),
    ]
    assert dry["plan"]["secrets"] == {"ok": True, "missing": []}
    opened = cli(ops, "to", "staging", "--title", "Ship 3.0", "-o", "json").json()
    number = str(opened["pullRequest"]["number"])
    assert opened["pullRequest"]["title"] == "Ship 3.0" and not opened["existing"]
    again = cli(ops, "to", "staging")  # the same images again: points at the open PR
    assert f"PR #{number} (opened by" in again.stdout and "no new PR" in again.stdout
    listed = cli(ops, "prs", "--env", "staging", "-o", "json").json()
    assert [p["number"] for p in listed["pullRequests"]] == [int(number)]

    refused = cli(ops, "merge", number, code=3)
    assert "counted: 0 (none). Missing: 1 more from rm1 or rm2" in refused.stderr
    cli(ops, "approve", number, "--as", "rm1", "--comment", "lgtm")
    shown = cli(ops, "show", number, "-o", "json").json()
    assert shown["policy"]["mergeable"] and shown["approvals"][0]["signature"] == "valid"
    assert "| web-app | web-app | v2.3.2 | v3.0.0 |" in shown["pullRequest"]["body"]
    merged = cli(ops, "merge", number, "-o", "json").json()
    assert merged["merge"]["method"] == "fast-forward" and merged["merge"]["approvals"] == ["rm1"]
    assert "already up to date" in cli(ops, "to", "staging").stdout

    # prod's soak gate (10m in the example): staging's agent status, as a file here.
    status = ops.clone.parent / "status.json"
    staging = {"synced": True, "healthy": True, "since": "2020-01-01T00:00:00+00:00",
               "images": {"web-app": "v3.0.0", "api": "v1.8.0"}}  # fmt: skip
    status.write_text(json.dumps({"staging": staging}))
    to_prod = cli(ops, "to", "prod", "--status-file", str(status), "-o", "json")
    prod = to_prod.json()["pullRequest"]["number"]
    for name in ("rm1", "rm2"):
        cli(ops, "approve", f"#{prod}", "--as", name)
    cli(ops, "merge", str(prod))
    entries = cli(ops, "history", "prod", "-o", "json").json()["entries"]
    assert entries[0]["pr"]["number"] == prod and entries[0]["from"] == "staging"
    assert {(a["approver"], a["signature"]) for a in entries[0]["approvals"]} == {
        ("rm1", "valid"),
        ("rm2", "valid"),
    }
    assert "rm1: valid" in cli(ops, "history", "prod").stdout

    back = cli(ops, "rollback", "prod", "--steps", "1", "-o", "json").json()
    assert back["pullRequest"]["kind"] == "rollback"
    assert [c["to"] for c in back["plan"]["changes"]] == ["v2.3.1", "v1.7.5"]
    listed = cli(ops, "prs", "--state", "all", "-o", "json").json()["pullRequests"]
    assert [(p["number"], p["state"]) for p in listed] == [
        (1, "merged"),
        (2, "merged"),
        (3, "open"),
    ]
    cli(ops, "close", "3", "--comment", "not today")
    assert "is closed" in cli(ops, "close", "3", code=1).stderr
    assert "No open pull requests" in cli(ops, "prs").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("to", "qa"), 2, "unknown environment 'qa'"),
        (("to", "staging", "--from", "staging"), 2, "cannot promote staging into itself"),
        (("to", "dev"), 2, "dev has no upstream"),
        (("to", "staging", "--app", "billing"), 2, "--app billing: dev has no such app"),
        (("merge", "42"), 2, "PR #42 does not exist on origin"),
        (("set-image", "dev", "nope=v1"), 2, "dev's overlay has no image 'nope'"),
    ],
)
def test_bad_input_changes_nothing(
    ops: GitOps, args: tuple[str, ...], code: int, message: str
) -> None:
    before = git("ls-remote", str(ops.remote), cwd=ops.clone)
    assert message in cli(ops, *args, code=code).stderr
    assert git("ls-remote", str(ops.remote), cwd=ops.clone) == before


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ("web-app=v1\n  newName: evil.example/x", "is not a valid image tag"),
        ("web-app=v1;touch x", "is not a valid image tag"),
        ("web-app=$(touch x)", "is not a valid image tag"),
        ("web-app@sha256:abc", "is not a valid digest"),
        ("web-app=v1@sha256:" + "A" * 64, "is not a valid digest"),
        ("web-app=" + "v" * 129, "is not a valid image tag"),
        ("web-app=.v1", "is not a valid image tag"),
    ],
)
def test_set_image_refuses_what_is_not_an_image_reference_and_pushes_nothing(
    ops: GitOps, arg: str, problem: str
) -> None:
    """Finding 7 of issue 13: a tag that is not a tag used to be pushed to main."""
    before = git("ls-remote", str(ops.remote), cwd=ops.clone)
    for extra in ((), ("--pr",)):
        res = cli(ops, "set-image", "dev", arg, *extra, code=2)
        assert repr(arg) in res.stderr and problem in res.stderr, res.stderr
        assert "\n  newName: evil" not in res.stderr  # escaped, never written out raw
    assert git("ls-remote", str(ops.remote), cwd=ops.clone) == before
    assert "x" not in {p.name for p in ops.clone.iterdir()}


def test_rollback_refuses_a_revision_whose_overlay_is_not_an_image_reference(ops: GitOps) -> None:
    kz = ops.clone / "overlays/prod/kustomization.yaml"
    good = kz.read_text()
    kz.write_text(good.replace("newTag: v2.3.1", 'newTag: "v1;touch x"'))
    bad = ops.commit_and_push("a tag that is not a tag, pushed with plain git")
    kz.write_text(good)
    ops.commit_and_push("fixed by hand")
    before = git("ls-remote", str(ops.remote), cwd=ops.clone)
    res = cli(ops, "rollback", "prod", "--to", bad, code=1)
    assert "overlays/prod/kustomization.yaml@" in res.stderr and "newTag" in res.stderr
    assert "'v1;touch x' is not a valid image tag" in res.stderr
    assert git("ls-remote", str(ops.remote), cwd=ops.clone) == before


def test_promotion_refuses_a_source_overlay_holding_an_invalid_reference(ops: GitOps) -> None:
    kz = ops.clone / "overlays/dev/kustomization.yaml"
    kz.write_text(kz.read_text().replace("newTag: v2.4.0", 'newTag: "$(touch x)"'))
    ops.commit_and_push("pushed with plain git")
    before = git("ls-remote", str(ops.remote), cwd=ops.clone)
    res = cli(ops, "to", "staging", code=1)
    assert "overlays/dev/kustomization.yaml" in res.stderr and "web-app" in res.stderr
    assert "'$(touch x)' is not a valid image tag" in res.stderr
    assert git("ls-remote", str(ops.remote), cwd=ops.clone) == before


def test_secret_parity_gap_exits_3_listing_the_keys_and_opens_no_pr(ops: GitOps) -> None:
    write_secret(ops.clone, "dev", "db", {"password": CANARY, "user": "u", "token": CANARY})
    ops.commit_and_push("dev needs a token")
    before = git("ls-remote", str(ops.remote), cwd=ops.clone)
    res = cli(ops, "to", "staging", code=3)
    assert "staging: Secret 'db' has no key 'token'" in res.stderr and "no PR opened" in res.stderr
    js = cli(ops, "to", "staging", "-o", "json", code=3).json()
    assert js["status"] == "error" and js["plan"]["secrets"]["missing"]
    assert git("ls-remote", str(ops.remote), cwd=ops.clone) == before


def test_next_step_after_a_pr_names_approve_only_when_approvals_are_required(
    ops: GitOps,
) -> None:
    ops.git("pull", "-q", "origin", "main")
    staging = ops.clone / "environments/staging.yaml"
    staging.write_text(staging.read_text().replace("required: 1", "required: 0"))
    ops.commit_and_push("staging: no approvals")
    opened = cli(ops, "to", "staging")
    assert "next: `promote merge" in opened.stdout, opened.stdout
    assert "promote approve" not in opened.stdout
