"""RealPaths gives os.path.realpath's answers on a tree with every kind of link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promote.errors import RenderError
from promote.kustomize import folder, realpaths, sandbox

PARTS = ["a", "b", "f", "sib", "abs", "up", "dangling", "loop", "tofile", "chain", ".", "..",
         "nothere", ""]  # fmt: skip


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "f").write_text("x")
    (root / "a" / "b" / "f").write_text("y")
    (root / "a" / "sib").symlink_to("b")  # relative, to a sibling folder
    (root / "a" / "b" / "abs").symlink_to(root / "a")  # absolute
    (root / "a" / "b" / "up").symlink_to("..")  # to its own parent
    (root / "a" / "dangling").symlink_to("nothere/at/all")
    (root / "a" / "loop").symlink_to("loop2")
    (root / "a" / "loop2").symlink_to("loop")
    (root / "a" / "tofile").symlink_to("f")
    (root / "a" / "b" / "chain").symlink_to("../sib/up")  # a link through links


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("realpaths")
    _tree(root)
    return root


def test_same_answers_as_realpath(tree: Path) -> None:
    shared = realpaths.RealPaths()  # one for every example: what it keeps must stay right

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.sampled_from(PARTS), min_size=0, max_size=7), st.booleans())
    def check(parts: list[str], absolute: bool) -> None:
        text = "/".join(parts)
        path = f"{tree}/{text}" if absolute or not text else text
        cwd = os.getcwd()
        os.chdir(tree)  # relative paths resolve against the working folder, as realpath's do
        try:
            assert shared(path) == os.path.realpath(path), path
            assert realpaths.RealPaths()(path) == os.path.realpath(path), path
        finally:
            os.chdir(cwd)

    check()


def test_walks_give_the_same_results_with_a_shared_resolver(tmp_path: Path) -> None:
    """The sandbox walk and the input paths of an overlay reading a linked base: the same
    folders, files and refusals whichever resolver they use."""
    (tmp_path / "base" / "app").mkdir(parents=True)
    (tmp_path / "base" / "app" / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (tmp_path / "base" / "app" / "cm.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "overlays" / "dev").mkdir(parents=True)
    (tmp_path / "overlays" / "linked").symlink_to("../base")
    (tmp_path / "overlays" / "dev" / "kustomization.yaml").write_text(
        "resources: [../linked/app]\n"
    )
    overlay = tmp_path / "overlays" / "dev"
    box = sandbox.Sandbox(tmp_path)
    shared = realpaths.RealPaths()
    assert box.check(overlay, realpath=shared) == box.check(overlay)
    assert (
        folder.input_paths(tmp_path, overlay, realpath=shared)
        == folder.input_paths(tmp_path, overlay)
        == frozenset({"overlays/dev/", "base/app/", "base/app/cm.yaml"})
    )
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "overlays" / "escape").symlink_to(outside)
    (tmp_path / "overlays" / "dev" / "kustomization.yaml").write_text("resources: [../escape]\n")
    for resolve in (realpaths.RealPaths(), os.path.realpath):
        with pytest.raises(RenderError, match="outside the repository"):
            box.check(overlay, realpath=resolve)
