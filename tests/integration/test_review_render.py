"""The reviewer's rendered diff (``promote approve``/``promote show``) of an images-only change
is the one two full ``kustomize build``s give, from one build of the overlay without its
``images:`` (the render ``promote to`` kept); any other change is built twice in full."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from promote import config
from promote.kustomize import render, renderstore
from promote.promotion import change, diff
from tests.helpers import copy_example

pytestmark = pytest.mark.integration

KZ = "overlays/staging/kustomization.yaml"


def _trees(tmp: Path, edit: tuple[str, str, str]) -> tuple[Path, Path]:
    base = copy_example(tmp / "base")
    head = tmp / "head"
    shutil.copytree(base, head)
    path, old, new = edit
    text = (head / path).read_text()
    assert old in text
    (head / path).write_text(text.replace(old, new))
    return base, head


def _full(project: config.Project, base: Path, head: Path) -> change.EnvDiff:
    """What two full builds show: the reviewer's diff before this fast path."""
    k = render.Kustomize()
    sides = [k.build(root / "overlays/staging") for root in (base, head)]
    objects = diff.diff_objects(*sides, default_namespace="staging")
    return change.EnvDiff("staging", tuple(objects))


def _run(tmp: Path, edit: tuple[str, str, str]) -> tuple[change.EnvDiff, change.EnvDiff, int]:
    base, head = _trees(tmp, edit)
    project = config.load_project(base)
    store = renderstore.RenderStore(tmp / "store", binary="kustomize-under-test")
    got = change.env_diff(project, "staging", base, head, render.Kustomize(store=store))
    builds = len(list((tmp / "store").glob("*.yaml.gz")))
    return got, _full(project, base, head), builds


def test_an_images_only_change_shows_the_same_diff_from_one_build(tmp_path: Path) -> None:
    got, want, builds = _run(tmp_path, (KZ, "newTag: v2.3.2", "newTag: v2.4.0"))
    assert got == want and got.error is None
    assert [d.text for d in got.diffs] == [d.text for d in want.diffs]
    assert "v2.4.0" in got.diffs[0].text
    assert builds == 1  # the overlay without its images: what `promote to` rendered


def test_a_new_image_entry_and_digest_show_the_same_diff(tmp_path: Path) -> None:
    new = "newTag: v1.7.5\n  digest: sha256:" + "c" * 64 + "\n- name: nginx\n  newTag: '1'"
    got, want, builds = _run(tmp_path, (KZ, "newTag: v1.7.5", new))
    assert got == want and got.diffs
    assert builds == 1


def test_a_change_beside_the_images_is_built_in_full(tmp_path: Path) -> None:
    got, want, builds = _run(tmp_path, (KZ, "value: info", "value: debug"))
    assert got == want and got.diffs
    assert builds == 2  # before and after, each kustomize's own


def test_a_base_change_with_an_image_change_is_built_in_full(tmp_path: Path) -> None:
    got, want, builds = _run(tmp_path, ("overlays/base/web-app/deployment.yaml", "8080", "8081"))
    assert got == want and got.diffs
    assert builds == 2
