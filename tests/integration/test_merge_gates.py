"""What stands before a merge, as `promote show` reports it and `promote merge` enforces it
(issue 18: the PR page shows the same): a real bare Git remote and real GnuPG keys (dev1 a
registered developer opens, rm1 approves). A version rejected after its PR was opened still
moves nowhere: the merge exits 3 naming the rejection, and `show` says so before anyone tries.
"""

from __future__ import annotations

import pytest

from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_trust import cli, ops  # noqa: F401  (ops is a fixture)

pytestmark = pytest.mark.integration


def test_merge_refuses_a_version_rejected_after_its_pr_was_opened(ops: GitOps) -> None:  # noqa: F811
    opened = cli(ops, "to", "staging", "-o", "json").json()
    number = str(opened["pullRequest"]["number"])
    cli(ops, "approve", number, "--as", "rm1")
    shown = cli(ops, "show", number, "-o", "json").json()
    assert shown["gates"]["mergeable"] is True and shown["gates"]["blocking"] == []
    assert shown["gates"]["rejected"]["status"] == "passed"

    cli(ops, "reject", "web-app", "v2.4.0", "--reason", "crashes on start")
    shown = cli(ops, "show", number, "-o", "json").json()
    assert shown["policy"]["mergeable"] is True  # the approvals still hold...
    assert shown["gates"]["mergeable"] is False  # ...but the version is rejected now
    assert shown["gates"]["rejected"]["status"] == "blocked"
    assert "web-app v2.4.0 was rejected by dev1" in shown["gates"]["blocking"][0]
    text = cli(ops, "show", number).stdout
    assert "not mergeable" in text and "rejected versions: web-app v2.4.0 was rejected" in text

    refused = cli(ops, "merge", number, code=3)
    assert "web-app v2.4.0 was rejected by dev1" in refused.stderr
    assert "promote unreject" in refused.stderr
    assert cli(ops, "prs", "-o", "json").json()["pullRequests"][0]["state"] == "open"
