"""Promotion end to end in process: real bare Git remotes, real kustomize, real GnuPG keys."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from promote import errors
from promote.forge import base as forge_base
from promote.forge.base import Approval, PRKind, PullRequest
from promote.promotion import approvals, engine, history, plan, propose, review, setimage
from promote.secrets import gpg
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    CANARY,
    GitOps,
    Keys,
    example_gitops,
    git,
    gpg_keys,
    push_to_branch,
    write_secret,
)

pytestmark = pytest.mark.integration
STAGING_KZ = "overlays/staging/kustomization.yaml"


@pytest.fixture
def ops(tmp_path: Path, gpg_keys: Keys) -> GitOps:  # noqa: F811
    ops = example_gitops(tmp_path, gpg_keys)
    ops.keys = gpg_keys
    return ops


def soaked(s: engine.Session) -> plan.StatusReader:
    """A source agent reporting what its overlay sets, Synced and Healthy for a day: passes
    the example's soak gate (prod's), which these tests are not about."""

    def read(env: str) -> plan.EnvStatus:
        images = {i.name: i.version for i in s.read_overlay(s.project.env(env))[1]}
        return plan.EnvStatus(env, True, True, images, datetime.now(UTC) - timedelta(days=1))

    return read


def promote(ops: GitOps, env: str, *, opener: str = "dev1", **kw: object) -> PullRequest:
    """Open a promotion signed with ``opener``'s registered key."""
    with engine.session(ops.clone) as s:
        kw.setdefault("status_reader", soaked(s))
        p = propose.plan_promotion(s, env, **kw)  # type: ignore[arg-type]
        assert not p.empty and not p.blocked, p.problems()
        signer = gpg.Signer(gnupghome=str(ops.keys.home)) if ops.keys else None
        return propose.open_pull_request(s, p, opener=opener, signer=signer)


def approve(ops: GitOps, keys: Keys, number: int, name: str) -> None:
    with engine.session(ops.clone) as s:
        review.approve(s, number, approver=name, signer=gpg.Signer(gnupghome=str(keys.home)))


def merge(ops: GitOps, number: int) -> str:
    with engine.session(ops.clone) as s:
        return review.merge(s, number, by="alice")[1].method


def inject(ops: GitOps, keys: Keys, number: int, name: str, *, signer: str | None = None,
           head: str | None = None) -> None:  # fmt: skip
    """Record an approval through the forge directly, bypassing `approve`'s own checks."""
    with engine.session(ops.clone) as s:
        pr = s.forge.get(number)
        at = datetime.now(UTC).replace(microsecond=0)
        payload = forge_base.approval_payload(
            pr=number, env=pr.env, head_sha=head or pr.head_sha, approver=name, at=at
        )
        fpr = keys.fingerprints[signer or name]
        signer = gpg.Signer(gnupghome=str(keys.home))
        sig = signer.sign(payload.encode(), fingerprints=[fpr], who=name)
        s.forge.approve(number, Approval(name, number, pr.env, pr.head_sha, at, "", payload, sig))


def test_whole_flow_dev_to_staging_to_prod(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    with engine.session(ops.clone) as s:
        p, commit = setimage.push_images(s, "dev", ["web-app=v3.0.0"])
    assert commit and [c.trailer for c in p.changes] == ["web-app=v3.0.0"]
    assert "newTag: v3.0.0" in ops.main_file("overlays/dev/kustomization.yaml")

    pr = promote(ops, "staging")
    assert pr.images == ("web-app=v3.0.0", "api=v1.8.0") and pr.kind is PRKind.PROMOTION
    with pytest.raises(errors.PolicyBlocked, match=r"counted: 0 \(none\)\. Missing: 1 more"):
        merge(ops, pr.number)
    approve(ops, gpg_keys, pr.number, "rm1")
    assert merge(ops, pr.number) == "fast-forward"
    staging = ops.main_file(STAGING_KZ)
    assert "newTag: v3.0.0" in staging and "newTag: v1.8.0" in staging

    prod = promote(ops, "prod")
    approve(ops, gpg_keys, prod.number, "rm1")
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, prod.number)
    assert "needs 2 approval(s) from rm1, rm2; counted: 1 (rm1)" in blocked.value.message
    assert "Missing: 1 more from rm2" in blocked.value.message
    approve(ops, gpg_keys, prod.number, "rm2")
    merge(ops, prod.number)
    assert "newTag: v3.0.0" in ops.main_file("overlays/prod/kustomization.yaml")

    with engine.session(ops.clone) as s:
        newest = history.history(s, "prod")[0]
    assert newest.kind == "promotion" and newest.source == "staging"
    assert [c.trailer for c in newest.changes] == ["web-app=v3.0.0", "api=v1.8.0"]
    assert {(c.approval.approver, c.signature) for c in newest.approvals} == {
        ("rm1", approvals.SignatureStatus.VALID),
        ("rm2", approvals.SignatureStatus.VALID),
    }


