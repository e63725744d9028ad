"""Image references for crane and cosign (promote/supply/images.py)."""

from __future__ import annotations

import pytest

from promote.kustomize.overlay import Image
from promote.supply import images

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image", "by_tag", "by_digest"),
    [
        (Image("web", "reg.io/acme/web", "v1"), "reg.io/acme/web:v1", "reg.io/acme/web:v1"),
        (Image("web", None, "v1", DIGEST), "web:v1", f"web@{DIGEST}"),
        (Image("web", "r:5000/web", None, DIGEST), "r:5000/web", f"r:5000/web@{DIGEST}"),
    ],
)
def test_references(image: Image, by_tag: str, by_digest: str) -> None:
    assert images.by_tag(image) == by_tag
    assert images.by_digest(image) == by_digest


@pytest.mark.parametrize(
    ("name", "registry", "loopback"),
    [
        ("127.0.0.1:5000/acme/web", "127.0.0.1:5000", True),
        ("localhost/web", "localhost", True),
        ("[::1]:5000/web", "[::1]:5000", True),
        ("registry.example.com/acme/web", "registry.example.com", False),
        ("library/nginx", "docker.io", False),
        ("nginx", "docker.io", False),
    ],
)
def test_registry_host_and_plain_http_only_on_loopback(
    name: str, registry: str, loopback: bool
) -> None:
    assert images.registry(name) == registry
    assert images.is_loopback(images.registry(name)) is loopback
