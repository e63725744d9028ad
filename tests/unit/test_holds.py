"""Hold records (issue 16 item 5): round trip, and a broken record names its file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promote.errors import ConfigError
from promote.promotion import holds, scope


def test_a_hold_round_trips_and_lives_outside_the_render_inputs() -> None:
    h = holds.Hold("prod", "quarter-end freeze", datetime(2026, 12, 1, 9, tzinfo=UTC), "rm1")
    assert h.path == "releases/holds/prod.yaml"
    assert holds.parse(holds.dump(h), h.path) == h
    assert h.describe() == "prod is on hold since 2026-12-01 09:00 UTC by rm1: quarter-end freeze"
    layout = scope.Layout(("dev", "prod"), {"prod": frozenset({"overlays/prod/"})})
    assert scope.affected([h.path], layout).envs == ()


def test_a_broken_hold_names_its_file() -> None:
    with pytest.raises(ConfigError, match=r"releases/holds/prod\.yaml"):
        holds.parse("reason: x\n", "releases/holds/prod.yaml")
