"""Reading ``policies/`` from a repository tree (adapter).

The only file I/O of the policy package. ``policies/`` sits beside ``environments/`` and
``keys/``, outside the overlays, so a change to it is a governance change that affects every
environment (``promotion.scope``). Every ``*.yaml``/``*.yml`` below it is read, each document
one object (a ``kind: List`` contributes its items); the pure :mod:`promote.policy.model`
turns them into a :class:`~promote.policy.model.PolicySet`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from promote.errors import ConfigError
from promote.policy import model

log = logging.getLogger(__name__)

POLICY_DIR = "policies"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(root: Path) -> model.PolicySet:
    """The policy set in ``root/policies`` (empty when the folder does not exist)."""
    folder = root / POLICY_DIR
    if not folder.is_dir():
        return model.PolicySet()
    docs: list[tuple[str, Mapping[str, Any]]] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml")):
        display = path.relative_to(root).as_posix()
        try:
            found = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{display}: cannot read it as YAML ({exc}); fix the file.") from exc
        for i, doc in enumerate(found):
            if doc is None:
                continue
            if not isinstance(doc, dict) or not doc.get("kind"):
                raise ConfigError(
                    f"{display}: document {i + 1} is not a Kubernetes object (no kind); each "
                    "document in policies/ is a ValidatingAdmissionPolicy, a binding or a "
                    "parameter object."
                )
            items = doc.get("items") if doc.get("kind") == "List" else [doc]
            docs += [(display, item) for item in items or [] if isinstance(item, dict)]
    return model.parse_documents(docs)
