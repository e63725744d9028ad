"""Image edits are byte-exact: comments, order, quoting and indentation are kept."""

from __future__ import annotations

import pytest

from promote.errors import ConfigError
from promote.kustomize import folder, overlay

DIGEST = "sha256:" + "a" * 64
BEFORE = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base/web-app   # the web front end
  - ../base/api
images:
  # web front end, bumped by CI
  - name: web-app
    newName: registry.example.com/acme/web-app   # mirror
    newTag: "v2.3.1"  # pinned
  - name: api
    newTag: 'v1.7.5'
    digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
patches: []
"""


def test_set_tag_changes_only_that_value_keeping_quotes_and_comment() -> None:
    img = overlay.Image("web-app", "registry.example.com/acme/web-app", "v2.4.1")
    after = overlay.set_image(BEFORE, img)
    assert after == BEFORE.replace('newTag: "v2.3.1"  # pinned', 'newTag: "v2.4.1"  # pinned')


def test_single_quotes_kept_and_digest_removed_when_source_has_none() -> None:
    after = overlay.set_image(BEFORE, overlay.Image("api", None, "v1.8.0"))
    expected = BEFORE.replace(
        f"    newTag: 'v1.7.5'\n    digest: {DIGEST}\n",
        "    newTag: 'v1.8.0'\n",
    )
    assert after == expected


def test_missing_field_is_inserted_with_the_entry_indentation() -> None:
    after = overlay.set_image(BEFORE, overlay.Image("api", "reg/api", "v1.7.5", DIGEST))
    assert after == BEFORE.replace(
        f"    digest: {DIGEST}\n",
        f"    digest: {DIGEST}\n    newName: reg/api\n",
    )


def test_new_image_is_appended_to_the_list() -> None:
    after = overlay.set_image(BEFORE, overlay.Image("worker", None, "v1"))
    assert after == BEFORE.replace("patches: []", "  - name: worker\n    newTag: v1\npatches: []")


def test_images_list_created_when_absent() -> None:
    text = "resources:\n- ../base/web-app\n"
    after = overlay.set_image(text, overlay.Image("web-app", None, "v2"))
    assert after == text + "images:\n- name: web-app\n  newTag: v2\n"


def test_unchanged_image_leaves_text_identical() -> None:
    img = overlay.Image("web-app", "registry.example.com/acme/web-app", "v2.3.1")
    assert overlay.set_image(BEFORE, img) == BEFORE


@pytest.mark.parametrize(
    ("value", "written"),
    [("1.10", '"1.10"'), ("true", '"true"'), ("v1.0", "v1.0"), ("2024-01-01", "2024-01-01")],
)
def test_plain_values_that_yaml_would_misread_are_quoted(value: str, written: str) -> None:
    text = "images:\n- name: a\n  newTag: v0\n"
    after = overlay.set_image(text, overlay.Image("a", None, value))
    assert after == f"images:\n- name: a\n  newTag: {written}\n"
    assert overlay.parse_images(after)[0].new_tag == value


def test_parse_images_and_apps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "kustomization.yaml").write_text(BEFORE)
    images = folder.read_images(tmp_path)
    assert [(i.name, i.new_tag, i.digest) for i in images] == [
        ("web-app", "v2.3.1", None),
        ("api", "v1.7.5", DIGEST),
    ]
    assert folder.list_apps(tmp_path) == ["api", "web-app"]


def test_flow_style_entry_is_refused_with_a_fix() -> None:
    with pytest.raises(ConfigError, match="block mapping"):
        overlay.set_image("images: [{name: a, newTag: v1}]\n", overlay.Image("a", None, "v2"))


def test_add_resource_keeps_indentation() -> None:
    after = overlay.add_resource(BEFORE, "secrets/db.sops.yaml")
    assert "  - ../base/api\n  - secrets/db.sops.yaml\nimages:" in after
    assert overlay.add_resource(after, "secrets/db.sops.yaml") == after


@pytest.mark.parametrize(
    ("written", "new", "changed"),
    [("1.10", "1.1", True), ("1.10", "1.10", False), ("'1.10'", "1.10", False)],
)
def test_numeric_looking_tags_are_compared_as_written(
    written: str, new: str, changed: bool
) -> None:
    text = f"images:\n- name: a\n  newTag: {written}\n"
    assert overlay.parse_images(text)[0].new_tag == written.strip("'")
    after = overlay.set_image(text, overlay.Image("a", None, new))
    assert (after != text) is changed
    assert overlay.parse_images(after)[0].new_tag == new


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("newTag: 1.10", "1.10"),  # as written, not the float 1.1 (kustomize refuses it)
        ("newTag: '1.10'", "1.10"),
        ('newTag: "null"', "null"),  # a quoted "null" is a string
        ("newTag: null", None),
        ("newTag: ~", None),
        ("newTag:", None),
        ("newTag: 2", "2"),
    ],
)
def test_image_values_are_read_as_written(entry: str, expected: str | None) -> None:
    (img,) = overlay.parse_images(f"images:\n- name: a\n  {entry}\n")
    assert img.new_tag == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("images: {name: a}\n", "must be a list"),
        ("images:\n- newTag: v1\n", r"images\[0\]: each entry needs a `name`"),
        ("images:\n- name: a\n  newTag: [v1]\n", r"images\[0\]\.newTag must be a single value"),
        ("- a\n", "expected a mapping"),
        ("images: [\n", "not valid YAML"),
    ],
)
def test_bad_images_entries_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        overlay.parse_images(text, "overlays/dev/kustomization.yaml")


def test_set_images_edits_many_entries_in_one_pass_like_one_at_a_time() -> None:
    text = "images:  # pinned\n- name: a\n  newTag: v1  # a\n- name: b\n  newTag: 'v1'\n"
    wanted = [overlay.Image("b", None, "v2"), overlay.Image("c", None, "v1"),
              overlay.Image("a", "reg/a", "v3")]  # fmt: skip
    one_by_one = text
    for img in wanted:
        one_by_one = overlay.set_image(one_by_one, img)
    assert (
        overlay.set_images(text, wanted)
        == one_by_one
        == (
            "images:  # pinned\n- name: a\n  newTag: v3  # a\n  newName: reg/a\n"
            "- name: b\n  newTag: 'v2'\n- name: c\n  newTag: v1\n"
        )
    )


@pytest.mark.parametrize(
    ("text", "after"),
    [
        ("images:\n- name: a\n  newTag:\n", "images:\n- name: a\n  newTag: v2\n"),
        ("images:\n- name: a\n  newTag: ~\n", "images:\n- name: a\n  newTag: v2\n"),
        ("resources: []\nimages:\n", "resources: []\nimages:\n- name: a\n  newTag: v2\n"),
        ("resources: []", "resources: []\nimages:\n- name: a\n  newTag: v2\n"),
        (
            "images:\n    - name: a\n      newTag: v1\n",
            "images:\n    - name: a\n      newTag: v2\n",
        ),
    ],
)
def test_set_image_fills_empty_places(text: str, after: str) -> None:
    assert overlay.set_image(text, overlay.Image("a", None, "v2")) == after


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("images: [{name: b}]\n", "flow list"),
        ("images:\n- newTag: v1\n  name: a\n", "write `name` first"),
        ("images:\n- name: a\n  newTag: |\n    v1\n", "on one line"),
    ],
)
def test_set_image_refuses_layouts_it_cannot_edit_in_place(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        overlay.set_image(text, overlay.Image("a", None, None))


@pytest.mark.parametrize(
    ("image", "field"),
    [
        (overlay.Image("web-app", None, "v1\n  newName: evil.example/x"), "newTag"),
        (overlay.Image("web-app", None, "v1;touch x"), "newTag"),
        (overlay.Image("web-app", "evil.example/x y", "v1"), "newName"),
        (overlay.Image("web-app", None, "v1", "sha256:abc"), "digest"),
        (overlay.Image("Worker", None, "v1"), "name"),
    ],
)
def test_writer_refuses_a_value_that_is_not_an_image_reference(
    image: overlay.Image, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        overlay.set_image(BEFORE, image, "overlays/dev/kustomization.yaml")
    message = str(info.value)
    assert message.startswith(f"overlays/dev/kustomization.yaml: images entry {image.name!r}: ")
    assert f"{field}: " in message and "\n" not in message
