"""The dashboard when main cannot be loaded, wholly or for one environment: a real uvicorn
server over a real bare Git remote (no cluster: agent status is unknown). It says so on the
page and in /api/matrix, never shows the older main as if it were current."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_promotion_helpers import GitOps, example_gitops
from tests.integration.test_ui import text_of
from tests.ui_world import free_port, serve

pytestmark = pytest.mark.integration
ZONE = "windows:\n  allow:\n  - rrule: FREQ=DAILY\n    start: 2030-01-01T00:00:00\n" \
    "    duration: 1h\n    timeZone: Mars/Olympus\n"  # fmt: skip


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[GitOps, str]]:
    from promote.ui import app

    ops = example_gitops(tmp_path)
    settings = app.Settings(repo_dir=ops.clone, port=free_port(), refresh_s=0.0, poll_s=1.0)
    with serve(settings) as base:
        yield ops, base


def _matrix(base: str, until: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        doc = httpx.get(f"{base}/api/matrix", timeout=60).json()
        if until(doc) or time.monotonic() > deadline:
            return doc


def test_a_broken_environment_file_is_shown_in_its_column(board: tuple[GitOps, str]) -> None:
    ops, base = board
    prod = ops.clone / "environments/prod.yaml"
    prod.write_text(prod.read_text() + ZONE)
    sha = ops.commit_and_push("prod: a window in a zone that does not exist")
    doc = _matrix(base, lambda d: d["revision"] == sha)
    assert doc["revision"] == sha and doc["error"] is None
    assert doc["pipeline"] == ["dev", "staging", "prod"]
    assert doc["errors"][0]["environment"] == "prod"
    assert "Mars/Olympus" in doc["errors"][0]["message"]
    cells = doc["apps"][0]["environments"]
    assert "environments/prod.yaml" in cells["prod"]["error"] and cells["staging"]["error"] is None
    words = text_of(httpx.get(f"{base}/matrix/table", timeout=60).text)
    assert "this environment's file does not load: environments/prod.yaml:" in words


def test_main_that_does_not_load_is_named_with_the_main_still_shown(
    board: tuple[GitOps, str],
) -> None:
    ops, base = board
    old = _matrix(base, lambda d: True)["revision"]
    (ops.clone / "promote.yaml").write_text("mainBranch: main\nunknownKey: 1\n")
    sha = ops.commit_and_push("promote.yaml with a key promote does not know")
    doc = _matrix(base, lambda d: d["error"])
    message = f"could not load main at {sha[:12]}: promote.yaml"
    assert doc["revision"] == old and doc["error"].startswith(message)
    assert doc["error"].endswith(f"; showing {old[:12]}")
    for page in ("/", "/matrix/table"):  # the page and what an open page polls
        words = text_of(httpx.get(f"{base}{page}", timeout=60).text)
        assert message in words and f"showing {old[:12]}" in words
