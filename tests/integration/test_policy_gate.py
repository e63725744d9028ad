"""The policy gate in promotions: policies/ blocks `promote to` and `merge`, and `validate`
reports them (issue 17, item 1). Real Git remotes, real kustomize, real GnuPG keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote import config, errors
from promote.promotion import engine, propose, review, setimage, validate
from promote.secrets import gpg
from tests.helpers import copy_example, run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    example_gitops,
    gpg_keys,
)

pytestmark = pytest.mark.integration

SEMVER = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: release-tags
spec:
  matchConstraints:
    namespaceSelector:
      matchExpressions:
      - {key: kubernetes.io/metadata.name, operator: In, values: [staging, production]}
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], resources: [deployments], operations: [CREATE, UPDATE]}
  validations:
  - expression: >-
      object.spec.template.spec.containers.all(c, c.image.matches(':v[0-9]+[.][0-9]+[.][0-9]+$'))
    messageExpression: >-
      'only release tags reach staging and prod, not ' +
      object.spec.template.spec.containers.map(c, c.image).join(', ')
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: release-tags
spec:
  policyName: release-tags
  validationActions: [Deny]
"""

REPLICAS = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: one-replica}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], resources: [deployments], operations: [CREATE]}
  validations:
  - {expression: "object.spec.replicas <= 1", message: "at most one replica"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: one-replica-deny}
spec:
  policyName: one-replica
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: staging}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: one-replica-warn}
spec:
  policyName: one-replica
  validationActions: [Warn]
  matchResources:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: production}}
"""


@pytest.fixture
def ops(tmp_path: Path, gpg_keys: Keys) -> GitOps:  # noqa: F811
    return example_gitops(tmp_path, gpg_keys)


def add_policy(ops: GitOps, text: str) -> None:
    ops.git("pull", "-q", "--rebase", "origin", "main")
    (ops.clone / "policies").mkdir(exist_ok=True)
    (ops.clone / "policies/release-tags.yaml").write_text(text)
    ops.commit_and_push("policies: only release tags in staging and prod")


def test_policy_violation_blocks_promote_to(ops: GitOps) -> None:
    add_policy(ops, SEMVER)
    with engine.session(ops.clone) as s:
        setimage.push_images(s, "dev", ["web-app=v3.0.0-rc1"])
    with engine.session(ops.clone) as s:
        p = propose.plan_promotion(s, "staging")
    assert p.blocked and p.policy_bindings == 1
    assert p.problems() == [
        "policy: staging: apps/v1 Deployment staging/web-app: policy release-tags (binding "
        "release-tags, denied): only release tags reach staging and prod, not "
        "registry.example.com/acme/web-app:v3.0.0-rc1"
    ]
    res = run_cli("to", "staging", "-C", str(ops.clone), env=ops.env)
    assert res.code == 3, res.stderr
    assert "policy release-tags" in res.stdout + res.stderr
    assert "### Policies" in _markdown(ops)


def _markdown(ops: GitOps) -> str:
    from promote.promotion import plan

    with engine.session(ops.clone) as s:
        return plan.to_markdown(propose.plan_promotion(s, "staging"))


def test_merge_rechecks_policies_on_the_head(ops: GitOps, gpg_keys: Keys) -> None:  # noqa: F811
    with engine.session(ops.clone) as s:
        setimage.push_images(s, "dev", ["web-app=v3.0.0-rc1"])
    with engine.session(ops.clone) as s:  # no policy yet: the plan passes and the PR opens
        p = propose.plan_promotion(s, "staging")
        assert not p.blocked and p.policy_bindings == 0
        signer = gpg.Signer(gnupghome=str(gpg_keys.home))
        pr = propose.open_pull_request(s, p, opener="dev1", signer=signer)
    add_policy(ops, SEMVER)  # the rule lands on main while the PR waits
    with engine.session(ops.clone) as s:
        review.approve(
            s, pr.number, approver="rm1", signer=gpg.Signer(gnupghome=str(gpg_keys.home))
        )
    with engine.session(ops.clone) as s, pytest.raises(errors.PolicyBlocked) as exc:
        review.merge(s, pr.number, by="alice")
    assert exc.value.exit_code == 3
    assert any("staging/web-app: policy release-tags" in p for p in exc.value.problems)
    assert "v3.0.0-rc1" not in ops.main_file("overlays/staging/kustomization.yaml")


def test_validate_reports_denials_and_warnings(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "repo")
    (root / "policies").mkdir()
    (root / "policies/replicas.yaml").write_text(REPLICAS)
    report = validate.validate_project(config.load_project(root))
    by_env = {e.env: e for e in report.envs}
    assert not report.ok
    assert [f.field for f in by_env["staging"].findings] == ["policy one-replica"] * 2
    assert by_env["dev"].ok and not by_env["dev"].notices
    assert by_env["prod"].findings == () and len(by_env["prod"].notices) == 2
    assert "(binding one-replica-warn, warn): at most one replica" in by_env["prod"].notices[0]
    res = run_cli("validate", "-C", str(root))
    assert res.code == 3 and "at most one replica" in res.stdout + res.stderr


def test_broken_policy_file_is_a_config_error(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "repo")
    (root / "policies").mkdir()
    (root / "policies/bad.yaml").write_text(REPLICAS.replace("[Deny]", "[Reject]"))
    res = run_cli("validate", "-C", str(root))
    assert res.code == 1
    assert "policies/bad.yaml" in res.stderr and "spec.validationActions" in res.stderr