def test_promotion_commit_edits_only_image_values_and_leaves_the_clone_alone(
    ops: GitOps,
) -> None:
    before_head = ops.git("rev-parse", "HEAD")
    original = ops.main_file(STAGING_KZ)
    pr = promote(ops, "staging", apps=["web-app"])
    ops.git("fetch", "-q", "origin")
    branch = f"origin/{pr.branch}"
    assert ops.git("diff", "--name-only", "origin/main", branch) == STAGING_KZ
    after = ops.git("show", f"{branch}:{STAGING_KZ}")
    assert after == original.replace("newTag: v2.3.2", "newTag: v2.4.0")
    message = ops.git("log", "-1", "--format=%B", branch)
    main_sha = ops.git("rev-parse", "origin/main")
    for trailer in ("Promote-From: dev", f"Promote-Source-Revision: {main_sha}",
                    "Promote-Images: web-app=v2.4.0"):  # fmt: skip
        assert trailer in message
    assert ops.git("status", "--porcelain") == "" and ops.git("rev-parse", "HEAD") == before_head
    assert "promote/staging/" in pr.branch and pr.author == "dev1"
    assert "| web-app | web-app | v2.3.2 | v2.4.0 |" in pr.body


def test_nothing_to_promote_opens_nothing(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    pr = promote(ops, "staging")
    approve(ops, gpg_keys, pr.number, "rm2")
    merge(ops, pr.number)
    branches = git("ls-remote", str(ops.remote), "refs/heads/promote/*", cwd=ops.clone)
    with engine.session(ops.clone) as s:
        assert propose.plan_promotion(s, "staging").empty
    assert git("ls-remote", str(ops.remote), "refs/heads/promote/*", cwd=ops.clone) == branches


def test_secret_parity_gap_blocks_and_never_shows_a_value(ops: GitOps) -> None:
    write_secret(ops.clone, "dev", "db", {"password": CANARY, "user": "u", "token": CANARY})
    ops.commit_and_push("dev needs a token")
    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "staging")
    assert p.blocked and p.problems() == ["staging: Secret 'db' has no key 'token'"]
    shown = plan.to_markdown(p) + json.dumps(plan.to_dict(p))
    assert "MISSING: Secret 'db' has no key 'token'" in shown and CANARY not in shown


@pytest.mark.parametrize(
    ("target", "kw", "message"),
    [
        ("qa", {}, "unknown environment 'qa'"),
        ("staging", {"source": "staging"}, "cannot promote staging into itself"),
        ("dev", {}, "dev has no upstream"),
        ("staging", {"apps": ["billing"]}, "--app billing: dev has no such app"),
    ],
)
def test_bad_input_is_a_usage_error(ops: GitOps, target: str, kw: dict, message: str) -> None:
    with engine.session(ops.clone) as s, pytest.raises(errors.UsageError, match=message):
        propose.plan_promotion(s, target, **kw)


def test_soak_gate_blocks_until_the_source_ran_long_enough(ops: GitOps) -> None:
    env_file = ops.clone / "environments/staging.yaml"
    env_file.write_text(env_file.read_text() + "gates:\n  soak: 30m\n")
    ops.commit_and_push("soak staging")
    now = datetime.now(UTC)
    running = {"web-app": "v2.4.0", "api": "v1.8.0"}
    with engine.session(ops.clone) as s:
        unknown = propose.plan_promotion(s, "staging")
        young = propose.plan_promotion(
            s, "staging", status_reader=lambda e: plan.EnvStatus(e, True, True, running, now)
        )
        old = propose.plan_promotion(
            s,
            "staging",
            status_reader=lambda e: plan.EnvStatus(
                e, True, True, running, now - timedelta(hours=1)
            ),
        )
    assert unknown.blocked and unknown.gates[0].status is plan.GateStatus.UNKNOWN
    assert young.blocked and "to go" in young.gates[0].reason
    assert not old.blocked and old.gates[0].status is plan.GateStatus.PASSED


def test_self_approval_refused_and_not_counted(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    pr = promote(ops, "staging", opener="rm1")
    with pytest.raises(errors.PolicyBlocked, match="does not allow self-approval"):
        approve(ops, gpg_keys, pr.number, "rm1")
    inject(ops, gpg_keys, pr.number, "rm1")
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, pr.number)
    assert "rm1: not counted: opened the PR, and staging disallows" in "\n".join(
        blocked.value.problems
    )


