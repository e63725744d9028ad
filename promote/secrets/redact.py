"""Redaction: the one helper every diff, log line, PR body, event and error uses for Secrets.

A Secret's values become ``<redacted>`` (or ``<changed>`` / ``<unchanged>`` when comparing two
versions); its keys stay visible, so people can see *what* changed but never the value.
Pure: data in, data out. Works on plaintext and on SOPS ciphertext alike (ciphertext changes
with every encryption, so comparing it says nothing useful either).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

REDACTED = "<redacted>"
CHANGED = "<changed>"
UNCHANGED = "<unchanged>"
ADDED = "<added>"
REMOVED = "<removed>"
SECRET_SECTIONS = ("data", "stringData")
_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def is_secret(obj: dict[str, Any] | None) -> bool:
    return bool(obj) and obj.get("kind") == "Secret" and str(obj.get("apiVersion", "v1")) == "v1"  # type: ignore[union-attr]


def redact_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` safe to print: Secret values (and SOPS metadata) replaced."""
    if not is_secret(obj):
        return obj
    out = copy.deepcopy(obj)
    for section in SECRET_SECTIONS:
        if isinstance(out.get(section), dict):
            out[section] = {k: REDACTED for k in out[section]}
    if "sops" in out:
        out["sops"] = REDACTED
    annotations = (out.get("metadata") or {}).get("annotations") or {}
    if _ANNOTATION in annotations:
        annotations[_ANNOTATION] = REDACTED
    return out


def _digest(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def redact_pair(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Both versions of an object, with Secret values replaced by change markers.

    A key whose value differs reads ``<changed>`` on both sides, so a diff shows that line;
    equal values read ``<unchanged>``; keys only on one side read ``<added>``/``<removed>``.
    """
    if not (is_secret(before) or is_secret(after)):
        return before, after
    b = copy.deepcopy(before) if before else None
    a = copy.deepcopy(after) if after else None
    for section in SECRET_SECTIONS:
        bv = (b or {}).get(section) or {}
        av = (a or {}).get(section) or {}
        if b is not None and isinstance(bv, dict) and section in b:
            b[section] = {
                k: (
                    UNCHANGED
                    if k in av and _digest(av[k]) == _digest(v)
                    else CHANGED
                    if k in av
                    else REMOVED
                )
                for k, v in bv.items()
            }
        if a is not None and isinstance(av, dict) and section in a:
            a[section] = {
                k: (
                    UNCHANGED
                    if k in bv and _digest(bv[k]) == _digest(v)
                    else CHANGED
                    if k in bv
                    else ADDED
                )
                for k, v in av.items()
            }
    for o in (b, a):
        if o is not None and "sops" in o:
            o["sops"] = REDACTED
    return b, a


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove known secret values from a text (e.g. a tool's stderr) before anyone sees it."""
    for value in secrets:
        if value and len(value) >= 3:
            text = text.replace(value, REDACTED)
    return text
