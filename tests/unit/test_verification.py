"""The agent's trust chain as pure data (promotion/verification.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from promote.config import ApprovalsConfig
from promote.promotion import scope, verification
from promote.promotion.verification import Step

LAYOUT = scope.Layout(
    ("dev", "staging", "prod"),
    {
        "dev": frozenset({"overlays/dev/", "overlays/base/"}),
        "staging": frozenset({"overlays/staging/", "overlays/base/"}),
        "prod": frozenset({"overlays/prod/", "overlays/base/"}),
    },
)


@pytest.mark.parametrize(
    ("changed", "touched"),
    [
        (["overlays/dev/kustomization.yaml"], ()),
        (["overlays/prod/kustomization.yaml"], ("overlays/prod/kustomization.yaml",)),
        (["overlays/base/api/deployment.yaml"], ("overlays/base/api/deployment.yaml",)),
        (["environments/prod.yaml", "overlays/dev/x"], ("environments/prod.yaml",)),
        (["keys/release-managers/rm1.asc"], ("keys/release-managers/rm1.asc",)),
        (["overlays/unused/x.yaml"], ()),
    ],
)
def test_touched_inputs_of_prod(changed: list[str], touched: tuple[str, ...]) -> None:
    assert verification.touched_inputs("prod", changed, LAYOUT) == touched


def _never() -> bool:
    raise AssertionError("asked whether inputs match a verified revision, needlessly")


def test_steps_that_do_not_touch_inputs_or_are_proved_keep_trust() -> None:
    chain = verification.start("prod", "v0")
    chain = verification.advance(chain, Step("a", "v0", ()), matches_verified=_never)
    chain = verification.advance(
        chain, Step("b", "a", ("overlays/prod/k.yaml",), proof="PR #1"), matches_verified=_never
    )
    verdict = verification.conclude(chain, "b", "v0")
    assert verdict.verified and verdict.proofs == (("b", "PR #1"),) and verdict.touching == 1


def test_first_unproved_step_is_named_until_a_revert_recovers() -> None:
    chain = verification.start("prod", "v0")
    bad = Step("a", "v0", ("overlays/prod/k.yaml",), refusal="no PR approved it")
    chain = verification.advance(chain, bad, matches_verified=lambda: False)
    # Even an approved step on top of an untrusted state stays untrusted, naming the first.
    chain = verification.advance(
        chain,
        Step("b", "a", ("overlays/prod/k.yaml",), proof="PR #2"),
        matches_verified=lambda: False,
    )
    verdict = verification.conclude(chain, "b", "v0")
    assert not verdict.verified and verdict.offence is not None
    assert verdict.offence.commit == "a" and verdict.offence.files == ("overlays/prod/k.yaml",)
    assert "no PR approved it" in verdict.summary()
    chain = verification.advance(
        chain, Step("c", "b", ("overlays/prod/k.yaml",)), matches_verified=lambda: True
    )
    verdict = verification.conclude(chain, "c", "v0")
    assert verdict.verified and chain.recovered == ("c",)


def test_a_step_not_touching_inputs_on_an_untrusted_state_stays_untrusted() -> None:
    chain = verification.start("prod", "v0")
    chain = verification.advance(
        chain, Step("a", "v0", ("environments/prod.yaml",)), matches_verified=lambda: False
    )
    chain = verification.advance(chain, Step("b", "a", ()), matches_verified=lambda: False)
    assert not verification.conclude(chain, "b", "v0").verified


def test_trust_signatures_count_only_for_their_env_revision_and_a_verified_base() -> None:
    policy = ApprovalsConfig(required=2, approvers=["rm1", "rm2"])
    at = datetime(2025, 1, 1, tzinfo=UTC)

    def doc(who: str, *, env: str = "prod", rev: str = "R", base: str = "V") -> tuple:
        payload = verification.trust_payload(env=env, revision=rev, base=base, approver=who, at=at)
        parsed = verification.parse_trust(payload, "sig")
        assert parsed is not None
        return parsed, True

    signed = [doc("rm1"), doc("rm1"), doc("rm2", env="staging"), doc("mallory")]
    assert verification.trust_counted(policy, signed, env="prod", revision="R", bases=["V"]) == (
        "rm1",
    )
    signed.append(doc("rm2"))
    assert verification.trust_counted(policy, signed, env="prod", revision="R", bases=["V"]) == (
        "rm1",
        "rm2",
    )
    assert verification.trust_counted(policy, signed, env="prod", revision="R", bases=["X"]) == ()
    assert verification.parse_trust('{"type": "promote.approval/v1"}', "s") is None


PROD = ApprovalsConfig(required=2, approvers=["rm1", "rm2"])
A, B = "a" * 40, "b" * 40


def _tag(name: str, target: str = A, signer: str | None = None, problem: str = "") -> Any:
    """``name``'s tag, signed by ``signer`` (default: its owner) or, with ``problem``, by nobody."""
    who = None if problem else signer or name
    return verification.PinTag(f"promote/pin/prod/{name}", target, who, problem)


@pytest.mark.parametrize(
    ("tags", "pinned", "why"),
    [
        ([_tag("rm1"), _tag("rm2")], A, ""),
        ([_tag("rm1"), _tag("rm2"), _tag("rm1", B)], A, ""),
        ([_tag("rm1")], "", "signed by 1 of the 2 approvers prod requires (rm1)"),
        ([_tag("rm1"), _tag("rm2", signer="rm1")], "", "signed with rm1's key, not rm2's"),
        ([_tag("rm1"), _tag("dev1")], "", "dev1 is not an approver of prod"),
        ([_tag("rm1", problem="is not signed"), _tag("rm2")], "", "rm1 is not signed"),
        ([_tag("rm1"), _tag("rm2"), _tag("rm1", B), _tag("rm2", B)], "", "2 different commits"),
        ([], "", ""),
    ],
    ids=[
        "two-approvers",
        "extra-tag",
        "too-few",
        "wrong-key",
        "not-approver",
        "unsigned",
        "ambiguous",
        "none",
    ],
)
def test_a_pin_starts_where_enough_approvers_signed_their_own_tags(
    tags: list[verification.PinTag], pinned: str, why: str
) -> None:
    found, reason = verification.pin_from_tags(PROD, "prod", tags)
    assert found == pinned
    assert why in reason and (why or not pinned or not reason)