def test_merge_blocked_when_approval_is_stale(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    pr = promote(ops, "staging")
    approve(ops, gpg_keys, pr.number, "rm1")

    def note(root: Path) -> None:
        (root / "overlays/staging/NOTES.md").write_text("one more commit\n")

    push_to_branch(ops, pr.branch, note, sign_as="rm3")
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, pr.number)
    assert "rm1: not counted: stale: approved" in "\n".join(blocked.value.problems)
    approve(ops, gpg_keys, pr.number, "rm2")
    # Two commits on the branch: a merge commit, one first-parent step for the agents.
    assert merge(ops, pr.number) == "merge-commit"


def test_approver_outside_the_list(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    pr = promote(ops, "staging")
    with pytest.raises(errors.UsageError, match=r"--as rm3: not an approver of staging"):
        approve(ops, gpg_keys, pr.number, "rm3")
    inject(ops, gpg_keys, pr.number, "rm3")
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, pr.number)
    assert "rm3: not counted: not a listed approver of staging" in "\n".join(blocked.value.problems)


def _rewrite_record(ops: GitOps, number: int, edit: object) -> None:
    ref = f"refs/promote/prs/{number}"
    ops.git("fetch", "-q", "origin", f"+{ref}:{ref}")
    record = json.loads(ops.git("show", f"{ref}:pr.json"))
    edit(record)  # type: ignore[operator]
    blob_file = ops.clone.parent / "pr.json"
    blob_file.write_text(json.dumps(record))
    blob = ops.git("hash-object", "-w", str(blob_file))
    body = ops.git("rev-parse", f"{ref}:body.md")
    tree = subprocess.run(
        ["git", "mktree"], cwd=ops.clone, text=True, capture_output=True, check=True,
        input=f"100644 blob {body}\tbody.md\n100644 blob {blob}\tpr.json\n",
    ).stdout.strip()  # fmt: skip
    commit = ops.git("commit-tree", tree, "-p", ops.git("rev-parse", ref), "-m", "tamper")
    ops.git("push", "-q", "-f", "origin", f"{commit}:{ref}")


def test_tampered_approval_record_refuses_the_merge(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    pr = promote(ops, "staging")
    approve(ops, gpg_keys, pr.number, "rm1")

    def edit(record: dict) -> None:
        a = record["approvals"][0]
        a["payload"] = a["payload"].replace('"comment":""', '"comment":"looks fine"')

    _rewrite_record(ops, pr.number, edit)
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, pr.number)
    assert "rm1: REFUSED: the signature does not verify" in "\n".join(blocked.value.problems)
    assert "rm1" in blocked.value.message and "failed verification" in blocked.value.message


def test_forged_approval_signed_by_another_key_is_refused(
    ops: GitOps,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    pr = promote(ops, "staging")
    approve(ops, gpg_keys, pr.number, "rm1")
    inject(ops, gpg_keys, pr.number, "rm2", signer="mallory")
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, pr.number)
    assert "rm2: REFUSED: signed with a key that is not the approver's" in "\n".join(
        blocked.value.problems
    )


