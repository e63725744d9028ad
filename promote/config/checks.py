"""Checks of one environment file that need more than its schema: ``trustedSigners`` entries
and merge windows (their zones, RRULEs and break-glass quorum).

Owns these two checks and their messages (file, line, field and fix). Must not: read any file
other than the key files ``trustedSigners`` names, or know about other environments
(``model`` checks across files and calls these).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from promote.config import schema
from promote.config.release import window_problem
from promote.errors import ConfigError

if TYPE_CHECKING:
    from promote.config import model

KEYS_DIR = "keys/"
_FINGERPRINT = re.compile(r"^(0x)?[0-9A-Fa-f]{40}$")


def check_signers(env: model.Environment, node: yaml.Node | None, display: str) -> None:
    """``approvals.trustedSigners``: each a public key file under keys/ or a fingerprint."""
    root = env.file.parent.parent
    for i, entry in enumerate(env.config.approvals.trusted_signers):
        if _FINGERPRINT.match(entry):
            continue
        line = schema.line_of(node, ["approvals", "trustedSigners", i])
        where = f"{display}:{line}" if line else display
        path = Path(entry)
        if path.is_absolute() or ".." in path.parts or not entry.startswith(KEYS_DIR):
            raise ConfigError(
                f"{where}: approvals.trustedSigners: {entry!r} is neither a 40-hex fingerprint "
                f"nor a key file under {KEYS_DIR}; write e.g. keys/ci/ci.asc or the signing "
                "key's fingerprint."
            )
        if not (root / path).is_file():
            raise ConfigError(
                f"{where}: approvals.trustedSigners: {entry} does not exist; add the signer's "
                "public key there (`gpg --armor --export ID`) or remove the entry."
            )


def check_windows(env: model.Environment, node: yaml.Node | None, display: str) -> None:
    """Each rule's zone and RRULE parse (dateutil, imported only when windows are set); a
    break-glass requirement is one the listed approvers can meet."""
    cfg = env.config
    for kind, rules in (("allow", cfg.windows.allow), ("deny", cfg.windows.deny)):
        for i, rule in enumerate(rules):
            where = f"{display}:{schema.line_of(node, ['windows', kind, i]) or '?'}"
            problem = window_problem(rule)
            if problem:
                raise ConfigError(f"{where}: windows.{kind}[{i}]: {problem}")
    need, listed = cfg.break_glass_required, len(cfg.approvals.approvers)
    if cfg.windows.any and need > listed:
        line = schema.line_of(node, ["windows", "breakGlass", "required"])
        raise ConfigError(
            f"{display}:{line or '?'}: windows.breakGlass.required is {need} but only {listed} "
            "approvers are listed, so no break-glass merge could ever happen; add approvers "
            "or lower it."
        )
