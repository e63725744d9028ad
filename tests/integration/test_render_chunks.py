"""An overlay of many per-app folders renders in chunks, to what one kustomize build renders.

Issue 19: one ``kustomize build`` is quadratic in its objects (10,000 objects did not finish
within the agent's 120 s bound); an overlay that is a plain list of folders is built in
chunks (kustomize/shards.py). These tests hold the chunks to the real kustomize's one build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promote.errors import RenderError
from promote.kustomize import render, shards
from tests.gitops import app_manifests

APPS = shards.CHUNK_FOLDERS * 2 + 3  # three chunks, the last one short


def _overlay(root: Path, *, app_kustomization: str = "") -> Path:
    """overlays/base/<app>/ and overlays/env/<app>/ per app; env lists its app folders."""
    env = root / "overlays" / "env"
    names = [f"app{i:03d}" for i in range(APPS)]
    for name in names:
        base = root / "overlays" / "base" / name
        base.mkdir(parents=True)
        (base / "app.yaml").write_text(app_manifests(name))
        (base / "kustomization.yaml").write_text("resources:\n- app.yaml\n")
        (env / name).mkdir(parents=True)
        (env / name / "kustomization.yaml").write_text(
            f"resources:\n- ../../base/{name}\n{app_kustomization}"
        )
    (env / "kustomization.yaml").write_text("resources:\n" + "".join(f"- {n}\n" for n in names))
    (root / "promote.yaml").write_text("mainBranch: main\n")
    return env


def _ids(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


def test_overlay_of_app_folders_renders_in_chunks_as_one_build(tmp_path: Path) -> None:
    env = _overlay(tmp_path / "r", app_kustomization="labels:\n- pairs: {team: a}\n")
    kz = render.Kustomize()
    assert shards.plan(env) is not None
    chunked = kz.build(env, scratch=tmp_path / "chunks")
    assert len(list((tmp_path / "chunks").iterdir())) == 3
    one = kz.build(env)
    assert _ids(chunked) == _ids(one)
    assert sorted(map(repr, chunked)) == sorted(map(repr, one))


def test_folder_that_renames_makes_the_overlay_one_build(tmp_path: Path) -> None:
    # A name prefix renames each app's ConfigMap, and the name-reference pass rewrites the
    # Deployment's reference to it: chunks are exact only without renames, so this overlay
    # builds as one, and the reference still follows the rename.
    env = _overlay(tmp_path / "r", app_kustomization="namePrefix: team-\n")
    assert shards.plan(env) is None
    objs = render.Kustomize().build(env, scratch=tmp_path / "chunks")
    assert not (tmp_path / "chunks").exists()
    dep = next(o for o in objs if o["kind"] == "Deployment")
    ref = dep["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert ref == f"{dep['metadata']['name']}-config"
    assert ref.startswith("team-")


def test_object_in_two_chunks_is_refused_as_kustomize_would(tmp_path: Path) -> None:
    env = _overlay(tmp_path / "r")
    last = f"app{APPS - 1:03d}"
    (env / last / "kustomization.yaml").write_text("resources:\n- ../../base/app000\n")
    with pytest.raises(RenderError, match=r"two of its folders define .*app000"):
        render.Kustomize().build(env, scratch=tmp_path / "chunks")
