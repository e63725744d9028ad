"""`promote to ENV --live` (issue 17, item 3): the after-render dry-run against the
environment's real kube-apiserver before the PR opens. Admission rejections block (exit 3),
the live diff shows what would change, Secrets go with placeholders and are never decrypted,
and without a reachable cluster or with an unverified main the promotion goes on without it."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from promote.cluster import apply, client
from promote.errors import ClusterError
from promote.promotion import engine, setimage
from tests.helpers import copy_example, run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    CANARY,
    GitOps,
    Keys,
    gpg_keys,
    install_keys,
    publish,
    write_secret,
)

pytestmark = pytest.mark.integration
LIVE_CANARY = "CANARY-live-3f9a01-in-the-cluster"
SOPS_CANARY = "CANARY-sops-77c2e9-encrypted-in-git"
ADMISSION_DEADLINE_S = 60.0  # the API server loads a new policy asynchronously


def live_gitops(tmp: Path, keys: Keys, *, kubeconfig: str, namespace: str) -> GitOps:
    """The example layout whose staging runs in ``namespace`` of the cluster ``kubeconfig``
    names: set in the first commit, where trust starts (a later direct push is unverified).
    staging's db Secret is really encrypted with sops to staging's age key, written to
    ``tmp/staging.agekey`` (the promoter holds it in the tests below: it is never used)."""
    work = copy_example(tmp / "work")
    install_keys(work, keys)
    write_secret(work, "dev", "db", {"password": CANARY, "user": CANARY + "-user"})
    key = str(tmp / "staging.agekey")
    for args, stdin in ((("keys", "init", "staging", "--out", key), None),
                        (("secrets", "set", "staging", "db", "password=-", "user=app", "--no-pr"),
                         SOPS_CANARY)):  # fmt: skip
        res = run_cli(*args, cwd=work, input=stdin)
        assert res.code == 0, res.stderr
    env_file = work / "environments/staging.yaml"
    env_file.write_text(
        env_file.read_text().replace(
            "  context: promote-local\n  namespace: staging\n",
            f"  kubeconfig: {kubeconfig}\n  namespace: {namespace}\n",
        )
    )
    kz = work / "overlays/staging/kustomization.yaml"
    kz.write_text(kz.read_text().replace("namespace: staging", f"namespace: {namespace}"))
    ops = publish(work, tmp)
    with engine.session(ops.clone) as s:
        setimage.push_images(s, "dev", ["web-app=v3.0.0"])
    return ops


@pytest.fixture
def cluster(control_plane: Any) -> client.Cluster:
    return client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))


def deploy_staging_web_app(ops: GitOps, cluster: client.Cluster, namespace: str) -> None:
    """What an agent deployed before: main's web-app Deployment, and the db Secret whose live
    value is a canary."""
    with engine.session(ops.clone) as s:
        objs = s.render_overlay(s.project.env("staging").overlay_dir, tree=s.tree)
    dep = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "web-app"]
    for obj in apply.scope(
        cluster, apply.prepare(dep, env="staging", revision="r0"), namespace=namespace
    ):
        cluster.apply(obj)
    value = base64.b64encode(LIVE_CANARY.encode()).decode()
    meta = {"name": "db", "namespace": namespace}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
              "data": {"password": value, "user": value}}  # fmt: skip
    cluster.apply(secret)


def test_live_diff_shows_what_changes_and_never_a_secret(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    control_plane: Any,
    cluster: client.Cluster,
    namespace: str,
) -> None:
    kubeconfig = str(control_plane.kubeconfig)
    ops = live_gitops(tmp_path, gpg_keys, kubeconfig=kubeconfig, namespace=namespace)
    deploy_staging_web_app(ops, cluster, namespace)
    no_canary_in_secrets(cluster, namespace)
    args = ("to", "staging", "--live", "--dry-run", "-C", str(ops.clone))
    # The promoter could decrypt (staging's key is in its environment); the live check must
    # not. KUBECONFIG points nowhere: the cluster settings are main's, not the shell's.
    holder = {"KUBECONFIG": "/nonexistent", "SOPS_AGE_KEY_FILE": str(tmp_path / "staging.agekey")}
    res = run_cli(*args, "-o", "json", env=holder)
    assert res.code == 0, res.stdout + res.stderr
    found = res.json()["live"]
    assert found["state"] == "checked" and found["rejections"] == []
    by_object = {d["object"]: d for d in found["diff"]}
    web = by_object[f"apps/v1 Deployment {namespace}/web-app"]
    assert web["action"] == "changed"
    changed = [ln for ln in web["text"].splitlines() if ln[:1] in "+-" and "image:" in ln]
    assert [ln.split("image: ")[1] for ln in changed] == [
        "registry.example.com/acme/web-app:v2.3.2",
        "registry.example.com/acme/web-app:v3.0.0",
    ]
    assert by_object[f"apps/v1 Deployment {namespace}/api"]["action"] == "added"
    secret = by_object[f"v1 Secret {namespace}/db"]["text"]
    moved = [ln for ln in secret.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert all("labels" in ln or "promote" in ln for ln in moved), moved  # keys, not values
    text = run_cli(*args, env=holder).stdout
    assert "live: staging's cluster (v1." in text
    for out in (res.stdout + res.stderr, text):
        assert CANARY not in out and LIVE_CANARY not in out and SOPS_CANARY not in out
        assert base64.b64encode(LIVE_CANARY.encode()).decode() not in out
    rt = cluster.resource("apps/v1", "Deployment")  # a dry run stores nothing
    live = cluster.get(rt, namespace, "web-app")
    assert live is not None and "v2.3.2" in str(live["spec"]["template"])
    assert cluster.get(rt, namespace, "api") is None

    # A direct push to main changes staging's inputs without approval: its cluster settings
    # are not trusted with credentials, and the promotion goes on without the live check.
    env_file = ops.clone / "environments/staging.yaml"
    ops.git("pull", "-q", "origin", "main")
    env_file.write_text(env_file.read_text().replace("prune: true", "prune: false"))
    ops.commit_and_push("staging: no prune (pushed without a PR)")
    res = run_cli(*args, "-o", "json")
    assert res.code == 0, res.stderr
    assert res.json()["live"]["state"] == "unavailable"
    assert "not verified" in res.json()["live"]["reason"]


def install_policy(
    cluster: client.Cluster,
    namespace: str,
    *,
    name: str,
    resource: tuple[str, str],
    expression: str,
    message: str,
    probe: dict[str, Any],
) -> str:
    """A ValidatingAdmissionPolicy + Deny binding for ``namespace``, in force once ``probe``
    (which violates it) is rejected by a dry run."""
    name = f"{name}-{namespace}"
    group, plural = resource
    cluster.apply({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [group], "apiVersions": ["v1"], "resources": [plural],
                "operations": ["CREATE", "UPDATE"]}]},
            "validations": [{"expression": expression, "message": message}],
        },
    })  # fmt: skip
    cluster.apply({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}},
    })  # fmt: skip
    deadline = time.monotonic() + ADMISSION_DEADLINE_S
    while time.monotonic() < deadline:  # the API server loads the policy in the background
        try:
            cluster.apply(probe, dry_run=True)
        except ClusterError as exc:
            if message in exc.message:
                return name
            raise
        time.sleep(0.2)
    raise AssertionError(f"the policy {name} was not enforced in time")


def one_replica(cluster: client.Cluster, namespace: str) -> str:
    probe = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "probe", "namespace": namespace},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {
                 "metadata": {"labels": {"a": "b"}},
                 "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}  # fmt: skip
    return install_policy(
        cluster, namespace, name="one-replica", resource=("apps", "deployments"),
        expression="object.spec.replicas <= 1", message="at most one replica in this cluster",
        probe=probe,
    )  # fmt: skip


def no_canary_in_secrets(cluster: client.Cluster, namespace: str) -> str:
    """The cluster itself refuses any Secret holding the canary: had promote sent the
    decrypted value, the live check would report this rejection."""
    value = base64.b64encode(SOPS_CANARY.encode()).decode()
    meta = {"name": "probe", "namespace": namespace}
    probe = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"k": value}}
    return install_policy(
        cluster, namespace, name="no-canary", resource=("", "secrets"),
        # data values as CEL sees them: bytes, or their base64 text (either form is caught)
        expression=f"!has(object.data) || !object.data.exists(k, "
                   f"string(object.data[k]).contains('{SOPS_CANARY}') || "
                   f"string(object.data[k]).contains('{value}'))",
        message="the canary reached the API server", probe=probe,
    )  # fmt: skip


def test_admission_rejection_blocks_the_promotion(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    control_plane: Any,
    cluster: client.Cluster,
    namespace: str,
) -> None:
    ops = live_gitops(tmp_path, gpg_keys, kubeconfig=str(control_plane.kubeconfig),
                      namespace=namespace)  # fmt: skip
    policy = one_replica(cluster, namespace)
    res = run_cli("to", "staging", "--live", "-C", str(ops.clone), env=ops.env)
    assert res.code == 3, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert f"live staging: apps/v1 Deployment {namespace}/web-app" in out
    assert f"ValidatingAdmissionPolicy '{policy}'" in out
    assert "at most one replica in this cluster" in out
    assert "no PR opened" in out
    res = run_cli("to", "staging", "--live", "-C", str(ops.clone), "-o", "json", env=ops.env)
    assert res.code == 3
    rejected = res.json()["live"]["rejections"]
    assert {r["object"] for r in rejected} == {
        f"apps/v1 Deployment {namespace}/web-app",
        f"apps/v1 Deployment {namespace}/api",
    }
    assert ops.git("ls-remote", "origin", "refs/heads/promote/*") == ""


def test_without_a_cluster_the_promotion_goes_on(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    missing = str(tmp_path / "no-such-kubeconfig")
    ops = live_gitops(tmp_path, gpg_keys, kubeconfig=missing, namespace="staging")
    res = run_cli("to", "staging", "--live", "--dry-run", "-C", str(ops.clone))
    assert res.code == 0, res.stdout + res.stderr
    said = " ".join(res.stdout.split())
    assert f"live: staging's cluster not checked: kubeconfig {missing} does not exist" in said


def test_kubeconfig_option_points_the_live_check_and_auto_at_a_cluster(
    tmp_path: Path,
    gpg_keys: Keys,  # noqa: F811
    control_plane: Any,
    namespace: str,
) -> None:
    """The demo's hints pass --kubeconfig to every command: `to --live` and `auto` take it
    (and --context) as status, diff and ui do, over the environment file's settings."""
    missing = str(tmp_path / "no-such-kubeconfig")
    ops = live_gitops(tmp_path, gpg_keys, kubeconfig=missing, namespace=namespace)
    given = ("--kubeconfig", str(control_plane.kubeconfig))
    res = run_cli("to", "staging", "--live", "--dry-run", *given, "-C", str(ops.clone))
    assert res.code == 0, res.stdout + res.stderr
    assert "live: staging's cluster (v1." in res.stdout
    context = ("--context", "no-such-context")
    res = run_cli("to", "staging", "--live", "--dry-run", *given, *context, "-C", str(ops.clone))
    assert res.code == 0 and "no-such-context" in res.stdout, res.stdout + res.stderr
    res = run_cli("auto", "--once", *given, *context, "-C", str(ops.clone), "-o", "json")
    assert res.code in (0, 3), res.stdout + res.stderr  # parsed; no environment auto-promotes
    assert res.json()["status"] == "ok"
