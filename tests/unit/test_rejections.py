"""Rejected versions: records, and which image changes they block (issue 16 item 3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promote.errors import ConfigError, UsageError
from promote.kustomize import overlay
from promote.promotion import plan, rejections

DIGEST = "sha256:" + "a" * 64
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _rej(version: str, app: str = "web-app") -> rejections.Rejection:
    return rejections.Rejection(app, version, "crashes on start", AT, "rm1", "https://ci/1")


def _change(tag: str | None, digest: str | None = None, name: str = "web-app") -> plan.ImageChange:
    new = overlay.Image(name, f"registry.example.com/acme/{name}", tag, digest)
    return plan.ImageChange(app=new.app, name=name, old=None, new=new)


@pytest.mark.parametrize(
    ("version", "change", "hit"),
    [
        ("v2.5.0", _change("v2.5.0"), True),
        ("v2.5.0", _change("v2.5.0", DIGEST), True),  # a tag rejection covers any digest
        ("v2.5.0", _change("v2.5.1"), False),
        (DIGEST, _change("v9", DIGEST), True),  # a digest rejection covers any tag
        (DIGEST, _change("v2.5.0"), False),
        (f"v2.5.0@{DIGEST}", _change("v2.5.0"), False),
        (f"v2.5.0@{DIGEST}", _change("v2.5.0", DIGEST), True),
        ("v2.5.0", _change("v2.5.0", name="api"), False),
    ],
)
def test_a_rejection_matches_its_version(version: str, change: plan.ImageChange, hit: bool) -> None:
    assert bool(rejections.rejected([change], [_rej(version)])) is hit


def test_the_gate_names_the_rejection() -> None:
    gate = rejections.gate([_change("v2.5.0")], [_rej("v2.5.0")])
    assert gate.blocks and "web-app v2.5.0 was rejected by rm1" in gate.reason
    assert "crashes on start" in gate.reason and "https://ci/1" in gate.reason
    assert not rejections.gate([_change("v2.5.1")], [_rej("v2.5.0")]).blocks


def test_a_record_round_trips_and_lives_outside_the_overlays() -> None:
    r = _rej(f"v2.5.0@{DIGEST}")
    assert r.path == f"releases/rejected/web-app/v2.5.0@sha256-{'a' * 64}.yaml"
    assert rejections.parse(rejections.dump(r), r.path) == r


def test_a_broken_record_names_its_file() -> None:
    with pytest.raises(ConfigError, match=r"releases/rejected/x/v1\.yaml"):
        rejections.parse("app: x\n", "releases/rejected/x/v1.yaml")


@pytest.mark.parametrize(
    ("app", "version"), [("web-app", "v 1"), ("a/b", "v1"), ("web-app", "sha256:zz"), ("", "v1")]
)
def test_bad_names_and_versions_are_usage_errors(app: str, version: str) -> None:
    with pytest.raises(UsageError):
        rejections.check_version(app, version)


@pytest.mark.parametrize("version", ["v2.5.0", f"sha256:{'a' * 64}", f"v2.5.0@sha256:{'b' * 64}"])
def test_a_record_path_names_its_app_and_version_again(version: str) -> None:
    path = rejections.record_path("web-app", version)
    assert rejections.from_path(path) == ("web-app", version)
    assert rejections.from_path("releases/holds/prod.yaml") is None
