"""The policy corpus (tests/testdata/policy/), placed per policy for a shared API server.

Each policy gets two namespaces of its own, ``<policy>-prod`` and ``<policy>-dev`` (labelled
``env`` and ``corpus-policy``), and its binding is narrowed to them (``matchResources``: that
label, namespaced objects only), so all policies can be installed at once in the test
session's kube-apiserver without touching other tests, and each dry-run tells one policy's
verdict. The offline side evaluates exactly the same placed objects.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promote.policy import evaluate, model

DATA = Path(__file__).resolve().parent / "testdata" / "policy"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    policy: Obj
    binding: Obj
    namespaces: list[Obj]
    params: list[Obj]
    objects: list[Obj]
    denies: frozenset[str]
    warns: frozenset[str]

    def policy_set(self) -> model.PolicySet:
        docs = [("policies.yaml", o) for o in (self.policy, self.binding, *self.params)]
        return model.parse_documents(docs)


def _load(name: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all((DATA / name).read_text()) if d]


def _place(obj: Obj, policy: str) -> Obj:
    out = copy.deepcopy(obj)
    ns = out["metadata"].get("namespace")
    if ns:
        out["metadata"]["namespace"] = ns.replace("corpus-", f"{policy}-")
    return out


def cases() -> list[Case]:
    policies = _load("policies.yaml")
    objects = _load("objects.yaml")
    params = [d for d in policies if d["kind"] == "ConfigMap"]
    out = []
    for vap in (d for d in policies if d["kind"] == model.POLICY_KIND):
        name = vap["metadata"]["name"]
        binding = copy.deepcopy(
            next(d for d in policies if d.get("spec", {}).get("policyName") == name)
        )
        binding["spec"]["matchResources"] = {
            "namespaceSelector": {"matchLabels": {"corpus-policy": name}},
            "resourceRules": [
                {
                    "apiGroups": ["*"],
                    "apiVersions": ["*"],
                    "resources": ["*"],
                    "operations": ["*"],
                    "scope": "Namespaced",
                }
            ],
        }
        notes = vap["metadata"]["annotations"]
        out.append(
            Case(
                name=name,
                policy=vap,
                binding=binding,
                namespaces=[
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {
                            "name": f"{name}-{env}",
                            "labels": {"env": env, "corpus-policy": name},
                        },
                    }
                    for env in ("prod", "dev")
                ],
                params=[_place(p, name) for p in params],
                objects=[_place(o, name) for o in objects],
                denies=frozenset(filter(None, notes["corpus.promote.dev/denies"].split(","))),
                warns=frozenset(filter(None, notes["corpus.promote.dev/warns"].split(","))),
            )
        )
    return out


@dataclass(frozen=True)
class Verdict:
    denied: bool
    messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def ours(case: Case) -> dict[str, Verdict]:
    """promote's verdict for each corpus object under the case's policy."""
    found = evaluate.evaluate(
        case.policy_set(), [*case.namespaces, *case.objects], env="corpus", namespace=""
    )
    out = {}
    for obj in case.objects:
        name = obj["metadata"]["name"]
        mine = [f for f in found if f.object.endswith(f"/{name}")]
        assert not [f for f in mine if f.outcome is not evaluate.Outcome.VIOLATED], mine
        out[name] = Verdict(
            denied=any(f.blocks for f in mine),
            messages=tuple(f.message for f in mine if f.blocks),
            warnings=tuple(f.message for f in mine if "Warn" in f.actions),
        )
    return out
