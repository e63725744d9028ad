"""Which environments a change affects: decided by the paths it changes (DESIGN.md §4)."""

from __future__ import annotations

import pytest

from promote.promotion import scope

LAYOUT = scope.Layout(
    ("dev", "staging", "prod"),
    {
        "dev": frozenset({"overlays/dev/", "overlays/base/app/"}),
        "staging": frozenset({"overlays/staging/", "overlays/base/app/"}),
        "prod": frozenset({"overlays/prod/", "overlays/base/app/", "overlays/base/extra.yaml"}),
    },
)


@pytest.mark.parametrize(
    ("changed", "envs"),
    [
        (["overlays/dev/kustomization.yaml"], ("dev",)),
        (["overlays/prod/kustomization.yaml"], ("prod",)),
        (["overlays/dev/kustomization.yaml", "overlays/prod/kustomization.yaml"], ("dev", "prod")),
        (["overlays/base/app/deployment.yaml"], ("dev", "staging", "prod")),
        (["overlays/base/extra.yaml"], ("prod",)),
        (["overlays/base/unused/x.yaml"], ()),
        (["environments/dev.yaml"], ("dev", "staging", "prod")),
        (["keys/release-managers/rm1.asc"], ("dev", "staging", "prod")),
        (["promote.yaml"], ("dev", "staging", "prod")),
        ([".sops.yaml"], ("dev", "staging", "prod")),
        (["README.md"], ("dev", "staging", "prod")),
        ([], ()),
    ],
)
def test_a_change_affects_the_environments_whose_inputs_it_touches(
    changed: list[str], envs: tuple[str, ...]
) -> None:
    assert scope.affected(changed, LAYOUT).envs == envs


def test_a_dev_pr_that_also_edits_prod_is_a_prod_change() -> None:
    got = scope.affected(["overlays/dev/kustomization.yaml", "overlays/prod/x.yaml"], LAYOUT)
    assert "prod" in got.envs and got.reasons["prod"] == "overlays/prod/x.yaml"


def test_governance_paths_are_named() -> None:
    got = scope.affected(["environments/prod.yaml"], LAYOUT)
    assert got.governance == ("environments/prod.yaml",)
    assert got.reasons["dev"] == "governance: environments/prod.yaml"


def test_a_base_added_by_the_change_counts_on_both_sides() -> None:
    after = scope.Layout(("dev",), {"dev": frozenset({"overlays/dev/", "overlays/base/new/"})})
    both = scope.Layout(("dev",), {"dev": frozenset({"overlays/dev/"})}).merged(after)
    assert scope.affected(["overlays/base/new/cm.yaml"], both).envs == ("dev",)


def test_inputs_equal_ignores_other_environments_but_not_governance() -> None:
    a = {"overlays/dev/k.yaml": "1", "overlays/prod/k.yaml": "1", "keys/x.asc": "k"}
    b = {"overlays/dev/k.yaml": "1", "overlays/prod/k.yaml": "2", "keys/x.asc": "k"}
    assert scope.inputs_equal("dev", LAYOUT, a, b)
    assert not scope.inputs_equal("prod", LAYOUT, a, b)
    c = {**a, "keys/x.asc": "other"}
    assert not scope.inputs_equal("dev", LAYOUT, a, c)


def test_strictest_environment() -> None:
    assert scope.strictest(["dev", "prod"], {"dev": 0, "prod": 2}) == "prod"
    assert scope.strictest([], {}) is None


def test_placing_a_record_affects_no_environment() -> None:
    """A rejection or hold under releases/ is no render input: writing one needs no approval
    and never makes an environment Unverified (DESIGN.md §6)."""
    got = scope.affected(["releases/rejected/web-app/v2.4.0.yaml"], LAYOUT)
    assert got.envs == () and got.governance == ()
    both = scope.affected(["releases/holds/prod.yaml", "overlays/dev/kustomization.yaml"], LAYOUT)
    assert both.envs == ("dev",)


def test_lifting_a_record_affects_every_environment() -> None:
    path = "releases/rejected/web-app/v2.4.0.yaml"
    got = scope.affected([path], LAYOUT, lifted=[path])
    assert got.envs == ("dev", "staging", "prod")
    assert got.reasons["prod"] == f"lifts: {path}" and got.governance == ()


def test_records_are_not_inputs_of_any_environment() -> None:
    a = {"overlays/dev/k.yaml": "1", "keys/x.asc": "k"}
    b = {**a, "releases/rejected/api/v1.yaml": "r"}
    assert scope.inputs_equal("dev", LAYOUT, a, b)
