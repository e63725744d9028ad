"""Secret parity between environments, read without decrypting anything."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from promote.secrets.authoring import parity

ENC = "ENC[AES256_GCM,data:Zm9v,iv:aXY=,tag:dGFn,type:str]"


def _secret(name: str, *, sops: bool = True, **sections: dict[str, str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    obj.update(sections)
    if sops:
        obj["sops"] = {"mac": ENC, "mac_only_encrypted": True}
    return obj


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_secret_shapes_reads_names_keys_and_vault_refs() -> None:
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}},
        _secret("db", data={"password": ENC}, stringData={"user": ENC}),
        _secret(
            "api",
            sops=False,
            stringData={"token": "vault:secret/api#token@3"},
            data={"cert": _b64("vault:secret/tls/api#crt")},
        ),
    ]
    shapes = parity.secret_shapes(objects)
    assert sorted(shapes) == ["api", "db"]
    assert shapes["db"].keys == {"password", "user"} and shapes["db"].encrypted
    api = shapes["api"]
    assert not api.encrypted
    # The version is dropped: dev at @3 and prod at @5 of the same path are the same reference.
    assert api.vault_refs == {"token=vault:secret/api#token", "cert=vault:secret/tls/api#crt"}


def test_parity_ok_when_target_has_everything_and_more() -> None:
    src = [_secret("db", data={"password": ENC})]
    dst = [_secret("db", data={"password": ENC, "extra": ENC}), _secret("other", data={"k": ENC})]
    result = parity.check_parity("staging", src, "prod", dst)
    assert result.ok and result.gaps == ()
    assert (result.source, result.target) == ("staging", "prod")


@pytest.mark.parametrize(
    ("src", "dst", "gaps"),
    [
        (
            [_secret("db", data={"password": ENC})],
            [],
            ["Secret 'db' is missing"],
        ),
        (
            [_secret("db", data={"password": ENC, "user": ENC})],
            [_secret("db", data={"password": ENC})],
            ["Secret 'db' has no key 'user'"],
        ),
        (  # a key may live in data on one side and stringData on the other
            [_secret("db", stringData={"user": ENC})],
            [_secret("db", data={"user": ENC})],
            [],
        ),
        (  # a vault: reference counts as the key being present
            [_secret("api", data={"token": ENC})],
            [_secret("api", sops=False, stringData={"token": "vault:secret/prod/api#token"})],
            [],
        ),
        (
            [_secret("b", data={"k": ENC}), _secret("a", data={"x": ENC, "y": ENC})],
            [_secret("a", data={"x": ENC})],
            ["Secret 'a' has no key 'y'", "Secret 'b' is missing"],
        ),
    ],
)
def test_parity_names_each_gap(
    src: list[dict[str, Any]], dst: list[dict[str, Any]], gaps: list[str]
) -> None:
    result = parity.check_parity("dev", src, "prod", dst)
    assert [str(g) for g in result.gaps] == gaps
    assert result.ok is (not gaps)


def test_gap_detail_is_shown() -> None:
    gap = parity.Gap("db", "password", "vault reference missing")
    assert str(gap) == "Secret 'db' has no key 'password' (vault reference missing)"
