"""Issue 13's findings as a user with push access tried them: `promote` run as a user does, on a
real bare Git remote, with real GnuPG keys (dev1 in keys/developers/, rm1..rm3 release
managers; mallory is registered nowhere). Each test failed on the code before issue 13.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from promote.kustomize import overlay
from tests.helpers import Result, run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    CANARY,
    GitOps,
    Keys,
    example_gitops,
    gpg_keys,
    push_to_branch,
    replace_in,
)

pytestmark = pytest.mark.integration
PROD_KZ = "overlays/prod/kustomization.yaml"
STAGING_KZ = "overlays/staging/kustomization.yaml"


@pytest.fixture
def ops(tmp_path: Path, gpg_keys: Keys) -> GitOps:  # noqa: F811
    ops = example_gitops(tmp_path, gpg_keys)
    ops.keys = gpg_keys
    status = tmp_path / "status.json"
    status.write_text("{}")  # no agent status yet; soaked_staging() writes staging's
    ops.env = {
        "GNUPGHOME": str(gpg_keys.home),
        "PROMOTE_USER": "dev1",
        "PROMOTE_STATUS_FILE": str(status),
    }
    return ops


def cli(ops: GitOps, *args: str, code: int | None = 0, user: str | None = None) -> Result:
    env = {**ops.env, **({"PROMOTE_USER": user} if user else {})}
    res = run_cli(*args, "-C", str(ops.clone), env=env)
    if code is not None:
        assert res.code == code, f"{args}: exit {res.code}\n{res.stdout}\n{res.stderr}"
    assert CANARY not in res.stdout + res.stderr
    return res


def soaked_staging(ops: GitOps) -> None:
    """prod's soak gate (10m in the example): staging's agent reports what main's staging
    overlay sets, healthy for long (a status file): these tests are about approvals."""
    subprocess.run(["git", "-C", str(ops.clone), "fetch", "-q", "origin"], check=True)
    text = subprocess.run(
        ["git", "-C", str(ops.clone), "show", f"origin/main:{STAGING_KZ}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    images = {i.name: i.version for i in overlay.parse_images(text, STAGING_KZ)}
    since = "2020-01-01T00:00:00+00:00"
    staging = {"synced": True, "healthy": True, "since": since, "images": images}
    Path(ops.env["PROMOTE_STATUS_FILE"]).write_text(json.dumps({"staging": staging}))


def open_pr(ops: GitOps, *args: str, user: str | None = None) -> tuple[int, str]:
    if args[:2] == ("to", "prod"):
        soaked_staging(ops)
    found = cli(ops, *args, "-o", "json", user=user).json()["pullRequest"]
    return int(found["number"]), str(found["branch"])


def test_a_dev_pr_with_a_commit_changing_prod_needs_prods_approvals(ops: GitOps) -> None:
    number, branch = open_pr(ops, "set-image", "dev", "api=v1.9.9", "--pr")
    # A registered developer signs the extra commit: only the scope can stop it.
    push_to_branch(ops, branch, replace_in(PROD_KZ, "newTag: v1.7.5", "newTag: v6.6.6"),
                   sign_as="dev1")  # fmt: skip
    refused = cli(ops, "merge", str(number), code=3)
    assert "changes dev, prod" in refused.stderr and "prod needs 2 approval(s)" in refused.stderr
    assert "v6.6.6" not in ops.main_file(PROD_KZ)


def test_editing_the_record_env_never_lowers_the_policy(ops: GitOps) -> None:
    number, _ = open_pr(ops, "to", "staging")
    ref = f"refs/promote/prs/{number}"
    ops.git("fetch", "-q", "origin", f"+{ref}:{ref}")
    record = json.loads(ops.git("show", f"{ref}:pr.json"))
    record["env"] = "dev"
    blob_file = ops.clone.parent / "pr.json"
    blob_file.write_text(json.dumps(record))
    ops.git("read-tree", ref)  # the record's tree, then pr.json replaced
    ops.git("update-index", "--add", "--cacheinfo",
            f"100644,{ops.git('hash-object', '-w', str(blob_file))},pr.json")  # fmt: skip
    tree = ops.git("write-tree")
    ops.git("read-tree", "HEAD")
    commit = ops.git("commit-tree", tree, "-p", ops.git("rev-parse", ref), "-m", "env: dev")
    ops.git("push", "-q", "-f", "origin", f"{commit}:{ref}")
    refused = cli(ops, "merge", str(number), code=3)
    assert "staging needs 1 approval(s)" in refused.stderr
    assert "Its record says dev" in refused.stderr


def test_an_approver_who_pushed_a_commit_to_the_pr_does_not_count(ops: GitOps) -> None:
    number, branch = open_pr(ops, "to", "staging")
    # The log level, in the very file the plan edits (staging's LOG_LEVEL patch).
    log_level = replace_in(STAGING_KZ, "value: info", "value: debug")
    pushed = push_to_branch(ops, branch, log_level, message="quieter logs", sign_as="rm1")
    shown = cli(ops, "show", str(number), "-o", "json").json()
    assert shown["head"]["beyondPlan"] == [STAGING_KZ]
    assert shown["head"]["differsFromPlan"] and shown["head"]["opener"] == "dev1"
    assert [c["signer"] for c in shown["head"]["commits"] if c["sha"] == pushed] == ["rm1"]
    rendered = {d["env"]: d for d in shown["head"]["rendered"]}
    assert any("LOG_LEVEL: debug" in o["text"] for o in rendered["staging"]["diff"])
    text = cli(ops, "show", str(number)).stdout
    assert "The head differs from the plan" in text and "LOG_LEVEL" in text
    cli(ops, "approve", str(number), "--as", "rm1", code=3)  # refused up front
    refused = cli(ops, "merge", str(number), code=3)
    assert "Missing: 1 more from rm2" in refused.stderr


def test_the_opener_is_whoever_signed_not_who_they_say(ops: GitOps) -> None:
    number, _ = open_pr(ops, "to", "staging", "--author", "dev1", user="rm1")
    shown = cli(ops, "show", str(number), "-o", "json").json()
    assert shown["head"]["opener"] == "rm1"
    refused = cli(ops, "approve", str(number), "--as", "rm1", code=3)
    assert "rm1 opened the PR" in refused.stderr
    assert cli(ops, "merge", str(number), code=3).code == 3


def _share_mallory(ops: GitOps, keys: Keys) -> None:
    for name in ("rm1", "rm2"):
        path = ops.clone / f"keys/release-managers/{name}.asc"
        path.write_text(path.read_text() + keys.public["mallory"])
    ops.commit_and_push("an outsider's key in two files")


def test_one_key_shared_by_two_release_managers_is_refused(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    number, _ = open_pr(ops, "to", "staging")
    cli(ops, "approve", str(number), "--as", "rm1")  # while rm1.asc was sound
    _share_mallory(ops, gpg_keys)
    found = cli(ops, "validate", "-o", "json", code=None).json()
    keys = "\n".join(found.get("keys", []))
    assert "keys/release-managers/rm1.asc" in keys and "keys/release-managers/rm2.asc" in keys
    assert "one person per key" in keys and "holds 2 public keys" in keys
    refused = cli(ops, "approve", str(number), "--as", "rm2", code=1)
    assert "rm1.asc" in refused.stderr and "rm2.asc" in refused.stderr
    blocked = cli(ops, "merge", str(number), code=3)
    rm1 = next(ln for ln in blocked.stderr.splitlines() if "rm1: not counted" in ln)
    assert "rm1.asc" in rm1 and "rm2.asc" in rm1 and "one person per key" in rm1


def test_a_prod_pr_that_changes_governance_shows_it_and_keeps_mains_policy(
    ops: GitOps,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    cli(ops, "set-image", "dev", "api=v2.0.0")
    number, _ = open_pr(ops, "to", "staging")
    cli(ops, "approve", str(number), "--as", "rm1")
    cli(ops, "merge", str(number))
    number, branch = open_pr(ops, "to", "prod")

    def takeover(root: Path) -> None:
        (root / "keys/release-managers/rm2.asc").write_text(gpg_keys.public["mallory"])
        env = root / "environments/prod.yaml"
        env.write_text(env.read_text().replace("required: 2", "required: 1"))

    push_to_branch(ops, branch, takeover, message="tidy", sign_as="dev1")
    shown = cli(ops, "show", str(number), "-o", "json").json()
    beyond = shown["head"]["beyondPlan"]
    assert "keys/release-managers/rm2.asc" in beyond and "environments/prod.yaml" in beyond
    assert shown["head"]["scope"] == ["dev", "staging", "prod"]
    assert shown["policy"]["scope"] == ["dev", "staging", "prod"]
    cli(ops, "approve", str(number), "--as", "rm1")
    refused = cli(ops, "merge", str(number), code=3)  # main's prod policy: 2 approvals
    assert "prod needs 2 approval(s) from rm1, rm2; counted: 1 (rm1)" in refused.stderr


def test_head_verdict_judges_a_head_with_the_policy_of_the_tree_given(ops: GitOps) -> None:
    from promote.promotion import engine, judgement

    number, _ = open_pr(ops, "set-image", "dev", "api=v1.9.9", "--pr")
    with engine.session(ops.clone) as s:
        pr = s.forge.get(number)
        base = s.repo.merge_base(s.sha, pr.head_sha)
        assert base is not None
        verdict = judgement.head_verdict(
            s.repo, s.root, pr, s.forge.approvals(number), head_sha=pr.head_sha, base_sha=base
        )
    assert verdict.ok and verdict.scope == ("dev",)  # set-image dev never needs staging/prod
    assert dict(verdict.excluded) == {"dev1": "opened the PR"}


def test_history_marks_changes_that_reached_an_environment_without_approval(ops: GitOps) -> None:
    number, _ = open_pr(ops, "to", "staging")
    cli(ops, "approve", str(number), "--as", "rm1")
    cli(ops, "merge", str(number))
    ops.git("pull", "-q", "origin", "main")
    kz = ops.clone / STAGING_KZ
    kz.write_text(re.sub(r"newTag: \S+", "newTag: v6.6.6", kz.read_text(), count=1))
    pushed = ops.commit_and_push("hotfix straight to main")
    replace_in(STAGING_KZ, "value: info", "value: debug")(ops.clone)
    patched = ops.commit_and_push("louder logs, no image")
    ops.git("revert", "--no-edit", patched)  # back to the hotfix's inputs: still unapproved
    ops.git("revert", "--no-edit", pushed)  # back to the merged PR's inputs: restored
    ops.git("push", "-q", "origin", "HEAD:main")
    reverted = ops.git("rev-parse", "HEAD")
    half = ops.git("rev-parse", "HEAD~1")

    doc = cli(ops, "history", "staging", "-o", "json").json()
    by_commit = {e["commit"]: e for e in doc["entries"]}
    assert by_commit[pushed]["unapproved"] is True and by_commit[pushed]["judged"] == "unapproved"
    assert "no PR approved" in by_commit[pushed]["why"]
    assert by_commit[pushed]["files"] == [STAGING_KZ]
    # A change of the inputs that moved no image is listed too when it was not approved.
    assert by_commit[patched]["unapproved"] is True and by_commit[patched]["changes"] == []
    assert by_commit[half]["unapproved"] is True
    assert by_commit[reverted]["judged"] == "restored" and not by_commit[reverted]["unapproved"]
    merged = next(e for e in doc["entries"] if e["pr"] and e["pr"]["number"] == number)
    assert merged["judged"] == "approved" and not merged["unapproved"]
    assert merged["why"] == f"PR #{number} approved by rm1"
    order = [e["commit"] for e in doc["entries"]]
    assert order.index(reverted) < order.index(half) < order.index(patched) < order.index(pushed)

    wide = run_cli("history", "staging", "-C", str(ops.clone), env={**ops.env, "COLUMNS": "250"})
    assert wide.code == 0 and wide.stdout.count("unapproved") == 3, wide.stdout
    assert pushed[:8] in wide.stdout and "restored" in wide.stdout
    # Dev requires no approvals: nothing there is unapproved.
    dev = cli(ops, "history", "dev", "-o", "json").json()
    assert not any(e["unapproved"] for e in dev["entries"])
