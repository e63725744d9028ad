"""Rendering through the real kustomize binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote.errors import RenderError
from promote.kustomize import render
from tests.helpers import copy_example

ENC = "ENC[AES256_GCM,data:Zm9v,iv:aXY=,tag:dGFn,type:str]"


def test_renders_the_example_with_overlay_images(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    objs = render.render(repo / "overlays" / "prod")
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert kinds == [
        ("ConfigMap", "api-config"),
        ("Deployment", "api"),
        ("Deployment", "web-app"),
        ("Service", "api"),
        ("Service", "web-app"),
    ]
    web = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "web-app")
    assert web["metadata"]["namespace"] == "production"
    assert web["spec"]["replicas"] == 3
    image = web["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/acme/web-app:v2.3.1"


def test_sops_encrypted_secret_passes_through_untouched(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n"
        f"  password: {ENC}\nsops:\n  mac: ENC[AES256_GCM,data:bWFj,iv:aQ==,tag:dA==,type:str]\n"
        "  mac_only_encrypted: true\n  encrypted_regex: ^(data|stringData)$\n  version: 3.9.0\n"
    )
    (repo / "overlays/dev/secrets").mkdir()
    (repo / "overlays/dev/secrets/db.sops.yaml").write_text(secret)
    kz = repo / "overlays/dev/kustomization.yaml"
    kz.write_text(
        kz.read_text().replace("- ../base/api\n", "- ../base/api\n- secrets/db.sops.yaml\n")
    )
    objs = render.render(repo / "overlays/dev")
    s = next(o for o in objs if o["kind"] == "Secret")
    assert s["stringData"]["password"] == ENC
    assert s["sops"]["mac_only_encrypted"] is True
    assert s["metadata"]["namespace"] == "dev"


def test_kustomize_error_reaches_user_with_overlay_path(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    kz = repo / "overlays/dev/kustomization.yaml"
    kz.write_text(kz.read_text().replace("../base/api", "../base/missing-app"))
    with pytest.raises(RenderError) as exc:
        render.render(repo / "overlays/dev")
    msg = str(exc.value)
    assert str(repo / "overlays/dev") in msg and "missing-app" in msg
