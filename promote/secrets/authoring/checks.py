"""``promote validate`` checks for secrets, read without any private key.

For each environment: every ``*.sops.yaml`` file under its overlay (listed in the kustomization
or not: a committed plaintext is committed either way) must be a SOPS file whose every value
under ``data``/``stringData`` is ciphertext (``sops filestatus`` says "encrypted" for a file with
a single encrypted value), whose recipients are exactly ``keys/<env>/``, whose Vault transit
keys live on the environment's Vault, and whose keys are in the order kustomize writes them.
``keys/<env>/`` and the environment's approvers' ``keys/release-managers/NAME.asc`` must hold
public material only. Findings name files, fields and fixes; never a
value. ``promote.cli.secrets`` registers :func:`check_environment` in ``validate.EXTRA_CHECKS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promote import config
from promote.cluster import validation
from promote.errors import PromoteError
from promote.secrets import files, sopsmeta
from promote.secrets.authoring import keys


def check_environment(
    project: config.Project, env: config.Environment, objects: list[dict[str, Any]]
) -> list[validation.Finding]:
    """All secrets findings for one environment (``objects`` are its rendered objects)."""
    findings: list[validation.Finding] = []
    keys_rel = project.relpath(keys.keys_dir(project, env.name))
    for path in keys.private_material(keys.keys_dir(project, env.name)):
        findings.append(
            validation.Finding(
                env.name,
                f"file {project.relpath(path)}",
                "content",
                "holds PRIVATE key material; delete it, rotate that key (it is in Git history "
                f"now) and keep only public recipients in {keys_rel}/",
            )
        )
    for name in env.config.approvals.approvers:
        path = project.root / "keys" / "release-managers" / f"{name}.asc"
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if keys.holds_private_material(text):
            findings.append(
                validation.Finding(
                    env.name,
                    f"file {project.relpath(path)}",
                    "content",
                    f"approver {name}'s key file holds PRIVATE key material; replace it with "
                    "the public key only (`gpg --armor --export ID`) and rotate that key",
                )
            )
    wanted: sopsmeta.Recipients | None = None
    try:
        wanted = keys.read_keys(project, env.name, environ=os.environ).recipients
    except PromoteError as exc:
        findings.append(validation.Finding(env.name, f"folder {keys_rel}/", "recipients", str(exc)))
    # Values of Secrets that are rendered are already checked by validation.check_secret.
    rendered = {
        str((o.get("metadata") or {}).get("name")) for o in objects if o.get("kind") == "Secret"
    }
    for path in files.secret_files(env):
        findings.extend(_check_file(project, env, path, wanted, rendered))
    return findings


def _check_file(
    project: config.Project,
    env: config.Environment,
    path: Path,
    wanted: sopsmeta.Recipients | None,
    rendered: set[str],
) -> list[validation.Finding]:
    rel = project.relpath(path)
    try:
        doc = files.load_document(path)
    except PromoteError as exc:
        return [validation.Finding(env.name, f"file {rel}", "content", str(exc))]
    name = (doc.get("metadata") or {}).get("name")
    obj = f"{doc.get('kind', 'object')} {name}" if name else f"file {rel}"
    checked = name is not None and str(name) in rendered
    if not validation.is_sops_object(doc):
        problems = [] if checked else [_not_encrypted(env)]
    else:
        problems = [
            *([] if checked else _plaintext_values(doc, env, name)),
            *_recipients(doc, env, wanted),
            *_transit_keys(doc, env),
            *_key_order(doc),
        ]
    return [validation.Finding(env.name, obj, f, message, source=rel) for f, message in problems]


# Each step below returns (field, message) pairs for one file; no value is ever in a message.


def _not_encrypted(env: config.Environment) -> tuple[str, str]:
    return (
        "sops",
        "the file is named *.sops.yaml but is not encrypted (no sops metadata); "
        f"create it with `promote secrets set {env.name} NAME KEY=-` "
        "(no value is shown)",
    )


def _plaintext_values(
    doc: dict[str, Any], env: config.Environment, name: Any
) -> list[tuple[str, str]]:
    """Values left in plaintext in a SOPS file (rendered Secrets are checked by validation)."""
    return [
        (
            field,
            "is not encrypted although the file is a SOPS file; set it again with "
            f"`promote secrets set {env.name} {name or 'NAME'} KEY=-` (the value is not shown)",
        )
        for field in sopsmeta.unencrypted_values(doc)
    ]


def _recipients(
    doc: dict[str, Any], env: config.Environment, wanted: sopsmeta.Recipients | None
) -> list[tuple[str, str]]:
    """The file must be encrypted to exactly ``keys/<env>/``."""
    have = sopsmeta.file_recipients(doc)
    if wanted is None or have == wanted:
        return []
    extra, missing = have.minus(wanted), wanted.minus(have)
    parts = []
    if extra:
        parts.append(f"encrypted to {', '.join(extra.labels())} not in keys/{env.name}/")
    if missing:
        parts.append(f"not encrypted to {', '.join(missing.labels())} of keys/{env.name}/")
    return [
        (
            "sops.recipients",
            "; ".join(parts) + "; run `promote keys sync` (a holder of the environment's "
            "key re-wraps it)",
        )
    ]


def _transit_keys(doc: dict[str, Any], env: config.Environment) -> list[tuple[str, str]]:
    """Vault transit keys must live on the environment's own Vault."""
    settings = env.config.secrets.vault
    configured = sopsmeta.normalise_address(settings.address) if settings else None
    return [
        (
            "sops.hc_vault",
            f"its Vault transit key is on {address} but environments/{env.name}.yaml "
            f"secrets.vault.address is {settings.address if settings else 'not set'}; "
            "the agent refuses such a file (it would send its token elsewhere)",
        )
        for address in sorted(sopsmeta.transit_addresses(doc))
        if address != configured
    ]


def _key_order(doc: dict[str, Any]) -> list[tuple[str, str]]:
    if sopsmeta.kustomize_ordered(doc):
        return []
    return [
        (
            "data",
            "keys are not sorted (data before stringData); kustomize sorts them and the MAC "
            "would no longer match after rendering; set a key with `promote secrets set` "
            "to rewrite the file in order",
        )
    ]
