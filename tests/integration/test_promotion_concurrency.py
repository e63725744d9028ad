"""Concurrent promotions and CI pushes into one environment: every change lands, none is lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from promote.kustomize import overlay
from promote.promotion import engine, propose, review, setimage
from tests.integration.test_promotion_helpers import GitOps, many_apps, publish

pytestmark = pytest.mark.integration
APPS = [f"app{i:03d}" for i in range(10)]


@pytest.fixture
def ops(tmp_path: Path) -> GitOps:
    return publish(many_apps(tmp_path / "work", len(APPS), staging_required=0), tmp_path)


def _images(ops: GitOps, env: str) -> dict[str, str]:
    text = ops.main_file(f"overlays/{env}/kustomization.yaml")
    return {i.name: i.version for i in overlay.parse_images(text)}


def test_ten_parallel_promotions_of_different_apps_all_land(ops: GitOps) -> None:
    def open_one(app: str) -> int:
        with engine.session(ops.clone) as s:
            p = propose.plan_promotion(s, "staging", apps=[app])
            return propose.open_pull_request(s, p, author="ci").number

    def merge_one(number: int) -> str:
        with engine.session(ops.clone) as s:
            return review.merge(s, number, by="ci")[1].method

    with ThreadPoolExecutor(max_workers=len(APPS)) as pool:
        numbers = list(pool.map(open_one, APPS))
    assert sorted(numbers) == list(range(1, len(APPS) + 1))
    with ThreadPoolExecutor(max_workers=len(APPS)) as pool:
        methods = list(pool.map(merge_one, numbers))
    assert "fast-forward" in methods and "merge-commit" in methods
    assert _images(ops, "staging") == dict.fromkeys(APPS, "v2.0.0")
    with engine.session(ops.clone) as s:
        assert {p.state for p in s.forge.list()} == {"merged"}


def test_ten_parallel_set_image_pushes_all_land(ops: GitOps) -> None:
    def push(app: str) -> str | None:
        with engine.session(ops.clone) as s:
            return setimage.push_images(s, "dev", [f"{app}=v9.{app[-1]}"])[1]

    with ThreadPoolExecutor(max_workers=len(APPS)) as pool:
        commits = list(pool.map(push, APPS))
    assert all(commits) and len(set(commits)) == len(APPS)
    assert _images(ops, "dev") == {a: f"v9.{a[-1]}" for a in APPS}
