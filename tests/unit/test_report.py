"""What `promote diff` and `promote status` report (pure parts)."""

from __future__ import annotations

import pytest

from promote.reconcile.agent import PassReport
from promote.reconcile.report import behind, live_differences

KEY = "/ConfigMap/prod/api-config"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def _cm(level: str, revision: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "api-config", "namespace": "prod",
                         "annotations": {"promote.dev/revision": revision},
                         "labels": {"promote.dev/environment": "prod"}},
            "data": {"LOG_LEVEL": level}}  # fmt: skip


def test_diff_shows_the_drifted_field_but_not_the_revision_annotation() -> None:
    live = {**_cm("trace", "aaaa"), "metadata": {**_cm("trace", "aaaa")["metadata"], "uid": "u"}}
    report = PassReport(diffs=[(KEY, live, _cm("debug", "bbbb"))],
                        out_of_sync={KEY: ["/data/LOG_LEVEL"]})  # fmt: skip
    (entry,) = live_differences(report)
    assert entry["object"] == "ConfigMap prod/api-config"
    assert "-  LOG_LEVEL: trace" in entry["diff"] and "+  LOG_LEVEL: debug" in entry["diff"]
    assert "promote.dev/revision" not in entry["diff"] and "uid" not in entry["diff"]
    assert "name: api-config" in entry["diff"]


def test_a_changed_secret_value_shows_as_a_line_without_its_value() -> None:
    canary = "Q0FOQVJZLXJlcG9ydA=="
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": canary}}  # fmt: skip
    want = {**live, "data": {"password": "b3RoZXI="}}
    (entry,) = live_differences(PassReport(diffs=[("/Secret//db", live, want)]))
    assert "+  password: <changed>" in entry["diff"] and canary not in entry["diff"]


@pytest.mark.parametrize(
    ("upstream", "mine", "lags"),
    [
        ("v2.4.1", "v2.4.1", False),
        ("v2.4.1", f"v2.4.1@{DIGEST_A}", False),  # pinned here only: the same release
        (f"v2.4.1@{DIGEST_A}", f"v2.4.1@{DIGEST_A}", False),
        (f"v2.4.1@{DIGEST_A}", f"v2.4.1@{DIGEST_B}", True),  # the tag moved: other content
        ("v2.4.2", f"v2.4.1@{DIGEST_A}", True),
        ("v2.4.1", None, True),
        (None, "v2.4.1", False),
    ],
)
def test_status_marks_behind_upstream_by_release_not_by_spelling(
    upstream: str | None, mine: str | None, lags: bool
) -> None:
    assert behind(upstream, mine) is lags
