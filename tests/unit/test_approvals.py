"""The approval policy (pure): what counts, what does not, and the words the user reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from promote.config import ApprovalsConfig
from promote.forge import base as forge_base
from promote.forge.base import Approval
from promote.promotion import approvals
from promote.promotion.approvals import CheckedApproval, SignatureStatus

HEAD = "a" * 40
OLD = "b" * 40
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROD = ApprovalsConfig(required=2, approvers=["rm1", "rm2", "rm3"], allow_self_approval=False)


STAGING = ApprovalsConfig(required=1, approvers=["rm1", "rm2"], allow_self_approval=False)
DEV = ApprovalsConfig()


def ok(name: str, *, head: str = HEAD, pr: int = 7, env: str = "prod", minute: int = 0,
       status: SignatureStatus = SignatureStatus.VALID,
       scope: tuple[str, ...] | None = None) -> CheckedApproval:  # fmt: skip
    at = T0 + timedelta(minutes=minute)
    signed = scope if scope is not None else (env,)
    return CheckedApproval(
        Approval(name, pr, env, head, at, payload="{}", signature="s", scope=signed), status
    )


def verdict(*checked: CheckedApproval, policy: ApprovalsConfig = PROD, author: str = "alice"):  # type: ignore[no-untyped-def]
    return approvals.evaluate(
        {"prod": policy},
        pr=7,
        head_sha=HEAD,
        approvals=list(checked),
        excluded=approvals.exclusions(author),
    )


@pytest.mark.parametrize(
    ("checked", "counted", "missing"),
    [
        ((), (), 2),
        ((ok("rm1"),), ("rm1",), 1),
        ((ok("rm1"), ok("rm2", minute=1)), ("rm1", "rm2"), 0),
        ((ok("rm1"), ok("rm1", minute=1)), ("rm1",), 1),  # one approval per approver
    ],
)
def test_count_of_valid_distinct_approvals(
    checked: tuple[CheckedApproval, ...], counted: tuple[str, ...], missing: int
) -> None:
    v = verdict(*checked)
    assert v.counted == counted and v.missing == missing and v.ok == (missing == 0)


def test_no_approvals_needed_when_required_is_zero() -> None:
    assert verdict(policy=ApprovalsConfig()).ok


def test_self_approval_not_counted_unless_allowed() -> None:
    v = verdict(ok("rm1"), ok("rm2"), author="rm1")
    assert v.counted == ("rm2",) and not v.ok
    assert ("rm1", "opened the PR, and prod disallows self-approval") in v.not_counted
    allowed = ApprovalsConfig(required=2, approvers=["rm1", "rm2"], allow_self_approval=True)
    assert verdict(ok("rm1"), ok("rm2"), author="rm1", policy=allowed).ok


def test_stale_approval_after_the_head_moved_is_not_counted() -> None:
    v = verdict(ok("rm1", head=OLD), ok("rm2"))
    assert v.counted == ("rm2",)
    assert v.not_counted[0][1].startswith("stale: approved bbbbbbbbbbbb but the PR head is now")


def test_approver_outside_the_list_is_not_counted() -> None:
    v = verdict(ok("mallory"), ok("rm1"))
    assert v.counted == ("rm1",)
    assert "not a listed approver of prod (approvers: rm1, rm2, rm3)" in v.not_counted[0][1]


@pytest.mark.parametrize(
    "status", [SignatureStatus.BAD, SignatureStatus.WRONG_KEY, SignatureStatus.UNSIGNED]
)
def test_tampered_record_refuses_the_merge_even_with_enough_approvals(
    status: SignatureStatus,
) -> None:
    v = verdict(ok("rm1"), ok("rm2"), ok("rm3", status=status))
    assert v.counted == ("rm1", "rm2") and not v.ok
    assert v.refused[0][0] == "rm3"
    assert "rm3" in v.summary() and "failed verification" in v.summary()


def test_signature_replayed_from_another_pr_is_refused() -> None:
    v = verdict(ok("rm1", pr=3), ok("rm2", env="staging"))
    assert [n for n, _ in v.refused] == ["rm1"]
    assert "for PR #3, not this PR" in v.refused[0][1]
    assert v.not_counted == (
        ("rm2", "signed for staging, but the change affects prod (prod not approved); "
                "approve again"),
    )  # fmt: skip


def test_missing_key_is_not_counted_with_the_reason() -> None:
    missing = CheckedApproval(ok("rm2").approval, SignatureStatus.NO_KEY, "no rm2.asc on main")
    v = verdict(ok("rm1"), missing)
    assert v.not_counted == (("rm2", "no rm2.asc on main"),)


def test_forge_reviews_count_without_a_signature() -> None:
    review = CheckedApproval(Approval("rm1", 7, "prod", HEAD, T0), SignatureStatus.FORGE)
    assert verdict(review).counted == ("rm1",)


def test_summary_lists_what_is_present_and_what_is_missing() -> None:
    v = verdict(ok("rm1"), ok("rm2", head=OLD))
    assert v.summary() == (
        "PR #7 into prod needs 2 approval(s) from rm1, rm2, rm3; counted: 1 (rm1). "
        "Missing: 1 more from rm2 or rm3."
    )
    assert v.problems() == [
        "rm2: not counted: stale: approved bbbbbbbbbbbb but the PR head is now aaaaaaaaaaaa"
    ]


def test_payload_binds_pr_env_head_approver_time_and_round_trips() -> None:
    text = forge_base.approval_payload(
        pr=7, env="prod", head_sha=HEAD, approver="rm1", at=T0, comment="lgtm"
    )
    doc = json.loads(text)
    assert doc == {
        "type": "promote.approval/v1",
        "pr": 7,
        "env": "prod",
        "head": HEAD,
        "approver": "rm1",
        "at": "2026-01-01T00:00:00+00:00",
        "comment": "lgtm",
    }
    a = forge_base.approval_from_record({"payload": text, "signature": "sig", "approver": "rm2"})
    assert (a.approver, a.pr, a.env, a.head_sha, a.at) == ("rm1", 7, "prod", HEAD, T0)


def test_corrupted_payload_yields_an_unbound_approval() -> None:
    a = forge_base.approval_from_record({"payload": "{not json", "approver": "rm1"})
    assert (a.approver, a.pr, a.env, a.signature) == ("rm1", 0, "", None)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("rm1", True), ("a.b-c_d", True), ("../x", False), ("", False), ("a b", False)],
)
def test_approver_names_are_plain_file_names(name: str, valid: bool) -> None:
    assert approvals.valid_name(name) is valid


def scoped(
    *checked: CheckedApproval, excluded: dict[str, str] | None = None, **policies: ApprovalsConfig
):  # type: ignore[no-untyped-def]
    return approvals.evaluate(
        policies, pr=7, head_sha=HEAD, approvals=list(checked), excluded=excluded,
        declared_env="dev",
    )  # fmt: skip


def test_every_affected_environment_policy_must_hold() -> None:
    both = ("dev", "prod")
    v = scoped(ok("rm1", scope=both), dev=DEV, prod=PROD)
    assert not v.ok and v.env == "prod" and v.required == 2 and v.missing == 1
    assert v.summary() == (
        "PR #7 changes dev, prod: prod needs 2 approval(s) from rm1, rm2, rm3; counted: 1 "
        "(rm1). Missing: 1 more from rm2 or rm3."
    )
    assert scoped(ok("rm1", scope=both), ok("rm2", scope=both), dev=DEV, prod=PROD).ok


def test_a_staging_approval_never_counts_for_prod() -> None:
    v = scoped(ok("rm1", scope=("staging",)), ok("rm2", scope=("staging",)),
               staging=STAGING, prod=PROD)  # fmt: skip
    assert v.counted == () and not v.ok
    assert "signed for staging, but the change affects staging, prod" in v.problems()[0]


def test_a_change_touching_nothing_needs_nothing() -> None:
    v = scoped()
    assert v.ok and v.scope == () and "changes no environment" in v.summary()


def test_a_writer_of_a_commit_does_not_count_unless_self_approval_is_allowed() -> None:
    wrote = {"rm1": "signed commit abc of the PR"}
    v = scoped(ok("rm1", env="staging"), ok("rm2", env="staging"), excluded=wrote,
               staging=STAGING)  # fmt: skip
    assert v.counted == ("rm2",)
    assert ("rm1", "signed commit abc of the PR, and staging disallows self-approval") in (
        v.not_counted
    )
    assert v.candidates(v.envs[0]) == []
    lax = ApprovalsConfig(required=1, approvers=["rm1"], allow_self_approval=True)
    assert scoped(ok("rm1", env="staging"), excluded=wrote, staging=lax).ok


def test_refused_problems_block_even_with_enough_approvals() -> None:
    v = approvals.evaluate(
        {"prod": PROD}, pr=7, head_sha=HEAD, approvals=[ok("rm1"), ok("rm2")],
        refused=[("commit abcdef", "not signed")],
    )  # fmt: skip
    assert v.counted == ("rm1", "rm2") and not v.ok
    assert v.problems()[0] == "commit abcdef: REFUSED: not signed"


def test_payload_signs_the_sorted_scope() -> None:
    text = forge_base.approval_payload(
        pr=7, env="dev", head_sha=HEAD, approver="rm1", at=T0, scope=["prod", "dev"]
    )
    assert json.loads(text)["scope"] == ["dev", "prod"]
    a = forge_base.approval_from_record({"payload": text, "signature": "sig"})
    assert a.scope == ("dev", "prod")


TWO_SELF_OK = ApprovalsConfig(required=2, approvers=["rm1", "rm2"], allow_self_approval=True)


@pytest.mark.parametrize(
    ("policy", "barred", "unmeetable"),
    [
        (PROD, ["rm1"], False),  # rm2 and rm3 remain for 2
        (ApprovalsConfig(required=2, approvers=["rm1", "rm2"]), ["rm1"], True),
        (ApprovalsConfig(required=2, approvers=["rm1", "rm2"]), ["dev1"], False),
        (TWO_SELF_OK, ["rm1"], False),
        (DEV, ["rm1"], False),
    ],
)
def test_an_opener_who_leaves_too_few_approvers_makes_the_policy_unmeetable(
    policy: ApprovalsConfig, barred: list[str], unmeetable: bool
) -> None:
    assert bool(approvals.unmeetable({"prod": policy}, barred)) is unmeetable


def test_summary_says_when_the_approvals_can_no_longer_be_met() -> None:
    two = ApprovalsConfig(required=2, approvers=["rm1", "rm2"])
    text = verdict(ok("rm2"), policy=two, author="rm1").summary()
    assert "can no longer be met" in text and "rm1 opened the PR" in text
    assert "Missing: 1 more from" not in text
