"""Secret parity between two environments, read without decrypting anything (pure).

With ``encrypted_regex: ^(data|stringData)$`` SOPS leaves names and KEYS readable, so the
secret names, their keys and the ``vault:`` references an environment defines can be compared
from rendered (still encrypted) objects. A promotion into an environment that lacks a secret
or key that its source has would break the app there, so ``promote to`` blocks on a gap.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from promote.cluster import validation


@dataclass(frozen=True, slots=True)
class SecretShape:
    """What can be known about one Secret without its key: name, keys, vault references."""

    name: str
    keys: frozenset[str]
    vault_refs: frozenset[str] = frozenset()  # "mount/path#key" without version, per key
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class Gap:
    secret: str
    key: str | None  # None: the whole Secret is missing
    detail: str = ""

    def __str__(self) -> str:
        if self.key is None:
            return f"Secret {self.secret!r} is missing"
        return f"Secret {self.secret!r} has no key {self.key!r}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass(frozen=True, slots=True)
class ParityResult:
    source: str
    target: str
    gaps: tuple[Gap, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.gaps


def _vault_ref(section: str, value: Any) -> str | None:
    text: str | None = str(value)
    if section == "data":
        try:
            text = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            text = None
    match = validation.VAULT_REF.match(text) if text else None
    if match is None:
        return None
    return f"vault:{match['mount']}/{match['path']}#{match['key']}"  # any version


def secret_shapes(objects: Iterable[dict[str, Any]]) -> dict[str, SecretShape]:
    """Secrets of rendered objects by name (metadata.name; one namespace per environment)."""
    shapes: dict[str, SecretShape] = {}
    for obj in objects:
        if obj.get("kind") != "Secret":
            continue
        name = str((obj.get("metadata") or {}).get("name"))
        keys: set[str] = set()
        refs: set[str] = set()
        for section in ("data", "stringData"):
            for key, value in (obj.get(section) or {}).items():
                keys.add(str(key))
                ref = _vault_ref(section, value)
                if ref:
                    refs.add(f"{key}={ref}")
        shapes[name] = SecretShape(
            name, frozenset(keys), frozenset(refs), validation.is_sops_object(obj)
        )
    return shapes


def check_parity(
    source: str,
    source_objects: Iterable[dict[str, Any]],
    target: str,
    target_objects: Iterable[dict[str, Any]],
) -> ParityResult:
    """Every Secret and key the source defines must exist in the target."""
    src, dst = secret_shapes(source_objects), secret_shapes(target_objects)
    gaps: list[Gap] = []
    for name in sorted(src):
        if name not in dst:
            gaps.append(Gap(name, None, ""))
            continue
        for key in sorted(src[name].keys - dst[name].keys):
            gaps.append(Gap(name, key))
    return ParityResult(source, target, tuple(gaps))
