"""`promote status` shows release control as the dashboard does, from the same core functions
(``reconcile.control``): holds, rejected versions an environment runs, why an agent is
Unverified (commit and files) and merge windows, in text and ``-o json``. The world is the
dashboard's (tests/ui_world.py): real Git, kube-apiserver and agents."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import run_cli
from tests.ui_world import CANARY, POLICY_FILE, World

pytestmark = pytest.mark.integration


def _status(w: World, *extra: str) -> str:
    res = run_cli("status", "-C", str(w.repo.work), "--kubeconfig", str(w.kubeconfig), *extra)
    assert res.code == 0, res.stdout + res.stderr
    assert CANARY not in res.stdout + res.stderr
    return res.stdout


def test_status_shows_holds_rejections_unverified_and_windows(ui_world: World) -> None:
    words = re.sub(r"\s+", " ", _status(ui_world))
    assert "prod: on hold: prod is on hold since" in words and "by rm2: INC-7" in words
    assert "staging: runs a rejected version: api v1.8.0 was rejected by rm1" in words
    assert f"prod: Unverified: the agent refuses commit {ui_world.unapproved[:12]}" in words
    assert f"(changes {POLICY_FILE})" in words
    assert "prod: merge windows closed: outside every allow window; next opening" in words
    assert "(rejected)" in words


def test_status_json_carries_release_control(ui_world: World) -> None:
    doc = json.loads(_status(ui_world, "-o", "json"))
    release = doc["release"]
    assert "INC-7: payments freeze" in release["prod"]["hold"]
    assert release["prod"]["unverified"]["commit"] == ui_world.unapproved
    assert release["prod"]["windows"]["open"] is False and release["prod"]["windows"]["nextOpening"]
    assert release["staging"]["verification"]["state"] == "Failed"
    api = next(r for r in doc["apps"] if r["app"] == "api")
    assert "api v1.8.0 was rejected by rm1" in api["environments"]["staging"]["rejected"]
    assert api["environments"]["prod"]["rejected"] is None
