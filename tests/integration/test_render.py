"""Rendering through the real kustomize binary."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from promote.errors import RenderError
from promote.kustomize import render, renderstore
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


def _counting(tmp_path: Path) -> tuple[render.Kustomize, Path, renderstore.RenderStore]:
    """A Kustomize keeping renders in a store under ``tmp_path``, running the real binary
    through a wrapper that counts its runs (one line each in the returned file)."""
    real = render.find_kustomize()
    runs = tmp_path / "runs"
    runs.write_text("")
    wrapper = tmp_path / "kustomize-counting"
    wrapper.write_text(
        f"#!/bin/sh\necho run >> {shlex.quote(str(runs))}\nshift\n"
        f'exec {" ".join(shlex.quote(a) for a in real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    store = renderstore.RenderStore(tmp_path / "renders", binary="test")
    return render.Kustomize([str(wrapper), "build"], store=store), runs, store


def test_a_render_is_reused_only_while_every_file_it_reads_is_unchanged(tmp_path: Path) -> None:
    kz, runs, store = _counting(tmp_path)
    repo = copy_example(tmp_path / "r")
    other = copy_example(tmp_path / "export")  # the same files elsewhere: an export
    prod = kz.build(repo / "overlays" / "prod")
    assert kz.build(other / "overlays" / "prod") == prod
    assert kz.build(repo / "overlays" / "dev") != prod
    (repo / "overlays" / "staging" / "kustomization.yaml").write_text("garbage: [")
    assert kz.build(repo / "overlays" / "prod") == prod  # staging is not an input of prod
    assert len(runs.read_text().splitlines()) == 2  # prod once, dev once
    base = repo / "overlays" / "base" / "web-app" / "service.yaml"
    base.write_text(base.read_text().replace("port: 80", "port: 8080"))
    changed = kz.build(repo / "overlays" / "prod")
    assert changed != prod and len(runs.read_text().splitlines()) == 3
    files = list(store.where.iterdir())
    assert files and {f.stat().st_mode & 0o777 for f in files} == {0o600}
    assert store.where.stat().st_mode & 0o777 == 0o700


def test_an_overlay_reading_a_link_is_never_kept(tmp_path: Path) -> None:
    kz, runs, _store = _counting(tmp_path)
    repo = copy_example(tmp_path / "r")
    extra = repo / "overlays" / "prod" / "extra.yaml"
    extra.symlink_to(repo / "overlays" / "base" / "web-app" / "service.yaml")
    kz.build(repo / "overlays" / "prod")
    kz.build(repo / "overlays" / "prod")
    assert len(runs.read_text().splitlines()) == 2
