"""Issue 14 item 1(c): rendered objects checked against the Kubernetes OpenAPI schemas.

The schemas are those of the kube-apiserver tools/ builds (v1.34); the duplicate env var is
the input from the issue, and the real API server refuses it too (server-side apply dry run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promote.cluster import client
from promote.errors import ClusterError
from tests.conftest import ControlPlane
from tests.gitops import GitOpsRepo, make_repo
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

DUPLICATE_ENV = """\
- op: add
  path: /spec/template/spec/containers/0/env
  value:
  - {name: MODE, value: fast}
  - {name: MODE, value: slow}
"""


def _patch(repo: GitOpsRepo, env: str, target: str, patch: str) -> None:
    (repo.work / f"overlays/{env}/patch.yaml").write_text(patch)
    kz = repo.work / f"overlays/{env}/kustomization.yaml"
    entry = f"- path: patch.yaml\n  target:\n    kind: Deployment\n    name: {target}\n"
    kz.write_text(kz.read_text().replace("patches:\n", "patches:\n" + entry, 1))


def test_validate_refuses_a_duplicate_list_map_key(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _patch(repo, "dev", "api", DUPLICATE_ENV)
    res = run_cli("validate", cwd=repo.work)
    assert res.code == 3, res.stdout + res.stderr
    assert "Deployment dev/api: spec.template.spec.containers[0].env:" in res.stderr, res.stderr
    assert 'duplicate entries for key [name="MODE"]' in res.stderr, res.stderr
    assert "staging" not in res.stderr  # only dev is broken


PORT_8080 = (
    "- {op: add, path: /spec/template/spec/containers/0/ports/-, value: {containerPort: 8080}}\n"
)


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        ("- {op: add, path: /spec/minReadySeconds, value: ten}\n", "spec.minReadySeconds",
         "must be an integer, not a string"),
        ("- {op: remove, path: /spec/template/spec/containers/0/name}\n",
         "spec.template.spec.containers[0].name", "is required and missing"),
        (PORT_8080 + PORT_8080.replace("8080}", "8080, protocol: TCP}"),
         "spec.template.spec.containers[0].ports",
         'duplicate entries for key [containerPort=8080,protocol="TCP"]'),
    ],
)  # fmt: skip
def test_validate_checks_types_required_fields_and_keys(
    tmp_path: Path, patch: str, field: str, message: str
) -> None:
    repo = make_repo(tmp_path)
    _patch(repo, "dev", "api", patch)
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3, res.stdout + res.stderr
    assert f"Deployment dev/api: {field}: {message}" in res.stderr, res.stderr


WIDGET = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: {size}\n"
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"""


def test_custom_resources_are_unchecked_without_their_crd_and_checked_with_it(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    (repo.work / "overlays/dev/widget.yaml").write_text(WIDGET.format(size="big"))
    repo.edit("overlays/dev/kustomization.yaml", "resources:\n", "resources:\n- widget.yaml\n")
    res = run_cli("validate", "--env", "dev", "-o", "json", cwd=repo.work)
    assert res.code == 0, res.stdout + res.stderr
    assert res.json()["environments"][0]["unchecked"] == ["example.com/v1 Widget"]
    text = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert "no schema for example.com/v1 Widget (not checked" in text.stdout, text.stdout
    (repo.work / "overlays/dev/crd.yaml").write_text(CRD)
    repo.edit("overlays/dev/kustomization.yaml", "- widget.yaml\n", "- widget.yaml\n- crd.yaml\n")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "Widget dev/w: spec.size: must be an integer" in res.stderr


def test_promote_to_is_blocked_by_an_object_the_api_server_would_refuse(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _patch(repo, "staging", "api", DUPLICATE_ENV)
    repo.commit_all("staging's api gets MODE twice")
    res = run_cli("to", "staging", "--dry-run", "-C", str(repo.work))
    assert res.code == 3, res.stdout + res.stderr
    assert "gate schema:" in res.stdout and 'duplicate entries for key [name="MODE"]' in res.stdout


def _apply_dry_run(cluster: client.Cluster, obj: dict[str, Any]) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    cluster.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
        query=[("fieldManager", "promote-test"), ("dryRun", "All"), ("force", "true")],
        body=obj,
        content_type="application/apply-patch+yaml",
    )


def test_our_verdict_is_the_api_servers(
    tmp_path: Path, control_plane: ControlPlane, namespace: str
) -> None:
    """The example's Deployment passes both; with MODE twice both refuse it."""
    from promote.cluster import openapi
    from promote.kustomize import render

    repo = make_repo(tmp_path)
    objects = render.Kustomize().build(repo.work / "overlays/dev")
    dep = next(o for o in objects if o["kind"] == "Deployment")
    dep["metadata"]["namespace"] = namespace
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    schemas = openapi.for_objects(objects)
    assert schemas.errors(dep) == []
    _apply_dry_run(cluster, dep)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "MODE", "value": "fast"}, {"name": "MODE", "value": "slow"}]
    assert next(m for _, m in schemas.errors(dep) or []).startswith(
        'duplicate entries for key [name="MODE"]'
    )
    with pytest.raises(ClusterError, match="duplicate entries for key"):
        _apply_dry_run(cluster, dep)


def test_a_verdict_kept_by_content_is_the_same_on_every_render() -> None:
    """An agent renders again on each revision: a kept verdict must name the same problems,
    and an object that changes is judged anew."""
    from promote.cluster import openapi

    schemas = openapi.Schemas()
    bad: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": "eighty"}]},
    }
    first = schemas.errors(bad)
    assert first and schemas.errors(bad) == first == schemas.errors(dict(bad))
    bad["spec"]["ports"][0]["port"] = 80
    assert schemas.errors(bad) == []
