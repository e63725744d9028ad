"""Supply-chain gates (issue 17, items 4-5): digests pinned at promotion time, cosign
signatures verified offline. A real registry (distribution), crane and cosign; real Git
remotes and GnuPG keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from promote import errors
from promote.promotion import engine, propose, review, setimage
from promote.secrets import gpg
from promote.supply import crane
from tests.helpers import run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    example_gitops,
    gpg_keys,
)
from tests.registry_fixture import Registry

pytestmark = pytest.mark.integration


def supply_gitops(tmp: Path, keys: Keys, registry: Registry, gates: dict[str, dict]) -> GitOps:
    """The example layout with web-app pulled from the test registry and ``gates`` set."""
    ops = example_gitops(tmp, keys)
    for env in ("dev", "staging", "prod"):
        kz = ops.clone / f"overlays/{env}/kustomization.yaml"
        kz.write_text(
            kz.read_text().replace(
                "registry.example.com/acme/web-app", f"{registry.host}/acme/web-app"
            )
        )
    for env, extra in gates.items():
        path = ops.clone / f"environments/{env}.yaml"
        data = yaml.safe_load(path.read_text())
        data["gates"] = extra
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    ops.commit_and_push("supply chain: web-app from the test registry; gates")
    return ops


def set_dev(ops: GitOps, spec: str) -> None:
    with engine.session(ops.clone) as s:
        setimage.push_images(s, "dev", [spec])


def test_pinned_digest_survives_a_moved_tag(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
) -> None:
    pin = {"pinDigests": True}
    ops = supply_gitops(tmp_path, gpg_keys, oci_registry, {"staging": pin, "prod": pin})
    verified = oci_registry.push("acme/web-app", "v3.0.0", "the build staging verifies")
    set_dev(ops, "web-app=v3.0.0")
    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "staging", apps=["web-app"])
        assert [c.new_version for c in p.changes] == [f"v3.0.0@{verified}"]
        signer = gpg.Signer(gnupghome=str(gpg_keys.home))
        pr = propose.open_pull_request(s, p, opener="dev1", signer=signer)
    with engine.session(ops.clone) as s:
        review.approve(
            s, pr.number, approver="rm1", signer=gpg.Signer(gnupghome=str(gpg_keys.home))
        )
    with engine.session(ops.clone) as s:
        review.merge(s, pr.number, by="alice")
    assert f"digest: {verified}" in ops.main_file("overlays/staging/kustomization.yaml")

    moved = oci_registry.push("acme/web-app", "v3.0.0", "someone re-pushed the tag")
    assert moved != verified
    assert crane.Crane().digest(f"{oci_registry.host}/acme/web-app:v3.0.0") == moved
    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "prod", apps=["web-app"])
    assert [c.new_version for c in p.changes] == [f"v3.0.0@{verified}"]
    assert f"newTag: v3.0.0\n  digest: {verified}" in p.overlay_after


def test_tag_missing_from_the_registry_names_the_image(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
) -> None:
    ops = supply_gitops(tmp_path, gpg_keys, oci_registry, {"staging": {"pinDigests": True}})
    set_dev(ops, "web-app=v9.9.9")
    with engine.session(ops.clone) as s, pytest.raises(errors.RegistryError) as exc:
        propose.plan_promotion(s, "staging", apps=["web-app"])
    assert f"{oci_registry.host}/acme/web-app:v9.9.9" in str(exc.value)


def _signature_gates(ops: GitOps) -> list[str]:
    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "staging", apps=["web-app"])
    return [f"{g.status}: {g.reason}" for g in p.gates if g.name.startswith("signed")]


def test_only_an_image_signed_by_a_repository_key_passes(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))  # verified-signature cache
    monkeypatch.setenv("PROMOTE_COSIGN", str(oci_registry.cosign))
    monkeypatch.setenv("PROMOTE_CRANE", str(oci_registry.crane))
    gates = {"staging": {"pinDigests": True, "signedImages": True}}
    ops = supply_gitops(tmp_path, gpg_keys, oci_registry, gates)
    release_key, release_pub = oci_registry.keypair("release")
    other_key, _ = oci_registry.keypair("other")
    (ops.clone / "keys/image-signers").mkdir(parents=True)
    (ops.clone / "keys/image-signers/release.pub").write_bytes(release_pub.read_bytes())
    ops.git("pull", "-q", "--rebase", "origin", "main")
    ops.commit_and_push("keys: the release signing key")
    digest = oci_registry.push("acme/web-app", "v4.0.0", "a build to sign")
    ref = f"{oci_registry.host}/acme/web-app@{digest}"
    set_dev(ops, "web-app=v4.0.0")

    unsigned = _signature_gates(ops)
    assert unsigned == [
        f"blocked: image {ref} has no valid cosign signature by a key in "
        "keys/image-signers/ (release.pub: no signatures found)"
    ]
    res = run_cli("to", "staging", "--app", "web-app", "-C", str(ops.clone), env=ops.env)
    assert res.code == 3 and ref in res.stdout + res.stderr

    oci_registry.sign(ref, other_key)  # signed, but by a key the repository does not trust
    wrong = _signature_gates(ops)
    assert wrong[0].startswith(f"blocked: image {ref} has no valid cosign signature")
    assert "no signatures found" not in wrong[0]

    verified = tmp_path / "cache/cosign-verified"
    assert not verified.exists()  # failures are never remembered
    oci_registry.sign(ref, release_key)
    assert _signature_gates(ops) == [
        "passed: cosign signature verified with keys/image-signers/release.pub"
    ]
    assert len([p for p in verified.rglob("*") if p.is_file()]) == 1  # by digest and key
