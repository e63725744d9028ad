"""Reading ``policies/`` from a repository tree, and preparing the CEL parser (adapter).

The only file I/O of the policy package. ``policies/`` sits beside ``environments/`` and
``keys/``, outside the overlays, so a change to it is a governance change that affects every
environment (``promotion.scope``). Every ``*.yaml``/``*.yml`` below it is read, each document
one object (a ``kind: List`` contributes its items); the pure :mod:`promote.policy.model`
turns them into a :class:`~promote.policy.model.PolicySet`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
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


def prepare_parser(cache_root: Path | None = None) -> None:
    """Build cel-python's parser from a cached grammar analysis when one exists.

    cel-python builds its LALR tables from ``cel.lark`` on first use (about 0.1-0.2 s);
    Lark can keep that analysis in a file. We place it under
    ``$PROMOTE_CACHE/cel/`` (named by the cel-python version) and hand the parser to
    cel-python before it builds its own. Any problem just leaves cel-python to build it.
    """
    from celpy import celparser
    from lark import Lark, Tree

    if celparser.CELParser.CEL_PARSER is not None:
        return
    root = cache_root or Path(os.environ.get("PROMOTE_CACHE") or Path.home() / ".cache/promote")
    version = importlib.metadata.version("cel-python")
    cache = root / "cel" / f"lark-cel-python-{version}.cache"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        grammar = (Path(celparser.__file__).parent / "cel.lark").read_text(encoding="utf-8")
        # The very options celpy.celparser.CELParser passes (cel-python 0.5.0).
        celparser.CELParser.CEL_PARSER = Lark(
            grammar,
            parser="lalr",
            start="expr",
            debug=True,
            g_regex_flags=re.M,
            lexer_callbacks={"IDENT": celparser.CELParser.ambiguous_literals},
            propagate_positions=True,
            maybe_placeholders=False,
            priority="invert",
            tree_class=Tree,
            cache=str(cache),
        )
    except (OSError, ValueError) as exc:  # read-only home, a stale cache file: build it
        log.debug("CEL parser cache %s not used: %s", cache, exc)
