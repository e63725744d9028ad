"""promote's policy verdicts held to the real kube-apiserver's (issue 17, item 2).

Every corpus policy (tests/testdata/policy/policies.yaml, 29) and its binding are installed
in the session's kube-apiserver, each narrowed to namespaces of its own
(tests/policy_corpus.py); every corpus object (26) is then created with ``dryRun=All`` in
each policy's namespaces, and the API server's admission verdict (denied or not, the rule's
message, Warn warnings) must equal promote's offline one.

The API server loads policies and bindings asynchronously (an informer, then a refresh
tick), so the test waits on a condition, never a sleep: a sentinel policy is created last,
and the corpus is judged once the sentinel's canary is rejected.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest

from promote.policy import matching
from tests import policy_corpus

pytestmark = pytest.mark.integration

ACTIVATION_DEADLINE_S = 90.0
VAP_PATH = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDING_PATH = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
SENTINEL = "corpus-sentinel"


def _path(obj: dict[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    resource, namespaced = matching.resources_of([])[(group, obj["kind"])]
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    ns = obj["metadata"].get("namespace")
    return f"{prefix}/namespaces/{ns}/{resource}" if namespaced and ns else f"{prefix}/{resource}"


def _call(api: Any, method: str, path: str, body: Any = None, *, dry_run: bool = False) -> Any:
    """One request; returns (status, headers, decoded body), 4xx/5xx included."""
    url = api.configuration.host + path + ("?dryRun=All" if dry_run else "")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    resp = api.call_api(method, url, header_params=headers, body=body)
    resp.read()
    return resp.status, dict(resp.getheaders() or {}), json.loads(resp.data or b"{}")


def _create(api: Any, obj: dict[str, Any]) -> None:
    status, _, body = _call(api, "POST", _path(obj), obj)
    assert status in (201, 409), f"creating {obj['kind']} {obj['metadata']['name']}: {body}"


def _server_verdict(api: Any, obj: dict[str, Any]) -> policy_corpus.Verdict:
    status, headers, body = _call(api, "POST", _path(obj), obj, dry_run=True)
    warnings = tuple(headers.get("Warning", "").split('", 299')) if "Warning" in headers else ()
    if status in (200, 201):
        return policy_corpus.Verdict(False, (), warnings)
    assert status == 422 and "denied request" in body.get("message", ""), (status, body)
    return policy_corpus.Verdict(True, (body["message"],), warnings)


def _sentinel() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": SENTINEL, "labels": {"corpus-policy": SENTINEL}},
    }
    vap = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": SENTINEL},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                        "operations": ["CREATE"],
                    }
                ]
            },
            "validations": [{"expression": "object.metadata.name != 'canary'"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": SENTINEL},
        "spec": {
            "policyName": SENTINEL,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"corpus-policy": SENTINEL}}},
        },
    }
    canary = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "canary", "namespace": SENTINEL},
    }
    return [ns, vap, binding], canary


def _wait_until_active(api: Any, canary: dict[str, Any]) -> None:
    deadline = time.monotonic() + ACTIVATION_DEADLINE_S
    while time.monotonic() < deadline:
        if _server_verdict(api, canary).denied:
            return
        time.sleep(0.1)  # polling the condition, not waiting for a guess
    pytest.fail(f"the sentinel policy was not enforced within {ACTIVATION_DEADLINE_S} s")


def test_policy_verdicts_equal_the_api_servers(control_plane: Any) -> None:
    api = control_plane.api_client
    cases = policy_corpus.cases()
    sentinel, canary = _sentinel()
    installed: list[str] = []
    try:
        for case in cases:
            for obj in (*case.namespaces, *case.params):
                _create(api, obj)
        for case in cases:
            _create(api, case.policy)
            _create(api, case.binding)
            installed += [f"{VAP_PATH}/{case.name}", f"{BINDING_PATH}/{case.name}-binding"]
        for obj in sentinel:  # created last: once it is enforced, so is every policy before it
            _create(api, obj)
        installed += [f"{VAP_PATH}/{SENTINEL}", f"{BINDING_PATH}/{SENTINEL}"]
        _wait_until_active(api, canary)

        mismatches, compared = [], 0
        for case in cases:
            mine = policy_corpus.ours(case)
            for obj in case.objects:
                name = obj["metadata"]["name"]
                theirs, ours = _server_verdict(api, obj), mine[name]
                compared += 1
                problem = _compare(theirs, ours)
                if problem:
                    mismatches.append(f"{case.name} on {name}: {problem}")
        assert not mismatches, "\n".join(mismatches)
        assert compared >= 20 * 20
    finally:
        for path in installed:  # bindings and policies only: the namespaces are this test's
            with contextlib.suppress(Exception):
                _call(api, "DELETE", path)


def _compare(theirs: policy_corpus.Verdict, ours: policy_corpus.Verdict) -> str:
    if theirs.denied != ours.denied:
        return (
            f"API server denied={theirs.denied} {theirs.messages}, "
            f"promote denied={ours.denied} {ours.messages}"
        )
    missing = [m for m in ours.messages if not any(m in t for t in theirs.messages)]
    if missing:
        return f"promote's message {missing} is not in the API server's {theirs.messages}"
    if bool(theirs.warnings) != bool(ours.warnings) or any(
        not any(w in t for t in theirs.warnings) for w in ours.warnings
    ):
        return f"warnings differ: API server {theirs.warnings}, promote {ours.warnings}"
    return ""
