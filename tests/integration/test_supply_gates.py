"""The supply gates where a change lands (issue 17): `promote merge` re-verifies signatures and
pins on the PR's head, and `set-image` straight to main runs the environment's gates. A real
registry (distribution), crane and cosign; real Git remotes and GnuPG keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote import errors
from promote.promotion import engine, propose, review
from promote.secrets import gpg
from tests.helpers import run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_supply_chain import set_dev, supply_gitops
from tests.registry_fixture import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def tools_env(tmp_path: Path, oci_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))  # verified-signature cache
    monkeypatch.setenv("PROMOTE_COSIGN", str(oci_registry.cosign))
    monkeypatch.setenv("PROMOTE_CRANE", str(oci_registry.crane))


def with_signer(ops: GitOps, registry: Registry) -> Path:
    """keys/image-signers/release.pub on main; the private key (test only) returned."""
    key, pub = registry.keypair(f"release-{ops.clone.parent.name}")  # one work dir per session
    (ops.clone / "keys/image-signers").mkdir(parents=True, exist_ok=True)
    (ops.clone / "keys/image-signers/release.pub").write_bytes(pub.read_bytes())
    ops.git("pull", "-q", "--rebase", "origin", "main")
    ops.commit_and_push("keys: the release signing key")
    return key


def crane_tag(registry: Registry, reference: str, tag: str) -> None:
    registry._run(str(registry.crane), "tag", reference, tag, "--insecure")


def replace_signature(registry: Registry, repository: str, digest: str) -> None:
    """Someone overwrites the image's signature tag (cosign's ``sha256-<hex>`` referrers tag)
    with an unrelated image: the signature is gone from the registry (kept aside as
    ``saved``, to put back)."""
    crane_tag(registry, f"{registry.host}/{repository}:{digest.replace(':', '-')}", "saved")
    registry.push(repository, digest.replace(":", "-"), "not a signature")


def restore_signature(registry: Registry, repository: str, digest: str) -> None:
    crane_tag(registry, f"{registry.host}/{repository}:saved", digest.replace(":", "-"))


def test_merge_blocked_when_the_signature_is_replaced_after_promote_to(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
    tools_env: None,
) -> None:
    gates = {"staging": {"pinDigests": True, "signedImages": True}}
    ops = supply_gitops(tmp_path, gpg_keys, oci_registry, gates)
    key = with_signer(ops, oci_registry)
    digest = oci_registry.push("acme/web-app", "v5.0.0", "a signed build")
    ref = f"{oci_registry.host}/acme/web-app@{digest}"
    oci_registry.sign(ref, key)
    set_dev(ops, "web-app=v5.0.0")
    home = str(gpg_keys.home)
    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "staging", apps=["web-app"])
        assert not p.blocked, p.problems()  # verified (and remembered) at `promote to`
        pr = propose.open_pull_request(s, p, opener="dev1", signer=gpg.Signer(gnupghome=home))
    with engine.session(ops.clone) as s:
        review.approve(s, pr.number, approver="rm1", signer=gpg.Signer(gnupghome=home))

    replace_signature(oci_registry, "acme/web-app", digest)
    with engine.session(ops.clone) as s, pytest.raises(errors.PolicyBlocked) as exc:
        review.merge(s, pr.number, by="alice")
    assert exc.value.exit_code == 3
    assert exc.value.problems == [
        f"staging: image {ref} has no valid cosign signature by a key in keys/image-signers/ "
        "(release.pub: no signatures found)"
    ]
    res = run_cli("merge", str(pr.number), "-C", str(ops.clone), env=ops.env)
    assert res.code == 3 and ref in res.stderr, res.stderr
    assert digest not in ops.main_file("overlays/staging/kustomization.yaml")

    restore_signature(oci_registry, "acme/web-app", digest)  # back: the same PR merges
    with engine.session(ops.clone) as s:
        review.merge(s, pr.number, by="alice")
    assert f"digest: {digest}" in ops.main_file("overlays/staging/kustomization.yaml")


def test_set_image_to_main_pins_the_digest_and_verifies_the_signature(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
    tools_env: None,
) -> None:
    ops = supply_gitops(
        tmp_path, gpg_keys, oci_registry, {"dev": {"pinDigests": True, "signedImages": True}}
    )
    key = with_signer(ops, oci_registry)
    before = ops.main_file("overlays/dev/kustomization.yaml")
    unsigned = oci_registry.push("acme/web-app", "v6.0.0", "an unsigned build")
    ref = f"{oci_registry.host}/acme/web-app@{unsigned}"

    res = run_cli("set-image", "dev", "web-app=v6.0.0", "-C", str(ops.clone), env=ops.env)
    assert res.code == 3, res.stdout + res.stderr
    assert f"image {ref} has no valid cosign signature" in res.stderr
    assert "nothing pushed" in res.stderr
    assert ops.main_file("overlays/dev/kustomization.yaml") == before
    res = run_cli("set-image", "dev", "web-app=v6.0.0", "--pr", "-C", str(ops.clone),
                  env=ops.env)  # fmt: skip
    assert res.code == 3 and f"image {ref} has no valid cosign signature" in res.stdout + res.stderr
    assert "no PR opened" in res.stderr

    oci_registry.sign(ref, key)
    res = run_cli("set-image", "dev", "web-app=v6.0.0", "-C", str(ops.clone), "-o", "json",
                  env=ops.env)  # fmt: skip
    assert res.code == 0, res.stderr
    assert res.json()["plan"]["changes"][0]["to"] == f"v6.0.0@{unsigned}"
    assert f"newTag: v6.0.0\n  digest: {unsigned}" in ops.main_file(
        "overlays/dev/kustomization.yaml"
    )


def test_set_image_to_main_runs_the_policies(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
) -> None:
    from tests.integration.test_policy_gate import SEMVER, add_policy

    ops = supply_gitops(tmp_path, gpg_keys, oci_registry, {})
    add_policy(ops, SEMVER.replace("values: [staging, production]", "values: [dev]"))
    before = ops.main_file("overlays/dev/kustomization.yaml")
    res = run_cli("set-image", "dev", "web-app=v7.0.0-rc1", "-C", str(ops.clone), env=ops.env)
    assert res.code == 3, res.stdout + res.stderr
    assert "dev: apps/v1 Deployment dev/web-app: policy release-tags" in res.stderr
    assert ops.main_file("overlays/dev/kustomization.yaml") == before
    res = run_cli("set-image", "dev", "web-app=v7.0.0", "-C", str(ops.clone), env=ops.env)
    assert res.code == 0, res.stderr


def test_soak_gate_accepts_the_source_tag_when_only_the_target_pins(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    oci_registry: Registry,
    tools_env: None,
) -> None:
    """Staging runs tags, prod pins digests: the soak gate compares staging's status with
    staging's versions, not with the digest prod pins now (it used to block forever)."""
    from datetime import UTC, datetime, timedelta

    from promote.promotion import plan

    gates = {"prod": {"pinDigests": True, "soak": "10m"}}
    ops = supply_gitops(tmp_path, gpg_keys, oci_registry, gates)
    digest = oci_registry.push("acme/web-app", "v2.3.2", "what staging runs")
    since = datetime.now(UTC) - timedelta(hours=1)

    def staging_status(env: str) -> plan.EnvStatus:
        images = {"web-app": "v2.3.2", "api": "v1.7.5"}
        return plan.EnvStatus(env, synced=True, healthy=True, images=images, since=since)

    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "prod", apps=["web-app"], status_reader=staging_status)
    assert [c.new_version for c in p.changes] == [f"v2.3.2@{digest}"]
    soak = [g for g in p.gates if g.name.startswith("soak")]
    assert [g.status for g in soak] == [plan.GateStatus.PASSED], soak
