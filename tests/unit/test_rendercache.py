"""``promote.reconcile.rendercache``: a render is found again only by identical inputs."""

from __future__ import annotations

import pytest

from promote import config
from promote.reconcile import rendercache

INPUTS = frozenset({"overlays/dev/", "overlays/base/web/", "overlays/shared/cm.yaml"})
TREE = {
    "promote.yaml": "p1",
    "environments/dev.yaml": "e1",
    "keys/dev/age.txt": "k1",
    "overlays/dev/kustomization.yaml": "d1",
    "overlays/base/web/deploy.yaml": "b1",
    "overlays/shared/cm.yaml": "s1",
    "overlays/shared/other.yaml": "o1",
    "overlays/prod/kustomization.yaml": "x1",
    "releases/rejected.yaml": "r1",
}


def _cache() -> rendercache.RenderCache:
    cache = rendercache.RenderCache("dev", max_entries=2)
    entry = rendercache.entry_for(
        "dev", INPUTS, TREE, objects=[{"kind": "ConfigMap"}], settings=config.EnvironmentConfig()
    )
    cache.keep(entry)
    return cache


@pytest.mark.parametrize(
    ("change", "hit"),
    [
        ({}, True),
        ({"overlays/prod/kustomization.yaml": "x2"}, True),  # another environment's overlay
        ({"overlays/shared/other.yaml": "o2"}, True),  # a file dev's overlay never names
        ({"releases/rejected.yaml": "r2"}, True),  # records are not render inputs
        ({"overlays/dev/kustomization.yaml": "d2"}, False),
        ({"overlays/dev/new.yaml": "n1"}, False),  # a file appears in dev's folder
        ({"overlays/base/web/deploy.yaml": "b2"}, False),  # a base it reads
        ({"overlays/shared/cm.yaml": "s2"}, False),  # a single file it reads
        ({"environments/dev.yaml": "e2"}, False),  # governance: settings, policy
        ({"keys/dev/age.txt": "k2"}, False),
        ({"policies/new.yaml": "q1"}, False),  # a new governance file
    ],
)
def test_a_render_is_found_only_by_identical_inputs(change: dict[str, str], hit: bool) -> None:
    cache = _cache()
    assert (cache.find({**TREE, **change}) is not None) is hit


def test_a_removed_input_misses_and_old_entries_leave() -> None:
    cache = _cache()
    gone = {k: v for k, v in TREE.items() if k != "overlays/base/web/deploy.yaml"}
    assert cache.find(gone) is None
    for n in range(3):  # max_entries=2: the first entry is dropped
        cache.keep(
            rendercache.entry_for(
                "dev", INPUTS, {**TREE, "promote.yaml": f"p{n + 2}"},
                objects=[], settings=config.EnvironmentConfig(),
            )
        )  # fmt: skip
    assert len(cache) == 2 and cache.find(TREE) is None


def test_large_renders_are_bounded_by_their_objects() -> None:
    cache = rendercache.RenderCache("dev", max_objects=3)
    for n in range(3):
        cache.keep(
            rendercache.entry_for(
                "dev", INPUTS, {**TREE, "promote.yaml": f"p{n}"},
                objects=[{"kind": "ConfigMap"}] * 2, settings=config.EnvironmentConfig(),
            )
        )  # fmt: skip
    assert len(cache) == 1  # the newest is always kept, even alone over the bound
    assert cache.find({**TREE, "promote.yaml": "p2"}) is not None
