"""Rollbacks are exempt from merge windows (issue 16, DESIGN.md §6), on a real bare Git remote
with real GnuPG keys: prod may merge only on 1 January 2030, 00:00-01:00 UTC; a promotion
merged inside that window (injected clock) is rolled back today, outside it, without
break-glass, and the plan says so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promote.promotion import engine, review
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_trust import cli, open_pr, ops  # noqa: F401
from tests.integration.test_promotion_windows import WINDOWS

pytestmark = pytest.mark.integration
PROD_KZ = "overlays/prod/kustomization.yaml"


def test_a_rollback_merges_outside_the_window_without_break_glass(ops: GitOps) -> None:  # noqa: F811
    prod = ops.clone / "environments/prod.yaml"
    prod.write_text(prod.read_text() + WINDOWS)
    ops.commit_and_push("prod merges only in the 2030 window")
    number, _ = open_pr(ops, "to", "prod")
    cli(ops, "approve", str(number), "--as", "rm1")
    cli(ops, "approve", str(number), "--as", "rm2")
    with engine.session(ops.clone) as s:
        review.merge(s, number, now=datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
    assert "v2.3.2" in ops.main_file(PROD_KZ)

    rolled = cli(ops, "rollback", "prod", "-o", "json").json()
    notes = rolled["plan"]["notes"]
    assert any("exempt from its merge windows" in n for n in notes), notes
    back = str(rolled["pullRequest"]["number"])
    cli(ops, "approve", back, "--as", "rm1")
    cli(ops, "approve", back, "--as", "rm2")
    cli(ops, "merge", back)  # today: outside the window, no --break-glass
    assert "v2.3.1" in ops.main_file(PROD_KZ)
    shown = cli(ops, "show", back, "-o", "json").stdout
    assert "Rollback merged inside closed merge windows (prod)" in shown

    # Anything else still waits for the window.
    again, _ = open_pr(ops, "to", "prod")
    cli(ops, "approve", str(again), "--as", "rm1")
    cli(ops, "approve", str(again), "--as", "rm2")
    assert "next opening 2030-01-01" in cli(ops, "merge", str(again), code=3).stderr
