"""Checks on an environment's rendered objects (pure: data in, findings out).

``promote validate`` and the reconcile agent both run these before anything is applied.
A finding names the environment, the object and the field, and never a secret value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from promote.kustomize import reference

ENC_VALUE = re.compile(r"^ENC\[[A-Z0-9_]+,data:.*\]$", re.DOTALL)
VAULT_REF = re.compile(
    r"^vault:(?P<mount>[^/#@\s]+)/(?P<path>[^#@\s]+)#(?P<key>[^@\s]+)(@(?P<version>\d+))?$"
)


# What the API server accepts (issue 14: a 50 MB ConfigMap failed only at apply, as an
# "SSLError"). etcd stores at most 1.5 MiB per object by default (--max-request-bytes); the
# API server refuses ConfigMap and Secret data over 1 MiB and annotations over 256 KiB.
MAX_OBJECT_BYTES = 1536 * 1024
MAX_DATA_BYTES = 1024 * 1024
MAX_ANNOTATION_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    env: str
    object: str  # "Kind namespace/name" or "document N"
    field: str
    message: str
    source: str | None = None  # file the object came from, when known

    def __str__(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        return f"{self.env}: {self.object}{where}: {self.field}: {self.message}"


class SchemaSet(Protocol):
    """Schemas by kind (``cluster/openapi.py`` loads them): problems of an object, or None
    when its kind has no schema."""

    def errors(self, obj: dict[str, Any]) -> list[tuple[str, str]] | None: ...


def check_schemas(
    objects: Iterable[dict[str, Any]], schemas: SchemaSet, *, env: str, namespace: str | None
) -> tuple[list[Finding], list[str]]:
    """Findings against the schemas, and the kinds that have none (unchecked, never failed:
    a custom resource whose CRD is not in the render)."""
    findings: list[Finding] = []
    unchecked: set[str] = set()
    for obj in objects:
        if not obj.get("kind") or not obj.get("apiVersion"):
            continue  # check_objects reports these
        problems = schemas.errors(obj)
        if problems is None:
            unchecked.add(f"{obj['apiVersion']} {obj['kind']}")
            continue
        ref = object_ref(obj, namespace)
        findings.extend(Finding(env, ref, path, message) for path, message in problems)
    return findings, sorted(unchecked)


def object_ref(obj: dict[str, Any], default_namespace: str | None = None) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or default_namespace
    name = meta.get("name", "?")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


def is_sops_object(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("sops"), dict)


def is_vault_ref(value: str) -> bool:
    return bool(VAULT_REF.match(value))


def _decoded(value: Any) -> str | None:
    try:
        return base64.b64decode(str(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def check_secret(obj: dict[str, Any], env: str, ref: str) -> Iterator[Finding]:
    """A Secret's values must be SOPS ciphertext or ``vault:`` references, never plaintext."""
    sops = is_sops_object(obj)
    for section in ("data", "stringData"):
        values = obj.get(section) or {}
        if not isinstance(values, dict):
            yield Finding(env, ref, section, "must be a mapping of keys to values")
            continue
        for key, value in values.items():
            if sops:
                if not (isinstance(value, str) and ENC_VALUE.match(value)):
                    yield Finding(
                        env,
                        ref,
                        f"{section}.{key}",
                        "is not encrypted although the file is a SOPS file; re-encrypt it "
                        "with `promote secrets set` (the value is not shown)",
                    )
                continue
            text = str(value) if section == "stringData" else _decoded(value)
            if text is None or not is_vault_ref(text):
                yield Finding(
                    env,
                    ref,
                    f"{section}.{key}",
                    "holds a plaintext value; encrypt it with `promote secrets set "
                    f"{env} {(obj.get('metadata') or {}).get('name', 'NAME')} {key}=-` or use a "
                    "`vault:<mount>/<path>#<key>` reference (the value is not shown)",
                )


