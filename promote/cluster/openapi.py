"""The Kubernetes OpenAPI schemas, and checking rendered objects against them, offline.

Owns the schema file promote ships (``schemas/kubernetes.json.gz``: the OpenAPI v3 documents
of the kube-apiserver version ``tools/`` builds, fetched from the real server by
``tools/refresh-k8s-openapi`` and compacted) and the CustomResourceDefinitions found in a
render. Validation is `jsonschema-rs`'s, with `jsonschema`'s words for the problems (two
well-kept libraries: jsonschema-rs checks 1,000 objects in ~15 ms, jsonschema in ~0.3 s, so
jsonschema runs only on the objects jsonschema-rs finds a problem in). Both are extended with the
one rule OpenAPI cannot say and server-side apply enforces: the items of an associative list
(``x-kubernetes-list-type: map`` and its ``x-kubernetes-list-map-keys``, or a patch merge key)
and of a set are unique; and CRDs' ``x-kubernetes-int-or-string``. The two must agree on every
object (tests/unit/test_openapi_fast.py checks it, by property). The ``duplicate entries for
key [name="MODE"]`` that a sync would hit is found by ``promote validate``, before a PR merges
(issue 14).

Checked: types, required fields, list-map key and set uniqueness. Not checked: unknown
fields, enums and formats (the API server's own validation decides those; a false alarm here
would block a valid change). A null field counts as absent, as the API server reads it.
Messages name fields and keys, never values (a Secret's data could be one).
Imported lazily (jsonschema costs ~0.1 s): only ``validate``, ``promote to`` and agents.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from typing import Any

import jsonschema
import jsonschema.validators
import jsonschema_rs
import referencing
import referencing.jsonschema

_URN = "urn:promote:kubernetes"
_MAX_VERDICTS = 50_000  # ~100 bytes each; cleared when full (an agent at 10,000 objects fits)
_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number",
    "boolean": "true or false", "object": "a mapping", "array": "a list",
}  # fmt: skip


@functools.cache
def _shipped() -> dict[str, Any]:
    data = resources.files("promote.cluster").joinpath("schemas/kubernetes.json.gz").read_bytes()
    loaded: dict[str, Any] = json.loads(gzip.decompress(data))
    return loaded


def kubernetes_version() -> str:
    return str(_shipped()["version"])


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


Lookup = Callable[[str], Mapping[str, Any]]  # a "$ref" -> the schema it names ({} if none)


def _item_defaults(lookup: Lookup, items: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of the item properties of a list (a list-map key may default, e.g. protocol)."""
    schema: Mapping[str, Any] = items
    for _ in range(4):  # {"allOf": [{"$ref": ...}]} wrappers
        if "properties" in schema:
            break
        ref = schema.get("$ref") or next(
            (s.get("$ref") for s in schema.get("allOf", []) if "$ref" in s), None
        )
        if ref is None:
            return {}
        schema = lookup(ref)
    return {
        name: prop["default"]
        for name, prop in (schema.get("properties") or {}).items()
        if isinstance(prop, dict) and "default" in prop
    }


def _duplicate_keys(
    keys: list[str], defaults: Mapping[str, Any], instance: list[Any]
) -> Iterator[str]:
    """The label (``name="MODE"``) of each item of an associative list whose keys an earlier
    item has, a key's default standing in when it is absent."""
    seen: set[str] = set()
    for item in instance:
        if not isinstance(item, dict):
            continue
        parts = [(k, item.get(k, defaults.get(k))) for k in keys]
        label = ",".join(f"{k}={json.dumps(v)}" for k, v in parts if v is not None)
        if label in seen:
            yield label
        seen.add(label)


def _duplicate_in_set(instance: list[Any]) -> Iterator[None]:
    seen: list[Any] = []
    for item in instance:
        if item in seen:
            yield None
        seen.append(item)


def _is_merged(schema: Mapping[str, Any]) -> bool:
    """A list with a patch merge key and no list type: server-side apply treats it as a map."""
    return "x-kubernetes-list-type" not in schema and "merge" in str(
        schema.get("x-kubernetes-patch-strategy", "")
    )


def _not_int_or_string(value: Any, instance: Any) -> bool:
    return bool(value) and (isinstance(instance, bool) or not isinstance(instance, int | str))


