"""Whether a commit is promote's own: its change is exactly what its trailers reproduce."""

from __future__ import annotations

import pytest

from promote.promotion import provenance

PATH = "overlays/prod/kustomization.yaml"
BEFORE = (
    "resources:\n- ../base/api\n# promoted\nimages:\n- name: api\n"
    "  newName: registry.example.com/api\n  newTag: v1.0.0\n"
)
AFTER = BEFORE.replace("newTag: v1.0.0", "newTag: v1.1.0")
TRAILERS = {"Promote-Env": "prod", "Promote-Images": "api=v1.1.0"}


def reason(trailers: dict[str, str], changed: list[str], after: str) -> str | None:
    return provenance.own_commit_reason(
        trailers, changed, overlay_file=PATH, parent_text=BEFORE, commit_text=after
    )


def test_a_commit_its_trailers_reproduce_is_promotes_own() -> None:
    assert reason(TRAILERS, [PATH], AFTER) is None


@pytest.mark.parametrize(
    ("trailers", "changed", "after", "why"),
    [
        ({}, [PATH], AFTER, "no Promote-Env/Promote-Images trailers"),
        (TRAILERS, [PATH, "keys/release-managers/rm2.asc"], AFTER, "it changes keys/"),
        (TRAILERS, [PATH], AFTER.replace("resources:", "namespace: x\nresources:"), "not what"),
        ({**TRAILERS, "Promote-Images": "api=v9"}, [PATH], AFTER, "not what"),
        ({**TRAILERS, "Promote-Images": "web=v1"}, [PATH], AFTER, "not what"),
    ],
)
def test_anything_else_is_not(trailers: dict[str, str], changed: list[str], after: str,
                              why: str) -> None:  # fmt: skip
    found = reason(trailers, changed, after)
    assert found is not None and why in found


def test_digest_and_tag_at_digest_versions_split() -> None:
    assert provenance.split_version("v1@sha256:ab") == ("v1", "sha256:ab")
    assert provenance.split_version("sha256:ab") == (None, "sha256:ab")
    assert provenance.split_version("v1") == ("v1", None)


def test_a_moved_image_name_is_reproduced_only_with_its_promote_names_trailer() -> None:
    moved = AFTER.replace("registry.example.com/api", "mirror.example.com/api")
    names = {**TRAILERS, "Promote-Names": "api=mirror.example.com/api"}
    assert reason(names, [PATH], moved) is None
    assert "not what" in (reason(TRAILERS, [PATH], moved) or "")
    assert "not what" in (reason(names, [PATH], AFTER) or "")