def _data_bytes(obj: dict[str, Any]) -> int:
    """Bytes of a ConfigMap's or Secret's values as the API server counts them (decoded)."""
    total = 0
    for section in ("data", "binaryData", "stringData"):
        values = obj.get(section)
        for key, value in values.items() if isinstance(values, dict) else ():
            text = str(value)
            encoded = section == "binaryData" or (section == "data" and obj.get("kind") == "Secret")
            total += len(str(key)) + (len(text) * 3 // 4 if encoded else len(text.encode()))
    return total


def check_size(obj: dict[str, Any], env: str, ref: str) -> Iterator[Finding]:
    """Objects the API server would refuse for their size, refused here naming the object."""
    if is_sops_object(obj):
        return  # ciphertext and metadata: the decrypted object is smaller; sops bounds it
    size = len(json.dumps(obj, separators=(",", ":"), default=str))
    if size > MAX_OBJECT_BYTES:
        yield Finding(
            env, ref, "(whole object)",
            f"is {size / 1048576:.1f} MiB; the API server stores at most 1.5 MiB per object. "
            "Split it, or keep large data outside Kubernetes (an image, a volume)",
        )  # fmt: skip
    if obj.get("kind") in ("ConfigMap", "Secret"):
        data = _data_bytes(obj)
        if data > MAX_DATA_BYTES:
            yield Finding(
                env, ref, "data",
                f"holds {data / 1048576:.1f} MiB; a {obj['kind']} holds at most 1 MiB. Split "
                "it into several, or keep large data outside Kubernetes",
            )  # fmt: skip
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        total = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
        if total > MAX_ANNOTATION_BYTES:
            yield Finding(
                env, ref, "metadata.annotations",
                f"total {total // 1024} KiB; the API server allows at most 256 KiB",
            )  # fmt: skip


def _pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield "spec", spec
    elif kind == "CronJob":
        tpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield "spec.jobTemplate.spec.template.spec", tpl.get("spec") or {}
    elif isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        yield "spec.template.spec", spec["template"].get("spec") or {}


def container_images(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field path, image) for every container of a workload."""
    for prefix, pod in _pod_specs(obj):
        for group in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(pod.get(group) or []):
                if isinstance(c, dict) and "image" in c:
                    yield f"{prefix}.{group}[{i}].image", str(c["image"])


def image_tag(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; a registry port is not a tag."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return tag, digest


def check_image(
    image: str, env: str, ref: str, field: str, allow_latest: bool
) -> Iterator[Finding]:
    try:
        reference.parse(image)
    except reference.InvalidReference as exc:  # issue 13, finding 7
        yield Finding(env, ref, field, f"{exc.message}; fix the manifest or the overlay's images:")
        return
    tag, digest = image_tag(image)
    if allow_latest or digest:
        return
    if tag is None:
        yield Finding(
            env,
            ref,
            field,
            f"image {image!r} has no tag; pin a version in the "
            "overlay's `images:` (newTag) or allow it with policy.allowLatest",
        )
    elif tag == "latest":
        yield Finding(
            env,
            ref,
            field,
            f"image {image!r} uses :latest; pin a version in the "
            "overlay's `images:` (newTag) or allow it with policy.allowLatest",
        )


def check_objects(
    objects: Iterable[dict[str, Any]], *, env: str, namespace: str | None, allow_latest: bool
) -> list[Finding]:
    """All findings for one environment's rendered objects."""
    findings: list[Finding] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for i, obj in enumerate(objects):
        kind = obj.get("kind")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        name = (meta or {}).get("name")
        if not kind or not name or not obj.get("apiVersion"):
            missing = [
                f
                for f, v in (
                    ("apiVersion", obj.get("apiVersion")),
                    ("kind", kind),
                    ("metadata.name", name),
                )
                if not v
            ]
            findings.append(
                Finding(
                    env,
                    f"document {i + 1}",
                    ", ".join(missing),
                    "is missing; every object needs apiVersion, kind and metadata.name",
                )
            )
            continue
        ref = object_ref(obj, namespace)
        group = str(obj["apiVersion"]).rsplit("/", 1)[0] if "/" in str(obj["apiVersion"]) else ""
        key = (group, str(kind), str((meta or {}).get("namespace") or namespace or ""), str(name))
        if key in seen:
            findings.append(
                Finding(
                    env,
                    ref,
                    "metadata.name",
                    "is defined twice in this environment; remove one of the duplicates",
                )
            )
        seen[key] = i
        findings.extend(check_size(obj, env, ref))
        if kind == "Secret":
            findings.extend(check_secret(obj, env, ref))
        for field, image in container_images(obj):
            findings.extend(check_image(image, env, ref, field, allow_latest))
    return findings
