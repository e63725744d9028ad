"""Holds (issue 16 item 5) as a user runs them on a real bare Git remote: placed and lifted by
pushing a record to main (no approval), shown in every plan into the held environment."""

from __future__ import annotations

import pytest

from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_trust import cli, ops  # noqa: F401  (ops is a fixture)

pytestmark = pytest.mark.integration
RECORD = "releases/holds/staging.yaml"


def test_a_hold_is_pushed_to_main_and_shown_in_plans(ops: GitOps) -> None:  # noqa: F811
    held = cli(ops, "hold", "staging", "--reason", "quarter-end freeze", "-o", "json").json()
    assert held["hold"]["by"] == "dev1" and held["commit"]
    assert "quarter-end freeze" in ops.main_file(RECORD)
    plan = cli(ops, "to", "staging", "--dry-run", "-o", "json").json()["plan"]
    assert len(plan["notes"]) == 1 and "staging is on hold since" in plan["notes"][0]
    assert "quarter-end freeze" in plan["notes"][0] and not plan["blocked"]
    shown = cli(ops, "to", "staging", "--dry-run")
    assert "note: staging is on hold" in shown.stdout
    number = cli(ops, "to", "staging", "-o", "json").json()["pullRequest"]["number"]
    body = cli(ops, "show", str(number), "-o", "json").stdout
    assert (
        "### Holds and merge windows" in body and "quarter-end freeze" in body
    )  # the PR body is the plan
    again = cli(ops, "hold", "staging", "--reason", "twice")
    assert "Already held" in again.stdout


def test_resume_removes_the_hold(ops: GitOps) -> None:  # noqa: F811
    cli(ops, "hold", "staging", "--reason", "incident")
    resumed = cli(ops, "resume", "staging", "-o", "json").json()
    assert resumed["commit"] and resumed["hold"]["reason"] == "incident"
    ops.git("fetch", "-q", "origin")
    assert RECORD not in ops.git("ls-tree", "-r", "--name-only", "origin/main")
    assert cli(ops, "to", "staging", "--dry-run", "-o", "json").json()["plan"]["notes"] == []
    assert "Not on hold" in cli(ops, "resume", "staging").stdout
    assert cli(ops, "hold", "nowhere", "--reason", "x", code=2).code == 2


def test_holding_again_with_another_reason_says_it_was_not_recorded(ops: GitOps) -> None:  # noqa: F811
    cli(ops, "hold", "staging", "--reason", "one")
    again = cli(ops, "hold", "staging", "--reason", "two")
    assert "Already held" in again.stdout and "one" in again.stdout
    assert "'two' was not recorded" in again.stdout
    assert "promote resume staging" in again.stdout  # how to change it
    shown = cli(ops, "hold", "staging", "--reason", "two", "-o", "json").json()
    assert shown["hold"]["reason"] == "one" and shown["commit"] is None
    assert shown["notRecorded"] == {"reason": "two"}
    assert "promote resume staging" in shown["hint"]
    assert "one" in ops.main_file(RECORD) and "two" not in ops.main_file(RECORD)
    same = cli(ops, "hold", "staging", "--reason", "one", "-o", "json").json()
    assert same["notRecorded"] is None  # the same reason: nothing dropped
