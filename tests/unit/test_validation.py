"""validate's rules on rendered objects."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from promote.cluster import validation


def _deploy(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
    }


def _check(objs: list[dict[str, Any]], allow_latest: bool = False) -> list[str]:
    return [
        str(f)
        for f in validation.check_objects(
            objs, env="prod", namespace="production", allow_latest=allow_latest
        )
    ]


def test_plaintext_secret_is_named_without_its_value() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "data": {"password": base64.b64encode(b"CANARY-hunter2").decode()},
    }
    found = _check([secret])
    assert len(found) == 1
    assert "Secret production/db" in found[0] and "data.password" in found[0]
    assert "CANARY" not in found[0] and "aHVudGVy" not in found[0]


def test_vault_refs_and_sops_values_pass() -> None:
    vault = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "v"},
        "stringData": {"token": "vault:secret/prod/api#token"},
        "data": {"b": base64.b64encode(b"vault:secret/prod/api#b@3").decode()},
    }
    sops = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "ENC[AES256_GCM,data:abc=,iv:x=,tag:y=,type:str]"},
        "sops": {"mac": "x"},
    }
    assert _check([vault, sops]) == []


def test_sops_file_with_one_plaintext_value_is_caught() -> None:
    sops = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"k": "ENC[AES256_GCM,data:abc=,iv:x=,tag:y=,type:str]", "p": "plain"},
        "sops": {"mac": "x"},
    }
    found = _check([sops])
    assert len(found) == 1 and "stringData.p" in found[0] and "not encrypted" in found[0]


@pytest.mark.parametrize(
    ("image", "problem"),
    [("web", "has no tag"), ("web:latest", ":latest"), ("reg:5000/web", "has no tag")],
)
def test_untagged_or_latest_images(image: str, problem: str) -> None:
    found = _check([_deploy(image)])
    assert len(found) == 1 and problem in found[0]
    assert "spec.template.spec.containers[0].image" in found[0]
    assert _check([_deploy(image)], allow_latest=True) == []


@pytest.mark.parametrize("image", ["web:v1", "reg:5000/web:v1", "web@sha256:" + "ab" * 32])
def test_pinned_images_pass(image: str) -> None:
    assert _check([_deploy(image)]) == []


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/acme/web-app:v1 newName: evil.example/x",  # issue 13, finding 7
        "web:v1;touch x",
        "web@sha256:abc",
        "Web:v1",
    ],
)
def test_images_that_are_not_references_are_findings_even_with_allow_latest(image: str) -> None:
    for allow_latest in (False, True):
        found = _check([_deploy(image)], allow_latest=allow_latest)
        assert len(found) == 1 and repr(image) in found[0] and "is not a valid" in found[0]


def test_missing_kind_or_name() -> None:
    found = _check([{"apiVersion": "v1", "metadata": {}}])
    assert "kind, metadata.name" in found[0] and "document 1" in found[0]


def test_duplicate_objects() -> None:
    found = _check([_deploy("a:v1"), _deploy("a:v2")])
    assert len(found) == 1 and "defined twice" in found[0]
