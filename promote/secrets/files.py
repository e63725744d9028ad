"""An environment's SOPS files as they lie in the overlay, still encrypted (read only).

Shared by the decrypt path (``resolve`` names the file a failing Secret came from) and the
authoring side (``keys``, ``rekey``, ``store``, ``checks``). Nothing here decrypts or writes;
a YAML error is reported without its text, which could quote a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from promote import config
from promote.config import schema
from promote.errors import ConfigError, SopsError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def secret_files(env: config.Environment) -> list[Path]:
    """Every ``*.sops.yaml`` under the environment's overlay (the files its rule matches)."""
    if not env.overlay_dir.is_dir():
        return []
    return sorted(env.overlay_dir.rglob("*.sops.yaml"))


def load_document(path: Path) -> dict[str, Any]:
    """Parse a (still encrypted) SOPS YAML file; an empty or non-mapping file gives {}."""
    try:
        text = schema.read_text(path, str(path))
        node = schema.compose_checked(text, str(path))
        data = yaml.load(text, Loader=_Loader) if node is not None else None
    except ConfigError as exc:  # our own words: names the file, never a value
        raise SopsError(exc.message) from None
    except yaml.YAMLError as exc:
        # Not chained and no detail: a YAML error quotes the offending line, maybe a value.
        raise SopsError(
            f"{path}: cannot be read as YAML ({type(exc).__name__}); restore it from Git."
        ) from None
    return data if isinstance(data, dict) else {}


def sources(project: config.Project, env: config.Environment) -> dict[str, str]:
    """Secret name -> the ``*.sops.yaml`` file that defines it (for messages)."""
    out: dict[str, str] = {}
    for path in secret_files(env):
        try:
            doc = load_document(path)
        except SopsError:
            continue
        name = (doc.get("metadata") or {}).get("name")
        if doc.get("kind") == "Secret" and name:
            out[str(name)] = project.relpath(path)
    return out
