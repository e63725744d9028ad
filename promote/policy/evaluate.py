"""Evaluate ValidatingAdmissionPolicies on rendered objects, as the API server would (pure).

For each object (a CREATE, or an UPDATE when ``before`` holds it, or a DELETE for what left)
and each binding: the binding's and its policy's match constraints, the parameters
(``paramRef``), ``matchConditions``, then every validation; a violation is acted on as the
binding's ``validationActions`` say (Deny blocks, Warn and Audit are reported). An expression
error follows the policy's ``failurePolicy``; a misconfigured binding (no parameter found with
``parameterNotFoundAction: Deny``) denies under ``Fail`` whatever the actions, as the API
server does. What cannot be decided offline is a NOT_EVALUATED finding naming why; it blocks
when the binding would deny. Objects are judged as rendered: the API server's defaulting
(``spec.replicas: 1``, ``imagePullPolicy``) and mutating admission do not happen here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promote.policy import cel, matching, model
from promote.policy.findings import Finding, Outcome
from promote.policy.matching import Match

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Ctx:
    env: str
    engine: cel.Engine
    table: Mapping[tuple[str, str], tuple[str, bool]]
    namespaces: Mapping[str, Obj]
    params: Sequence[Obj]


def ref(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('apiVersion', '?')} {obj.get('kind', '?')} {ns}{meta.get('name', '?')}"


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))


def _placed(obj: Obj, res: matching.Resource, default_ns: str) -> Obj:
    """The object with the namespace the API server would give it."""
    meta = dict(obj.get("metadata") or {})
    if res.namespaced is False:
        meta.pop("namespace", None)
    elif not meta.get("namespace") and default_ns:
        meta["namespace"] = default_ns
    return {**obj, "metadata": meta}


def evaluate(
    policies: model.PolicySet,
    objects: Sequence[Obj],
    *,
    env: str,
    namespace: str = "default",
    before: Sequence[Obj] | None = None,
    engine: cel.Engine | None = None,
) -> list[Finding]:
    """Findings for ``objects`` (after) against ``policies``; ``before`` makes UPDATE/DELETE."""
    if not policies.bindings:
        return []
    table = matching.resources_of([*objects, *(before or ())])
    placed = [_placed(o, matching.resource_of(o, table), namespace) for o in objects]
    olds = {
        _key(o): o
        for o in (_placed(o, matching.resource_of(o, table), namespace) for o in before or ())
    }
    ctx = _Ctx(
        env,
        engine or cel.Engine(),
        table,
        {
            str((o.get("metadata") or {}).get("name")): o
            for o in placed
            if o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"
        },
        [*policies.params, *placed],
    )
    by_name = {p.name: p for p in policies.policies}
    pairs = [(by_name[b.policy_name], b) for b in policies.bindings if b.policy_name in by_name]
    findings: list[Finding] = []
    requests: list[tuple[Obj | None, Obj | None]] = []
    for placed_obj in placed:
        old = olds.pop(_key(placed_obj), None) if before is not None else None
        requests.append((placed_obj, old))
    requests += [(None, old) for old in olds.values()] if before is not None else []
    for obj, old in requests:
        findings += _admit(ctx, pairs, obj, old)
    return findings


def _admit(
    ctx: _Ctx, pairs: Iterable[tuple[model.Policy, model.Binding]], obj: Obj | None, old: Obj | None
) -> list[Finding]:
    subject = obj if obj is not None else old
    assert subject is not None
    res = matching.resource_of(subject, ctx.table)
    meta = subject.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    op = "DELETE" if obj is None else "UPDATE" if old is not None else "CREATE"
    ns_obj = ctx.namespaces.get(ns)
    req = matching.Request(
        operation=op,
        resource=res,
        name=str(meta.get("name") or ""),
        namespace=ns,
        labels=dict((subject.get("metadata") or {}).get("labels") or {}),
        old_labels=dict((old.get("metadata") or {}).get("labels") or {}) if obj and old else None,
        namespace_labels=dict((ns_obj.get("metadata") or {}).get("labels") or {})
        if ns_obj
        else None,
    )
    out: list[Finding] = []
    activation: dict[str, Any] | None = None
    for policy, binding in pairs:
        verdict, why = _matches(policy, binding, req)
        if verdict is Match.NO:
            continue
        note = _Note(ctx.env, ref(subject), policy, binding)
        if verdict is Match.UNKNOWN:
            out.append(note.unknown(f"cannot tell whether it applies: {why}"))
            continue
        if activation is None:
            activation = _activation(req, obj, old, ns_obj)
        out += _run_binding(ctx, policy, binding, req, activation, note)
    return out


def _matches(
    policy: model.Policy, binding: model.Binding, req: matching.Request
) -> tuple[Match, str]:
    found, why = matching.matches(policy.match, req)
    if found is Match.NO or binding.match is None:
        return found, why
    mine, why2 = matching.matches(binding.match, req)
    if mine is Match.NO:
        return mine, ""
    return (Match.UNKNOWN, why or why2) if Match.UNKNOWN in (found, mine) else (Match.YES, "")


def _activation(
    req: matching.Request, obj: Obj | None, old: Obj | None, ns_obj: Obj | None
) -> dict[str, Any]:
    res = req.resource
    request = {
        "operation": req.operation,
        "name": req.name,
        "namespace": req.namespace,
        "kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "resource": {"group": res.group, "version": res.version, "resource": res.resource or ""},
        "subResource": "",
        "dryRun": False,
    }
    return {
        "object": obj,
        "oldObject": old,
        "request": request,
        "namespaceObject": ns_obj,
        "_namespaceKnown": ns_obj is not None or not req.namespace,
    }


@dataclass(frozen=True, slots=True)
class _Note:
    env: str
    object: str
    policy: model.Policy
    binding: model.Binding

    def make(
        self, outcome: Outcome, message: str, actions: tuple[str, ...] | None = None
    ) -> Finding:
        acts = self.binding.actions if actions is None else actions
        return Finding(
            self.env, self.object, self.policy.name, self.binding.name, acts, outcome, message
        )

    def unknown(self, why: str) -> Finding:
        return self.make(Outcome.NOT_EVALUATED, why)


def _params(
    ctx: _Ctx, policy: model.Policy, binding: model.Binding, req: matching.Request
) -> list[Obj | None] | str:
    """The parameter objects to evaluate with (``[None]`` without paramKind), or an error."""
    if policy.param_kind is None:
        return [None]
    ref_ = binding.param_ref
    if ref_ is None:
        return "failed to configure binding: paramRef is required when policy has paramKind"
    api_version, kind = policy.param_kind
    group = api_version.rpartition("/")[0]
    namespaced = ctx.table.get((group, kind), (None, True))[1]
    ns = ref_.namespace or (req.namespace if namespaced else "")
    found = []
    for p in ctx.params:
        meta = p.get("metadata") or {}
        if p.get("apiVersion") != api_version or p.get("kind") != kind:
            continue
        if namespaced and str(meta.get("namespace") or "") != ns:
            continue
        if (ref_.name and meta.get("name") == ref_.name) or (
            ref_.selector is not None and matching.selects(ref_.selector, meta.get("labels") or {})
        ):
            found.append(p)
    if not found and ref_.not_found_action == "Deny":
        return (
            "failed to configure binding: no params found for policy binding with `Deny` "
            "parameterNotFoundAction"
        )
    return list(found)


def _run_binding(
    ctx: _Ctx,
    policy: model.Policy,
    binding: model.Binding,
    req: matching.Request,
    activation: Mapping[str, Any],
    note: _Note,
) -> list[Finding]:
    params = _params(ctx, policy, binding, req)
    if isinstance(params, str):  # a configuration error denies under Fail, whatever the actions
        fail = policy.failure_policy == "Fail"
        return [note.make(Outcome.VIOLATED, params, ("Deny",))] if fail else []
    for expression in _expressions(policy):
        program = ctx.engine.compile(expression)
        if program.unsupported:
            return [note.unknown(f"expression {expression!r}: {program.unsupported}")]
        if "namespaceObject" in expression and not activation["_namespaceKnown"]:
            return [
                note.unknown(
                    f"expression {expression!r} reads namespaceObject, and "
                    f"namespace {req.namespace} is not in the rendered manifests"
                )
            ]
    out = []
    for param in params:
        act = {k: v for k, v in activation.items() if not k.startswith("_")}
        out += _run_param(ctx.engine, policy, {**act, "params": param}, note)
    return out


def _expressions(policy: model.Policy) -> list[str]:
    exprs = [e for _, e in policy.variables] + [e for _, e in policy.match_conditions]
    for v in policy.validations:
        exprs += [v.expression] + ([v.message_expression] if v.message_expression else [])
    return exprs


def _run_param(
    engine: cel.Engine, policy: model.Policy, act: dict[str, Any], note: _Note
) -> list[Finding]:
    context = engine.context({**act, "variables": _variables(engine, policy, act)})
    errors, skipped = [], False
    for name, expr in policy.match_conditions:
        try:
            value = cel.is_true(engine.run(engine.compile(expr), context))
            if value is None:
                raise cel.EvalError("matchCondition must evaluate to a bool")
            skipped = skipped or not value
        except cel.EvalError as exc:
            errors.append(f"failed to evaluate matchCondition {name!r}: {exc}")
    if skipped:
        return []
    if errors:
        return [note.make(Outcome.VIOLATED, errors[0])] if policy.failure_policy == "Fail" else []
    out = []
    for v in policy.validations:
        try:
            passed = cel.is_true(engine.run(engine.compile(v.expression), context))
            if passed is None:
                raise cel.EvalError("validation expression must evaluate to a bool")
        except cel.EvalError as exc:
            if policy.failure_policy == "Fail":
                msg = f"expression '{v.expression}' resulted in error: {exc}"
                out.append(note.make(Outcome.VIOLATED, msg))
            continue
        if not passed:
            out.append(note.make(Outcome.VIOLATED, _message(engine, v, context)))
    return out


def _variables(engine: cel.Engine, policy: model.Policy, act: dict[str, Any]) -> dict[str, Any]:
    """``variables``, each evaluated in order with the earlier ones in scope. A failing one is
    left out, so an expression reading it fails too (the API server evaluates them lazily:
    the same verdict, though the error names a missing key, not the variable's error)."""
    values: dict[str, Any] = {}
    for name, expr in policy.variables:
        context = engine.context({**act, "variables": values})
        try:
            values[name] = engine.run(engine.compile(expr), context)
        except cel.EvalError:
            continue
    return values


def _message(engine: cel.Engine, v: model.Validation, context: Any) -> str:
    """The API server's choice: messageExpression, else message, else the expression."""
    if v.message_expression:
        try:
            text = cel.as_text(engine.run(engine.compile(v.message_expression), context))
        except cel.EvalError:
            text = None
        if text and text.strip() and "\n" not in text:
            return text.strip()
    return v.message or f"failed expression: {v.expression}"
