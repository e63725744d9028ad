"""Object-by-object diff of two sets of Kubernetes objects, normalised and redacted (pure).

Used for a promotion plan (the target's rendered manifests before and after) and for
``promote diff`` (desired vs live). Objects are matched by (API group, kind, namespace, name);
fields the API server owns (status, managedFields, resourceVersion, ...) are dropped first, and
every Secret pair goes through :func:`promote.secrets.redact.redact_pair` before any text is
made, so a diff shows which Secret keys changed and never a value. Comparing live objects
honestly needs a server-side dry run (defaulting, quantities): callers that have one pass it as
``dry_run=`` and it is applied to the desired side only.
"""

from __future__ import annotations

import copy
import difflib
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from promote.secrets import redact

Obj = dict[str, Any]
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
OLD_VALUE = "<redacted old value>"  # a changed Secret value, on the old side of a diff
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
)
_SERVER_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
)


class Action(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class ObjectDiff:
    ref: str  # "apps/v1 Deployment staging/web-app"
    action: Action
    text: str  # unified diff of the redacted YAML

    @property
    def added_lines(self) -> int:
        return sum(
            1 for ln in self.text.splitlines() if ln.startswith("+") and not ln.startswith("+++")
        )

    @property
    def removed_lines(self) -> int:
        return sum(
            1 for ln in self.text.splitlines() if ln.startswith("-") and not ln.startswith("---")
        )


def object_key(obj: Obj, default_namespace: str | None = None) -> tuple[str, str, str, str]:
    api = str(obj.get("apiVersion", ""))
    group = api.rsplit("/", 1)[0] if "/" in api else ""
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or default_namespace or "")
    return group, str(obj.get("kind", "")), ns, str(meta.get("name", ""))


def describe(obj: Obj, default_namespace: str | None = None) -> str:
    _, kind, ns, name = object_key(obj, default_namespace)
    return f"{obj.get('apiVersion', '?')} {kind} {ns + '/' if ns else ''}{name}"


def normalise(obj: Obj) -> Obj:
    """A copy without the fields the API server owns (they differ without anyone's change)."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for field in _SERVER_METADATA:
            meta.pop(field, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for field in _SERVER_ANNOTATIONS:
                annotations.pop(field, None)
            if not annotations:
                meta.pop("annotations")
    return out


def _dump(obj: Obj | None) -> list[str]:
    if obj is None:
        return []
    text = yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return text.splitlines(keepends=True)


def diff_objects(
    before: Iterable[Obj],
    after: Iterable[Obj],
    *,
    default_namespace: str | None = None,
    context: int = 3,
    dry_run: Callable[[Obj], Obj] | None = None,
) -> list[ObjectDiff]:
    """Differences between ``before`` and ``after``, in ``after``'s order, removals last.

    An object that is the same Python object on both sides (a plan's before and after share
    the objects an image change leaves alone) is equal without being copied and compared.
    """
    raw_old = {object_key(o, default_namespace): o for o in before}
    old: dict[tuple[str, str, str, str], Obj] = {}
    new: dict[tuple[str, str, str, str], Obj] = {}
    for raw in after:
        key = object_key(raw, default_namespace)
        if dry_run is None and raw_old.get(key) is raw:
            old[key] = new[key] = raw
        else:
            new[key] = normalise(dry_run(raw) if dry_run else raw)
    for key, raw in raw_old.items():
        if key not in old:
            old[key] = normalise(raw)
    out: list[ObjectDiff] = []
    for key, obj in new.items():
        prev = old.get(key)
        if prev is obj or prev == obj:
            continue
        action = Action.ADDED if prev is None else Action.CHANGED
        out.append(_one(prev, obj, action, describe(obj, default_namespace), context))
    for key, obj in old.items():
        if key not in new:
            out.append(_one(obj, None, Action.REMOVED, describe(obj, default_namespace), context))
    return out


def _one(prev: Obj | None, cur: Obj | None, action: Action, ref: str, context: int) -> ObjectDiff:
    shown_prev, shown_cur = redact.redact_pair(prev, cur)
    _label_old_values(shown_prev)
    text = unified(
        shown_prev, shown_cur, fromfile=f"{ref} (before)", tofile=f"{ref} (after)", context=context
    )
    return ObjectDiff(ref=ref, action=action, text=text)


def _label_old_values(before: Obj | None) -> None:
    """A changed Secret value reads ``<changed>`` on both sides of ``redact_pair``: equal
    lines, so a diff where only a value changed would be empty. The old side is relabelled
    so the line shows (the values themselves are never shown)."""
    for section in redact.SECRET_SECTIONS:
        values = (before or {}).get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                if value == redact.CHANGED:
                    values[key] = OLD_VALUE


def unified(
    before: Obj | None, after: Obj | None, *, fromfile: str, tofile: str, context: int = 3
) -> str:
    """A unified diff of two objects' YAML. Callers redact first (``redact_pair``)."""
    lines = difflib.unified_diff(
        _dump(before), _dump(after), fromfile=fromfile, tofile=tofile, n=context
    )
    return "".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines)
