"""Checks of one environment file that need more than its schema: its upstream, overlay,
approvals, ``trustedSigners`` entries, merge windows (zones, RRULEs, break-glass quorum) and
verification.

Owns these checks and their messages (file, line, field and fix). Must not: read any file
other than the key files ``trustedSigners`` names and the overlay folder, or know more about
other environments than their names (``model`` checks across files and calls these).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from promote.config import schema
from promote.config.release import http_problem, job_problem, window_problem
from promote.errors import ConfigError

if TYPE_CHECKING:
    from promote.config import model

KEYS_DIR = "keys/"
_FINGERPRINT = re.compile(r"^(0x)?[0-9A-Fa-f]{40}$")


def signer_problems(env: model.Environment, node: yaml.Node | None, display: str) -> Iterator[str]:
    """``approvals.trustedSigners``: each a public key file under keys/ or a fingerprint."""
    root = env.file.parent.parent
    for i, entry in enumerate(env.config.approvals.trusted_signers):
        if _FINGERPRINT.match(entry):
            continue
        line = schema.line_of(node, ["approvals", "trustedSigners", i])
        where = f"{display}:{line}" if line else display
        path = Path(entry)
        if path.is_absolute() or ".." in path.parts or not entry.startswith(KEYS_DIR):
            yield (
                f"{where}: approvals.trustedSigners: {entry!r} is neither a 40-hex fingerprint "
                f"nor a key file under {KEYS_DIR}; write e.g. keys/ci/ci.asc or the signing "
                "key's fingerprint."
            )
        elif not (root / path).is_file():
            yield (
                f"{where}: approvals.trustedSigners: {entry} does not exist; add the signer's "
                "public key there (`gpg --armor --export ID`) or remove the entry."
            )


def window_problems(env: model.Environment, node: yaml.Node | None, display: str) -> Iterator[str]:
    """Each rule's zone and RRULE parse (dateutil, imported only when windows are set); a
    break-glass requirement is one the listed approvers can meet."""
    cfg = env.config
    for kind, rules in (("allow", cfg.windows.allow), ("deny", cfg.windows.deny)):
        for i, rule in enumerate(rules):
            where = f"{display}:{schema.line_of(node, ['windows', kind, i]) or '?'}"
            problem = window_problem(rule)
            if problem:
                yield f"{where}: windows.{kind}[{i}]: {problem}"
    need, listed = cfg.break_glass_required, len(cfg.approvals.approvers)
    if cfg.windows.any and need > listed:
        line = schema.line_of(node, ["windows", "breakGlass", "required"])
        yield (
            f"{display}:{line or '?'}: windows.breakGlass.required is {need} but only {listed} "
            "approvers are listed, so no break-glass merge could ever happen; add approvers "
            "or lower it."
        )


def check_environment(
    name: str, env: model.Environment, node: yaml.Node | None, names: set[str]
) -> None:
    """One environment file against the others: upstream, overlay, approvals, signers,
    windows, verification. Raises one ConfigError naming every problem found (a file's schema
    errors come first, from ``schema.validate``: these checks need a file that parses)."""
    problems = list(environment_problems(name, env, node, names))
    if problems:
        raise ConfigError(" ".join(problems))


def environment_problems(
    name: str, env: model.Environment, node: yaml.Node | None, names: set[str]
) -> Iterator[str]:
    """Each problem of :func:`check_environment`, in the file's order of fields."""
    display = f"environments/{name}.yaml"
    cfg = env.config
    if cfg.upstream is not None and cfg.upstream not in names:
        line = schema.line_of(node, ["upstream"])
        yield (
            f"{display}:{line}: upstream: {cfg.upstream!r} names no environment "
            f"(known: {', '.join(sorted(names))}); set it to one of them or remove it."
        )
    if cfg.upstream == name:
        line = schema.line_of(node, ["upstream"])
        yield (
            f"{display}:{line or '?'}: upstream: an environment cannot be its own upstream; "
            "name the environment promotions come from, or remove the field."
        )
    if not env.overlay_dir.is_dir():
        field = "overlay" if cfg.overlay else "overlay (default overlays/<env>)"
        rel = cfg.overlay or f"overlays/{name}"
        line = schema.line_of(node, ["overlay"]) if cfg.overlay else None
        yield (
            f"{display}{f':{line}' if line else ''}: {field}: the folder {rel}/ does not "
            "exist; create it with a "
            "kustomization.yaml, or point `overlay:` at the right folder."
        )
    appr = cfg.approvals
    if appr.required > len(appr.approvers):
        line = schema.line_of(node, ["approvals", "required"])
        where = f"{display}:{line}" if line else display
        yield (
            f"{where}: approvals.required is {appr.required} but only "
            f"{len(appr.approvers)} approvers are listed; add approvers or lower it."
        )
    if len(set(appr.approvers)) != len(appr.approvers):
        yield (f"{display}: approvals.approvers lists a name twice; list each approver once.")
    yield from signer_problems(env, node, display)
    yield from window_problems(env, node, display)
    if cfg.auto_promote and cfg.upstream is None:
        line = schema.line_of(node, ["autoPromote"])
        yield (
            f"{display}:{line or '?'}: autoPromote: {name} has no upstream to promote from; "
            "set `upstream:` or remove autoPromote."
        )
    check = cfg.verification.http if cfg.verification else None
    if check is not None and (problem := http_problem(check)):
        line = schema.line_of(node, ["verification", "http"])
        yield f"{display}:{line or '?'}: verification.http: {problem}"
    job = cfg.verification.job if cfg.verification else None
    if job is not None and (problem := job_problem(job)):
        line = schema.line_of(node, ["verification", "job"])
        yield f"{display}:{line or '?'}: verification.job: {problem}"