def test_approver_key_missing_from_main(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    (ops.clone / "keys/release-managers/rm2.asc").unlink()
    ops.commit_and_push("rm2 left")
    pr = promote(ops, "staging")
    with pytest.raises(errors.ConfigError, match=r"keys/release-managers/rm2\.asc does not exist"):
        approve(ops, gpg_keys, pr.number, "rm2")


def test_approver_key_file_holding_a_private_key_is_refused(
    ops: GitOps,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    pr = promote(ops, "staging")
    approve(ops, gpg_keys, pr.number, "rm1")  # made while rm1.asc was a public key
    for name in ("rm1", "rm2"):
        private = subprocess.run(
            ["gpg", "--homedir", str(gpg_keys.home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", "--armor", "--export-secret-keys", f"{name}@example.com"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        assert gpg.holds_private_key(private)
        (ops.clone / f"keys/release-managers/{name}.asc").write_text(private)
    ops.commit_and_push("oops: private keys")
    with pytest.raises(errors.ConfigError, match=r"rm2\.asc holds a PGP PRIVATE key"):
        approve(ops, gpg_keys, pr.number, "rm2")
    with pytest.raises(errors.PolicyBlocked) as blocked:
        merge(ops, pr.number)
    problems = "\n".join(blocked.value.problems)
    assert "rm1" in problems and "PRIVATE key block" in problems
    assert "BEGIN PGP" not in problems


def test_missing_and_merged_prs_are_clear_errors(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    with pytest.raises(errors.NotFound, match=r"PR #42 does not exist on origin"):
        merge(ops, 42)
    pr = promote(ops, "staging")
    approve(ops, gpg_keys, pr.number, "rm1")
    merge(ops, pr.number)
    with pytest.raises(errors.ForgeError, match=rf"PR #{pr.number} is already merged"):
        merge(ops, pr.number)
    with pytest.raises(errors.ForgeError, match="already merged"):
        approve(ops, gpg_keys, pr.number, "rm2")


def test_unreachable_remote_is_reported(ops: GitOps) -> None:
    ops.git("remote", "set-url", "origin", str(ops.clone.parent / "gone.git"))
    with (
        pytest.raises(errors.GitUnavailable, match="cannot be reached"),
        engine.session(ops.clone),
    ):
        pass


def test_conflicting_prs_both_merge_by_reapplying_images(ops: GitOps) -> None:
    ops.git("pull", "-q", "origin", "main")
    for env in ("staging", "prod"):  # no approvals in this test
        f = ops.clone / f"environments/{env}.yaml"
        text = f.read_text()
        f.write_text(
            text.replace("required: 2", "required: 0").replace("required: 1", "required: 0")
        )
    ops.commit_and_push("no approvals")
    first = promote(ops, "staging", apps=["web-app"])  # v2.4.0
    with engine.session(ops.clone) as s:
        setimage.push_images(s, "dev", ["web-app=v2.5.0"])
    second = promote(ops, "staging", apps=["web-app"])  # v2.5.0, same line as the first
    assert merge(ops, second.number) == "fast-forward"
    assert merge(ops, first.number) == "merge-commit"
    assert "newTag: v2.4.0" in ops.main_file(STAGING_KZ)  # the last merge wins, cleanly
    assert "<<<<<<<" not in ops.main_file(STAGING_KZ)


def test_history_after_promotions_and_a_rollback(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    def ship(tag: str) -> None:
        with engine.session(ops.clone) as s:
            setimage.push_images(s, "dev", [f"web-app={tag}"])
        pr = promote(ops, "staging", apps=["web-app"])
        approve(ops, gpg_keys, pr.number, "rm1")
        merge(ops, pr.number)

    ship("v3.0.0")
    ship("v4.0.0")
    with engine.session(ops.clone) as s:
        entries = history.history(s, "staging")
        rev = history.rollback_revision(s, "staging", steps=1)
        assert rev == entries[0].parent
        p = propose.plan_rollback(s, "staging", rev)
        assert [(c.old_version, c.new_version) for c in p.changes] == [("v4.0.0", "v3.0.0")]
        pr = propose.open_pull_request(
            s, p, opener="dev1", signer=gpg.Signer(gnupghome=str(gpg_keys.home))
        )
    assert pr.kind is PRKind.ROLLBACK
    approve(ops, gpg_keys, pr.number, "rm2")
    merge(ops, pr.number)
    assert "newTag: v3.0.0" in ops.main_file(STAGING_KZ)
    with engine.session(ops.clone) as s:
        entries = history.history(s, "staging")
        with pytest.raises(errors.UsageError, match="cannot go back 9"):
            history.rollback_revision(s, "staging", steps=9)
    assert [e.kind for e in entries] == ["rollback", "promotion", "promotion", "initial"]
    assert [c.trailer for c in entries[1].changes] == ["web-app=v4.0.0"]
    assert entries[0].pr is not None and entries[0].pr.number == pr.number
    assert [(c.approval.approver, str(c.signature)) for c in entries[0].approvals] == [
        ("rm2", "valid")
    ]
    # Offline: the remote is gone, history still reads what was fetched.
    ops.git("remote", "set-url", "origin", str(ops.clone.parent / "gone.git"))
    with engine.session(ops.clone, offline=True) as s:
        assert [e.commit for e in history.history(s, "staging")] == [e.commit for e in entries]


def test_approve_without_the_approvers_secret_key_is_a_clear_error(
    ops: GitOps, tmp_path: Path
) -> None:
    pr = promote(ops, "staging")
    empty = tmp_path / "gnupg-empty"
    empty.mkdir(mode=0o700)
    try:
        with engine.session(ops.clone) as s, pytest.raises(errors.GpgError) as failed:
            review.approve(s, pr.number, approver="rm1", signer=gpg.Signer(gnupghome=str(empty)))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(empty), "--kill", "gpg-agent"], check=False)
    assert "no secret key for rm1" in failed.value.message and str(empty) in failed.value.message
    with engine.session(ops.clone) as s:
        assert s.forge.approvals(pr.number) == []