def _unique_items(
    validator: Any, keys: list[str], instance: list[Any], schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    lookup: Lookup = lambda ref: validator._resolver.lookup(ref).contents  # noqa: E731
    defaults = _item_defaults(lookup, schema.get("items") or {})
    for label in _duplicate_keys(keys, defaults, instance):
        yield jsonschema.ValidationError(
            f"duplicate entries for key [{label}]; list each key once (server-side apply "
            "refuses the object)"
        )


def _list_type(
    validator: Any, value: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    if value == "map":
        yield from _unique_items(
            validator, schema.get("x-kubernetes-list-map-keys") or [], instance, schema
        )
    elif value == "set":
        for _ in _duplicate_in_set(instance):
            yield jsonschema.ValidationError(
                "duplicate entries in a set; list each item once (server-side apply "
                "refuses the object)"
            )


def _merge_key(
    validator: Any, value: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, list) and _is_merged(schema):
        yield from _unique_items(validator, [value], instance, schema)


def _int_or_string(
    validator: Any, value: bool, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if _not_int_or_string(value, instance):
        yield jsonschema.ValidationError("must be an integer or a string")


def _shipped_lookup(ref: str) -> Mapping[str, Any]:
    """The shipped schema a ``#/components/schemas/NAME`` reference names ({} for another:
    a CustomResourceDefinition's structural schema may not hold a ``$ref``)."""
    _, found, name = ref.partition("#/components/schemas/")
    schema = _shipped()["schemas"].get(name) if found else None
    return schema if isinstance(schema, dict) else {}


class _FastListType:
    """``x-kubernetes-list-type`` for jsonschema-rs: the same rule as :func:`_list_type`."""

    def __init__(self, parent: Mapping[str, Any], value: Any, path: list[str | int]) -> None:
        self.value = value
        self.keys = list(parent.get("x-kubernetes-list-map-keys") or [])
        self.defaults = _item_defaults(_shipped_lookup, parent.get("items") or {})

    def validate(self, instance: Any) -> None:
        if not isinstance(instance, list):
            return
        if self.value == "map" and any(_duplicate_keys(self.keys, self.defaults, instance)):
            raise ValueError("duplicate entries for a key")
        if self.value == "set" and any(True for _ in _duplicate_in_set(instance)):
            raise ValueError("duplicate entries in a set")


class _FastMergeKey:
    """``x-kubernetes-patch-merge-key`` for jsonschema-rs: as :func:`_merge_key`."""

    def __init__(self, parent: Mapping[str, Any], value: Any, path: list[str | int]) -> None:
        self.keys = [value]
        self.merged = _is_merged(parent)
        self.defaults = _item_defaults(_shipped_lookup, parent.get("items") or {})

    def validate(self, instance: Any) -> None:
        merged = self.merged and isinstance(instance, list)
        if merged and any(_duplicate_keys(self.keys, self.defaults, instance)):
            raise ValueError("duplicate entries for the merge key")


class _FastIntOrString:
    """``x-kubernetes-int-or-string`` for jsonschema-rs: as :func:`_int_or_string`."""

    def __init__(self, parent: Mapping[str, Any], value: Any, path: list[str | int]) -> None:
        self.value = value

    def validate(self, instance: Any) -> None:
        if _not_int_or_string(self.value, instance):
            raise ValueError("must be an integer or a string")


_FAST_KEYWORDS: dict[str, Any] = {
    "x-kubernetes-list-type": _FastListType,
    "x-kubernetes-patch-merge-key": _FastMergeKey,
    "x-kubernetes-int-or-string": _FastIntOrString,
}


@functools.cache
def _fast_registry() -> jsonschema_rs.Registry:
    root = {"components": {"schemas": _shipped()["schemas"]}}
    return jsonschema_rs.Registry([(_URN, root)], draft=jsonschema_rs.Draft7)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    {
        "x-kubernetes-list-type": _list_type,
        "x-kubernetes-patch-merge-key": _merge_key,
        "x-kubernetes-int-or-string": _int_or_string,
    },
)


class Schemas:
    """Validators by ``apiVersion/kind``: the shipped Kubernetes kinds plus the CRDs given."""

    def __init__(self, crds: list[dict[str, Any]] | None = None) -> None:
        shipped = _shipped()
        root = {"components": {"schemas": shipped["schemas"]}}
        resource = referencing.Resource.from_contents(
            root, default_specification=referencing.jsonschema.DRAFT7
        )
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            _URN, resource
        )
        self._kinds: dict[str, Mapping[str, Any]] = {
            gvk: {"$ref": f"{_URN}#/components/schemas/{name}"}
            for gvk, name in shipped["kinds"].items()
        }
        for crd in crds or []:
            self._kinds.update(_crd_schemas(crd))
        self._validators: dict[str, Any] = {}
        self._fast: dict[str, Any] = {}  # gvk -> jsonschema-rs validator (None: cannot build)
        self._verdicts: dict[bytes, tuple[tuple[str, str], ...]] = {}  # content -> problems
        self.version = str(shipped["version"])

    def has(self, api_version: str, kind: str) -> bool:
        return f"{api_version}/{kind}" in self._kinds

    def errors(self, obj: Mapping[str, Any]) -> list[tuple[str, str]] | None:
        """(field path, message) for each problem; None when the kind has no schema.

        Verdicts are kept by the object's content (a SHA-256 of its JSON): a render that
        changes one object of 1,000 validates one (jsonschema-rs ~15 us an object, jsonschema
        ~0.3 ms for one with problems)."""
        gvk = f"{obj.get('apiVersion')}/{obj.get('kind')}"
        if gvk not in self._kinds:
            return None
        shape = json.dumps(obj, sort_keys=True, default=str).encode()
        key = hashlib.sha256(shape).digest()
        known = self._verdicts.get(key)
        if known is not None:
            return list(known)
        instance = _without_nulls(dict(obj))
        out = []
        if not self._valid_fast(gvk, instance):
            validator = self._validators.get(gvk)
            if validator is None:
                validator = _Validator(self._kinds[gvk], registry=self._registry)
                self._validators[gvk] = validator
            for error in validator.iter_errors(instance):
                out.append((_path(error), _message(error)))
        if len(self._verdicts) >= _MAX_VERDICTS:
            self._verdicts.clear()
        self._verdicts[key] = tuple(sorted(set(out)))
        return sorted(set(out))

    def _valid_fast(self, gvk: str, instance: Any) -> bool:
        """True when jsonschema-rs finds ``instance`` valid (the same schema and rules, ~20x
        faster): almost every object, so jsonschema runs only to word the problems of the
        others (and on what jsonschema-rs cannot take: it then says False)."""
        if gvk not in self._fast:
            try:
                self._fast[gvk] = jsonschema_rs.Draft7Validator(
                    dict(self._kinds[gvk]),
                    registry=_fast_registry(),
                    keywords=_FAST_KEYWORDS,
                    validate_formats=False,
                )
            except (ValueError, jsonschema_rs.ReferencingError):  # a schema it cannot read
                self._fast[gvk] = None
        fast = self._fast[gvk]
        if fast is None:
            return False
        try:
            return bool(fast.is_valid(instance))
        except (ValueError, TypeError, OverflowError):  # a value it cannot take (a huge int)
            return False


@functools.cache
def _base() -> Schemas:
    return Schemas()


def for_objects(objects: list[dict[str, Any]]) -> Schemas:
    """The schemas for a render: Kubernetes' own, plus those of the CRDs it contains."""
    crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
    return Schemas(crds) if crds else _base()


def _crd_schemas(crd: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    spec: Mapping[str, Any] = crd["spec"] if isinstance(crd.get("spec"), dict) else {}
    group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
    out: dict[str, Mapping[str, Any]] = {}
    for version in spec.get("versions") or []:
        if not isinstance(version, dict):
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
        if group and kind and isinstance(schema, dict):
            out[f"{group}/{version.get('name')}/{kind}"] = schema
    return out


def _path(error: jsonschema.ValidationError) -> str:
    parts = list(error.absolute_path)
    if error.validator == "required":  # name the missing field itself
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(missing)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    """Our words for each kind of problem: jsonschema's own messages quote the value."""
    found = type(error.instance).__name__
    found = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
             "dict": "a mapping", "list": "a list"}.get(found, found)  # fmt: skip
    if error.validator == "type":
        expected = error.validator_value
        words = (
            " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in expected)
            if isinstance(expected, list)
            else _TYPE_WORDS.get(str(expected), str(expected))
        )
        return f"must be {words}, not {found}"
    if error.validator == "required":
        return "is required and missing"
    if error.validator == "oneOf":
        options = [s.get("type") for s in error.validator_value if isinstance(s, dict)]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in options if t is not None)
        return f"must be {words or 'one of the allowed forms'}, not {found}"
    if error.validator in ("x-kubernetes-list-type", "x-kubernetes-patch-merge-key",
                           "x-kubernetes-int-or-string"):  # fmt: skip
        return error.message
    return f"is not valid ({error.validator})"
