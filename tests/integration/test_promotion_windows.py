"""Merge windows and break-glass merges (issue 16 item 4) on a real bare Git remote with real
GnuPG keys. prod (2 of rm1, rm2) may merge only on 1 January 2030, 00:00-01:00 UTC: every
merge today is outside it. The clock is injected where a merge must fall inside the window.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promote.errors import PolicyBlocked
from promote.promotion import engine, review
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_trust import cli, open_pr, ops  # noqa: F401

pytestmark = pytest.mark.integration
WINDOWS = """windows:
  allow:
  - rrule: FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1
    start: 2030-01-01T00:00:00
    duration: 1h
    timeZone: UTC
"""


def _prod_pr(ops: GitOps, extra: str = "") -> str:  # noqa: F811
    prod = ops.clone / "environments/prod.yaml"
    prod.write_text(prod.read_text() + WINDOWS + extra)
    ops.commit_and_push("prod merges only in the 2030 window")
    number, _ = open_pr(ops, "to", "prod")
    return str(number)


def test_a_merge_outside_the_window_names_the_next_opening(ops: GitOps) -> None:  # noqa: F811
    number = _prod_pr(ops)
    cli(ops, "approve", number, "--as", "rm1")
    cli(ops, "approve", number, "--as", "rm2")
    notes = cli(ops, "to", "prod", "--dry-run", "-o", "json").json()["plan"]["notes"]
    assert notes == [
        "merge windows of prod: closed: outside every allow window; next opening 2030-01-01 "
        "00:00 UTC"
    ]
    refused = cli(ops, "merge", number, code=3)
    assert "prod: merges are closed (outside every allow window" in refused.stderr
    assert "next opening 2030-01-01 00:00 UTC" in refused.stderr
    assert "--break-glass" in refused.stderr
    with engine.session(ops.clone) as s:  # the clock injected inside the window
        with pytest.raises(PolicyBlocked):
            review.merge(s, int(number), now=datetime(2030, 1, 1, 1, 0, tzinfo=UTC))
        _, result, _ = review.merge(s, int(number), now=datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
    ops.git("fetch", "-q", "origin")
    assert "Promote-Break-Glass" not in ops.git("log", "-1", "--format=%B", result.sha)


def test_break_glass_needs_each_approval_signed_with_the_reason(ops: GitOps) -> None:  # noqa: F811
    number = _prod_pr(ops)
    reason = "INC-42: checkout is down"
    cli(ops, "approve", number, "--as", "rm1", "--break-glass", "--reason", reason)
    cli(ops, "approve", number, "--as", "rm2")  # an ordinary approval: not break-glass
    short = cli(ops, "merge", number, "--break-glass", "--reason", reason, code=3)
    assert "break-glass needs 2 approval(s)" in short.stderr and "has 1 (rm1)" in short.stderr
    cli(ops, "approve", number, "--as", "rm2", "--break-glass", "--reason", "another reason")
    other = cli(ops, "merge", number, "--break-glass", "--reason", reason, code=3)
    assert "has 1 (rm1)" in other.stderr
    cli(ops, "approve", number, "--as", "rm2", "--break-glass", "--reason", reason)
    assert cli(ops, "merge", number, "--break-glass", code=2).code == 2  # no reason: usage
    merged = cli(ops, "merge", number, "--break-glass", "--reason", reason, "-o", "json").json()
    ops.git("fetch", "-q", "origin")
    message = ops.git("log", "-1", "--format=%B", merged["merge"]["sha"])
    assert message.startswith("Promote staging -> prod")  # a fast-forward: no merge commit
    shown = cli(ops, "show", number, "-o", "json").stdout
    assert f"Break-glass merge (prod): {reason}" in shown
    entry = cli(ops, "history", "prod", "-o", "json").json()["entries"][0]
    assert entry["breakGlass"] == reason and entry["pr"]["number"] == int(number)
    assert "break" in cli(ops, "history", "prod").stdout  # (the table may wrap the word)


def test_break_glass_count_is_configurable(ops: GitOps) -> None:  # noqa: F811
    number = _prod_pr(ops, "  breakGlass:\n    required: 1\n")
    cli(ops, "approve", number, "--as", "rm1", "--break-glass", "--reason", "hotfix")
    cli(ops, "approve", number, "--as", "rm2")
    cli(ops, "merge", number, "--break-glass", "--reason", "hotfix")
