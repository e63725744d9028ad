"""Desired vs live, on the fields the desired object sets (pure).

The local check is cheap and may over-report: the API server defaults fields and normalises
quantities (``cpu: 0.5`` is stored as ``500m``), so a naive comparison lies. The reconcile loop
therefore confirms every local difference with a server-side dry-run apply and compares that
result (the object as it *would* be) with live using the same projection; only a difference
that survives is drift. Ignore rules (JSON pointers) remove fields another controller owns
from both the apply and the comparison.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_META_KEEP = ("labels", "annotations")
# Set by apply.prepare to the revision that last *changed* the object: comparing it would make
# every commit re-apply every object, so it is not part of the comparison.
REVISION_ANNOTATION = "promote.dev/revision"


def _pointer_parts(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer; start it with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def remove_paths(obj: dict[str, Any], pointers: Iterable[str]) -> dict[str, Any]:
    """A copy of ``obj`` without the fields the pointers name (missing ones are fine)."""
    out = copy.deepcopy(obj)
    for pointer in pointers:
        parts = _pointer_parts(pointer)
        node: Any = out
        for part in parts[:-1]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(parts[-1], None)
        elif isinstance(node, list) and parts[-1].isdigit() and int(parts[-1]) < len(node):
            node.pop(int(parts[-1]))
    return out


def fold_string_data(
    data: Mapping[str, Any] | None, string_data: Mapping[str, Any] | None
) -> dict[str, str]:
    """A Secret's ``data`` with its write-only ``stringData`` folded in as base64, as the API
    server does (a key in both takes stringData's value). A value that is not a string is
    taken as its JSON text (sops returns numbers and booleans as such). The one copy of this
    rule: the secret resolver and the drift comparison both use it."""
    out = {str(k): _text(v) for k, v in (data or {}).items()}
    for key, value in (string_data or {}).items():
        out[str(key)] = base64.b64encode(_text(value).encode("utf-8")).decode("ascii")
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def secret_to_data(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret with ``stringData`` folded into ``data`` (:func:`fold_string_data`), so desired
    and live Secrets compare field by field; other objects as they are."""
    if obj.get("kind") != "Secret" or not obj.get("stringData"):
        return obj
    out = copy.deepcopy(obj)
    out["data"] = fold_string_data(out.get("data"), out.pop("stringData"))
    return out


def project(shape: Any, value: Any) -> Any:
    """The part of ``value`` that ``shape`` sets: same keys, recursively; lists element-wise
    (a list of another length is kept whole so it compares unequal)."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return value
        return {k: project(v, value[k]) for k, v in shape.items() if k in value}
    if isinstance(shape, list):
        if not isinstance(value, list) or len(value) != len(shape):
            return value
        return [project(s, v) for s, v in zip(shape, value, strict=True)]
    return value


def _comparable(desired: dict[str, Any]) -> dict[str, Any]:
    shape = {k: v for k, v in desired.items() if k not in ("metadata", "status")}
    meta = desired.get("metadata") or {}
    shape["metadata"] = {k: meta[k] for k in _META_KEEP if k in meta}
    annotations = shape["metadata"].get("annotations")
    if annotations and REVISION_ANNOTATION in annotations:
        shape["metadata"]["annotations"] = {
            k: v for k, v in annotations.items() if k != REVISION_ANNOTATION
        }
    return shape


def comparable(desired: dict[str, Any]) -> dict[str, Any]:
    """The part of a desired object that counts for drift and for change detection."""
    return _comparable(desired)


def differences(desired: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    """Field paths where ``live`` differs from what ``desired`` sets; ``["<missing>"]`` when
    the object does not exist. An empty list means in sync."""
    if live is None:
        return ["<missing>"]
    shape = _comparable(desired)
    out: list[str] = []
    _walk(shape, project(shape, live), "", out)
    return out


def _walk(want: Any, have: Any, path: str, out: list[str]) -> None:
    if isinstance(want, dict) and isinstance(have, dict):
        for key, value in want.items():
            sub = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in have:
                out.append(sub)
            else:
                _walk(value, have[key], sub, out)
        return
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            _walk(w, h, f"{path}/{i}", out)
        return
    if want != have and not _loosely_equal(want, have):
        out.append(path or "/")


def _loosely_equal(want: Any, have: Any) -> bool:
    # YAML writes ports and replicas as ints, but a value like "1" vs 1 is a real difference
    # only for strings the API keeps as strings; numbers compare by value.
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    return False


def confirmed(
    desired: dict[str, Any], dry_run_result: dict[str, Any], live: dict[str, Any]
) -> list[str]:
    """Drift that survives the server's own defaulting: compare what the object would become
    (``dry_run_result``) with ``live``, on the fields the desired object sets."""
    shape = _comparable(desired)
    would = project(shape, dry_run_result)
    out: list[str] = []
    _walk(would, project(shape, live), "", out)
    return out


def apply_ignores(obj: dict[str, Any], rules: Sequence[Any]) -> dict[str, Any]:
    """Strip fields named by ``sync.ignore`` rules that match this object."""
    meta = obj.get("metadata") or {}
    pointers: list[str] = []
    for rule in rules:
        if rule.kind != obj.get("kind"):
            continue
        if rule.name and rule.name != meta.get("name"):
            continue
        if rule.namespace and rule.namespace != meta.get("namespace"):
            continue
        pointers.extend(rule.paths)
    return remove_paths(obj, pointers) if pointers else obj
