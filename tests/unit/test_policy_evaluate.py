"""Policy evaluation beyond the corpus: operations, offline unknowns, errors in policy files."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from promote.errors import ConfigError
from promote.policy import evaluate, model
from promote.policy.findings import Outcome


def policy_set(text: str) -> model.PolicySet:
    return model.parse_documents([("policies/p.yaml", d) for d in yaml.safe_load_all(text) if d])


def vap(rules: str, expression: str, *, extra: str = "", actions: str = "[Deny]") -> str:
    return f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: p}}
spec:
  matchConstraints:
    resourceRules: {rules}
{extra}
  validations:
  - expression: "{expression}"
    message: rule says no
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: b}}
spec: {{policyName: p, validationActions: {actions}}}
"""


DEPLOYMENTS = (
    "[{apiGroups: [apps], apiVersions: [v1], resources: [deployments], operations: [CREATE]}]"
)
EVERYTHING = "[{apiGroups: ['*'], apiVersions: ['*'], resources: ['*'], operations: ['*']}]"


def deployment(name: str, replicas: int, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, **meta},
        "spec": {"replicas": replicas},
    }


def test_violation_names_env_object_policy_and_message() -> None:
    found = evaluate.evaluate(
        policy_set(vap(DEPLOYMENTS, "object.spec.replicas < 3")),
        [deployment("web", 5), deployment("api", 1)],
        env="prod",
        namespace="shop",
    )
    assert [str(f) for f in found] == [
        "prod: apps/v1 Deployment shop/web: policy p (binding b, denied): rule says no"
    ]
    assert found[0].blocks


def test_operations_follow_before_and_after() -> None:
    """Objects already rendered before are UPDATEs; a CREATE-only rule ignores them."""
    ps = policy_set(vap(DEPLOYMENTS, "false"))
    before = [deployment("old", 1)]
    found = evaluate.evaluate(
        ps, [deployment("old", 2), deployment("new", 1)], env="e", before=before
    )
    assert [f.object for f in found] == ["apps/v1 Deployment default/new"]


def test_delete_sees_old_object_only() -> None:
    rules = (
        "[{apiGroups: [apps], apiVersions: [v1], resources: [deployments], operations: [DELETE]}]"
    )
    ps = policy_set(vap(rules, "object == null && oldObject.metadata.name != 'keep'"))
    found = evaluate.evaluate(ps, [], env="e", before=[deployment("keep", 1)])
    assert [f.message for f in found] == ["rule says no"]


def test_warn_and_audit_do_not_block() -> None:
    found = evaluate.evaluate(
        policy_set(vap(DEPLOYMENTS, "false", actions="[Warn, Audit]")),
        [deployment("web", 1)],
        env="e",
    )
    assert len(found) == 1 and not found[0].blocks
    assert "(binding b, warn/audit)" in str(found[0])


def test_unknown_kind_is_not_evaluated_unless_a_crd_is_rendered() -> None:
    rules = (
        "[{apiGroups: [example.com], apiVersions: [v1], resources: [widgets], "
        "operations: [CREATE]}]"
    )
    ps = policy_set(vap(rules, "false"))
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    found = evaluate.evaluate(ps, [widget], env="e")
    assert [f.outcome for f in found] == [Outcome.NOT_EVALUATED]
    assert "Widget" in found[0].message and found[0].blocks
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "gadgets"},
        },
    }
    assert evaluate.evaluate(ps, [crd, widget], env="e") == []  # gadgets, not widgets


def test_namespace_selector_needs_the_namespace_labels() -> None:
    extra = "    namespaceSelector: {matchLabels: {tier: gold}}"
    ps = policy_set(vap(DEPLOYMENTS, "false", extra=extra))
    found = evaluate.evaluate(ps, [deployment("web", 1)], env="e", namespace="shop")
    assert [f.outcome for f in found] == [Outcome.NOT_EVALUATED]
    assert "namespace shop" in found[0].message
    gold = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"tier": "gold"}},
    }
    found = evaluate.evaluate(ps, [gold, deployment("web", 1)], env="e", namespace="shop")
    assert [f.outcome for f in found] == [Outcome.VIOLATED]


def test_metadata_name_label_is_known_without_the_namespace() -> None:
    extra = "    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}"
    ps = policy_set(vap(DEPLOYMENTS, "false", extra=extra))
    assert evaluate.evaluate(ps, [deployment("web", 1)], env="e", namespace="shop") == []


def test_unsupported_function_is_not_evaluated_and_says_which() -> None:
    ps = policy_set(vap(EVERYTHING, "object.metadata.name.format([]) == ''"))
    found = evaluate.evaluate(ps, [deployment("web", 1)], env="e")
    assert found[0].outcome is Outcome.NOT_EVALUATED and "format()" in found[0].message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (vap("[]", "true"), "spec.matchConstraints.resourceRules is missing"),
        (vap(DEPLOYMENTS, "true").replace("[Deny]", "[Block]"), "spec.validationActions"),
        (vap(DEPLOYMENTS, "true").replace("[CREATE]", "[MAKE]"), "resourceRules[0].operations"),
        (vap(DEPLOYMENTS, "true").replace("metadata: {name: p}", "metadata: {}"), "metadata.name"),
        (vap(DEPLOYMENTS, "true", extra="  failurePolicy: Sometimes"), "spec.failurePolicy"),
    ],
)
def test_policy_file_errors_name_file_object_and_field(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        policy_set(text)
    assert "policies/p.yaml" in str(exc.value) and where in str(exc.value)
