"""What `promote diff` and `promote status` report (pure parts)."""

from __future__ import annotations

from promote.reconcile.agent import PassReport
from promote.reconcile.report import live_differences

KEY = "/ConfigMap/prod/api-config"


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
