"""The OCI image reference grammar (distribution/reference), one table per part."""

from __future__ import annotations

import pytest

from promote.kustomize import reference

NAME_LIMIT = 255
SHA = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    [
        "web-app",
        "nginx",
        "library/nginx",
        "docker.io/library/nginx",
        "registry.example.com/acme/web-app",
        "localhost:5000/team/app",
        "reg:443/y",
        "my.app",
        "a__b",
        "a---b",
        "a_b.c-d",
        "127.0.0.1:5000/x",
        "[::1]:5000/x",
        "Registry.Example.COM/acme/app",  # the host is case-insensitive; the path is not
    ],
)
def test_valid_names(name: str) -> None:
    assert reference.name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("Web-App", "lowercase"),
        ("acme/Web", "lowercase"),
        ("web app", "not a valid image name"),
        ("web-app\n  newName: evil.example/x", "not a valid image name"),
        ("-web", "not a valid image name"),
        ("web-", "not a valid image name"),
        ("web..app", "not a valid image name"),
        ("web___app", "not a valid image name"),
        ("a//b", "not a valid image name"),
        ("/web", "not a valid image name"),
        ("web/", "not a valid image name"),
        ("reg:port/web", "not a valid image name"),
        ("web:v1", "not a valid image name"),  # a tag belongs in newTag
        ("web@" + SHA, "not a valid image name"),
        ("a*", "not a valid image name"),
        ("x" * 256, "at most 255"),
    ],
)
def test_invalid_names(name: str, problem: str) -> None:
    found = reference.name_problem(name)
    assert found is not None and problem in found
    assert repr(name) in found or not name or len(name) > NAME_LIMIT


@pytest.mark.parametrize("tag", ["v1", "v2.4.1", "1.10", "latest", "_x", "V1-rc.1_b", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert reference.tag_problem(tag) is None


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "v1\n  newName: evil.example/x",  # finding 7 of issue 13
        "v1;touch x",
        "$(touch x)",
        "`id`",
        "v1 ",
        " v1",
        ".v1",
        "-v1",
        "v1:2",
        "v1@sha256:ab",
        "a" * 129,
        "vé",  # \w is ASCII here, as in Go's regexp
    ],
)
def test_invalid_tags(tag: str) -> None:
    found = reference.tag_problem(tag)
    assert found is not None and "is not a valid image tag" in found and repr(tag) in found


@pytest.mark.parametrize(
    "digest",
    [
        SHA,
        "sha512:" + "ab" * 64,
        "sha384:" + "cd" * 48,
        "multihash+base58:" + "0123456789abcdef" * 2,  # another algorithm: at least 32 hex
    ],
)
def test_valid_digests(digest: str) -> None:
    assert reference.digest_problem(digest) is None


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:abc",  # too short
        "sha256:" + "A" * 64,  # sha256 is lowercase hex
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 65,
        "sha256:" + "g" * 64,
        "abc",
        ":" + "0" * 64,
        "256sha:" + "0" * 64,
        "sha256:" + "0" * 64 + "\n",
        "foo:" + "0" * 31,
    ],
)
def test_invalid_digests(digest: str) -> None:
    found = reference.digest_problem(digest)
    assert found is not None and "is not a valid digest" in found


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("nginx", ("nginx", None, None)),
        ("nginx:1.7", ("nginx", "1.7", None)),
        ("localhost:5000/team/app", ("localhost:5000/team/app", None, None)),
        ("localhost:5000/team/app:3", ("localhost:5000/team/app", "3", None)),
        (f"reg.example.com/a/web@{SHA}", ("reg.example.com/a/web", None, SHA)),
        (f"web:v1@{SHA}", ("web", "v1", SHA)),
    ],
)
def test_parse_full_references(ref: str, parts: tuple[str, str | None, str | None]) -> None:
    assert reference.parse(ref) == reference.Reference(*parts)
    assert str(reference.parse(ref)) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "registry.example.com/acme/web-app:v1 newName: evil.example/x",
        "web:v1;touch x",
        "web:$(touch x)",
        "web:",
        "web@sha256:ab",
        "Web:v1",
        "",
    ],
)
def test_parse_refuses_invalid_references(ref: str) -> None:
    with pytest.raises(reference.InvalidReference) as info:
        reference.parse(ref)
    assert repr(ref) in str(info.value)
