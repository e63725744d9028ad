"""ValidatingAdmissionPolicy and its binding, as frozen values (pure: dicts in, values out).

The files in ``policies/`` are the very objects a cluster accepts
(``admissionregistration.k8s.io/v1``), so their schema is Kubernetes', not ours: unknown
fields are ignored (the API server keeps ``status``, annotations, ...), but every field we
act on is checked, and a wrong one is a :class:`ConfigError` naming file, object, field and fix.
Defaults are the API server's: ``failurePolicy: Fail``, ``matchPolicy: Equivalent``,
``scope: "*"``. Objects of other kinds in the folder are parameter objects (``paramKind``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promote.errors import ConfigError

GROUP = "admissionregistration.k8s.io"
POLICY_KIND = "ValidatingAdmissionPolicy"
BINDING_KIND = "ValidatingAdmissionPolicyBinding"
ACTIONS = ("Deny", "Warn", "Audit")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector; the empty one matches everything."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.expressions

    def keys(self) -> set[str]:
        return set(self.match_labels) | {r.key for r in self.expressions}


@dataclass(frozen=True, slots=True)
class Rule:
    api_groups: tuple[str, ...]
    api_versions: tuple[str, ...]
    resources: tuple[str, ...]
    operations: tuple[str, ...]
    scope: str = "*"  # Cluster | Namespaced | *
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MatchResources:
    rules: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()
    namespace_selector: Selector = field(default_factory=Selector)
    object_selector: Selector = field(default_factory=Selector)
    match_policy: str = "Equivalent"


@dataclass(frozen=True, slots=True)
class Validation:
    expression: str
    message: str = ""
    message_expression: str = ""
    reason: str = "Invalid"


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: str  # file the policy came from, for messages
    match: MatchResources
    validations: tuple[Validation, ...]
    param_kind: tuple[str, str] | None = None  # (apiVersion, kind)
    failure_policy: str = "Fail"
    variables: tuple[tuple[str, str], ...] = ()
    match_conditions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ParamRef:
    name: str = ""
    namespace: str = ""
    selector: Selector | None = None
    not_found_action: str = "Deny"


@dataclass(frozen=True, slots=True)
class Binding:
    name: str
    source: str
    policy_name: str
    actions: tuple[str, ...]
    param_ref: ParamRef | None = None
    match: MatchResources | None = None


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Everything in ``policies/``: policies, their bindings and parameter objects."""

    policies: tuple[Policy, ...] = ()
    bindings: tuple[Binding, ...] = ()
    params: tuple[Mapping[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.bindings)


class _Reader:
    """Field access with errors that name the file, the object and the field."""

    def __init__(self, source: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        self.name = str(meta.get("name") or "")
        self.where = f"{source}: {obj.get('kind')} {self.name or '(no name)'}"
        if not self.name:
            self.fail("metadata.name", "is missing", "give the object a name")

    def fail(self, path: str, what: str, fix: str) -> ConfigError:
        raise ConfigError(f"{self.where}: {path} {what}; {fix}.")

    def get(self, node: Any, path: str, key: str, kind: type, default: Any = None) -> Any:
        value = node.get(key, default) if isinstance(node, Mapping) else default
        if value is None:
            return default
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            self.fail(f"{path}.{key}", f"must be a {kind.__name__}", "see the Kubernetes API")
        return value

    def strings(self, node: Any, path: str, key: str) -> tuple[str, ...]:
        values = self.get(node, path, key, list, [])
        if not all(isinstance(v, str) for v in values):
            self.fail(f"{path}.{key}", "must be a list of strings", "quote each entry")
        return tuple(values)

    def choice(self, node: Any, path: str, key: str, allowed: Sequence[str], default: str) -> str:
        value = self.get(node, path, key, str, default)
        if value not in allowed:
            self.fail(f"{path}.{key}", f"is {value!r}", f"use one of {', '.join(allowed)}")
        return str(value)


def _selector(r: _Reader, node: Any, path: str) -> Selector:
    if node is None:
        return Selector()
    if not isinstance(node, Mapping):
        r.fail(path, "must be a label selector", "write matchLabels or matchExpressions")
    labels = r.get(node, path, "matchLabels", dict, {})
    reqs = []
    for i, item in enumerate(r.get(node, path, "matchExpressions", list, [])):
        where = f"{path}.matchExpressions[{i}]"
        op = r.choice(item, where, "operator", ("In", "NotIn", "Exists", "DoesNotExist"), "")
        key = r.get(item, where, "key", str, "")
        if not key:
            r.fail(f"{where}.key", "is missing", "name the label key")
        reqs.append(Requirement(key, op, r.strings(item, where, "values")))
    return Selector({str(k): str(v) for k, v in labels.items()}, tuple(reqs))


def _rules(r: _Reader, node: Any, path: str, key: str) -> tuple[Rule, ...]:
    out = []
    for i, item in enumerate(r.get(node, path, key, list, [])):
        where = f"{path}.{key}[{i}]"
        ops = r.strings(item, where, "operations")
        bad = [o for o in ops if o not in OPERATIONS]
        if bad or not ops:
            r.fail(
                f"{where}.operations", f"is {list(ops)}", f"list some of {', '.join(OPERATIONS)}"
            )
        out.append(
            Rule(
                api_groups=r.strings(item, where, "apiGroups"),
                api_versions=r.strings(item, where, "apiVersions"),
                resources=r.strings(item, where, "resources"),
                operations=ops,
                scope=r.choice(item, where, "scope", ("Cluster", "Namespaced", "*"), "*"),
                resource_names=r.strings(item, where, "resourceNames"),
            )
        )
    return tuple(out)


def _match(r: _Reader, node: Any, path: str) -> MatchResources:
    return MatchResources(
        rules=_rules(r, node, path, "resourceRules"),
        exclude=_rules(r, node, path, "excludeResourceRules"),
        namespace_selector=_selector(r, node.get("namespaceSelector"), f"{path}.namespaceSelector"),
        object_selector=_selector(r, node.get("objectSelector"), f"{path}.objectSelector"),
        match_policy=r.choice(node, path, "matchPolicy", ("Equivalent", "Exact"), "Equivalent"),
    )


def _named(r: _Reader, spec: Any, key: str, expr_key: str) -> tuple[tuple[str, str], ...]:
    out = []
    for i, item in enumerate(r.get(spec, "spec", key, list, [])):
        name = r.get(item, f"spec.{key}[{i}]", "name", str, "")
        expr = r.get(item, f"spec.{key}[{i}]", expr_key, str, "")
        if not name or not expr:
            r.fail(f"spec.{key}[{i}]", f"needs name and {expr_key}", "write both")
        out.append((name, expr))
    return tuple(out)


def parse_policy(obj: Mapping[str, Any], source: str) -> Policy:
    r = _Reader(source, obj)
    spec = r.get(obj, "", "spec", dict, {})
    match = r.get(spec, "spec", "matchConstraints", dict, None)
    if match is None or not match.get("resourceRules"):
        r.fail(
            "spec.matchConstraints.resourceRules",
            "is missing",
            "list the resources the policy applies to (the API server requires it)",
        )
    validations = []
    for i, item in enumerate(r.get(spec, "spec", "validations", list, [])):
        where = f"spec.validations[{i}]"
        expr = r.get(item, where, "expression", str, "")
        if not expr:
            r.fail(f"{where}.expression", "is missing", "write a CEL expression")
        validations.append(
            Validation(
                expr,
                r.get(item, where, "message", str, ""),
                r.get(item, where, "messageExpression", str, ""),
                r.get(item, where, "reason", str, "Invalid"),
            )
        )
    if not validations:
        r.fail("spec.validations", "is empty", "add at least one validation")
    pk = r.get(spec, "spec", "paramKind", dict, None)
    param_kind = None
    if pk is not None:
        param_kind = (
            r.get(pk, "spec.paramKind", "apiVersion", str, ""),
            r.get(pk, "spec.paramKind", "kind", str, ""),
        )
        if not all(param_kind):
            r.fail("spec.paramKind", "needs apiVersion and kind", "write both")
    return Policy(
        name=r.name,
        source=source,
        match=_match(r, match, "spec.matchConstraints"),
        validations=tuple(validations),
        param_kind=param_kind,
        failure_policy=r.choice(spec, "spec", "failurePolicy", ("Fail", "Ignore"), "Fail"),
        variables=_named(r, spec, "variables", "expression"),
        match_conditions=_named(r, spec, "matchConditions", "expression"),
    )


def parse_binding(obj: Mapping[str, Any], source: str) -> Binding:
    r = _Reader(source, obj)
    spec = r.get(obj, "", "spec", dict, {})
    policy = r.get(spec, "spec", "policyName", str, "")
    if not policy:
        r.fail("spec.policyName", "is missing", "name the ValidatingAdmissionPolicy to bind")
    actions = r.strings(spec, "spec", "validationActions")
    if not actions or any(a not in ACTIONS for a in actions):
        r.fail(
            "spec.validationActions", f"is {list(actions)}", f"list some of {', '.join(ACTIONS)}"
        )
    ref = r.get(spec, "spec", "paramRef", dict, None)
    param_ref = None
    if ref is not None:
        sel = ref.get("selector")
        param_ref = ParamRef(
            name=r.get(ref, "spec.paramRef", "name", str, ""),
            namespace=r.get(ref, "spec.paramRef", "namespace", str, ""),
            selector=_selector(r, sel, "spec.paramRef.selector") if sel is not None else None,
            not_found_action=r.choice(
                ref, "spec.paramRef", "parameterNotFoundAction", ("Allow", "Deny"), "Deny"
            ),
        )
        if bool(param_ref.name) == (param_ref.selector is not None):
            r.fail("spec.paramRef", "needs exactly one of name and selector", "set one")
    match = r.get(spec, "spec", "matchResources", dict, None)
    return Binding(
        name=r.name,
        source=source,
        policy_name=policy,
        actions=actions,
        param_ref=param_ref,
        match=_match(r, match, "spec.matchResources") if match is not None else None,
    )


def parse_documents(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> PolicySet:
    """``(source, object)`` pairs -> a :class:`PolicySet`; other kinds become parameters."""
    policies, bindings, params = [], [], []
    for source, obj in docs:
        group = str(obj.get("apiVersion", "")).partition("/")[0]
        kind = obj.get("kind")
        if group == GROUP and kind == POLICY_KIND:
            policies.append(parse_policy(obj, source))
        elif group == GROUP and kind == BINDING_KIND:
            bindings.append(parse_binding(obj, source))
        else:
            params.append(obj)
    names = [p.name for p in policies]
    for dup in {n for n in names if names.count(n) > 1}:
        raise ConfigError(
            f"policies/: two ValidatingAdmissionPolicies are named {dup!r}; "
            "rename one (names are cluster-wide)."
        )
    return PolicySet(tuple(policies), tuple(bindings), tuple(params))
