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

    def finding(field: str, message: str) -> validation.Finding:
        return validation.Finding(env.name, obj, field, message, source=rel)

    checked = name is not None and str(name) in rendered
    if not validation.is_sops_object(doc):
        return (
            []
            if checked
            else [
                finding(
                    "sops",
                    "the file is named *.sops.yaml but is not encrypted (no sops metadata); "
                    f"create it with `promote secrets set {env.name} NAME KEY=-` "
                    "(no value is shown)",
                )
            ]
        )
    out = [
        finding(
            field,
            "is not encrypted although the file is a SOPS file; set it again with "
            f"`promote secrets set {env.name} {name or 'NAME'} KEY=-` (the value is not shown)",
        )
        for field in ([] if checked else sopsmeta.unencrypted_values(doc))
    ]
    have = sopsmeta.file_recipients(doc)
    if wanted is not None and have != wanted:
        extra, missing = have.minus(wanted), wanted.minus(have)
        parts = []
        if extra:
            parts.append(f"encrypted to {', '.join(extra.labels())} not in keys/{env.name}/")
        if missing:
            parts.append(f"not encrypted to {', '.join(missing.labels())} of keys/{env.name}/")
        out.append(
            finding(
                "sops.recipients",
                "; ".join(parts) + "; run `promote keys sync` (a holder of the environment's "
                "key re-wraps it)",
            )
        )
    settings = env.config.secrets.vault
    configured = sopsmeta.normalise_address(settings.address) if settings else None
    for address in sorted(sopsmeta.transit_addresses(doc)):
        if address != configured:
            out.append(
                finding(
                    "sops.hc_vault",
                    f"its Vault transit key is on {address} but environments/{env.name}.yaml "
                    f"secrets.vault.address is {settings.address if settings else 'not set'}; "
                    "the agent refuses such a file (it would send its token elsewhere)",
                )
            )
    if not sopsmeta.kustomize_ordered(doc):
        out.append(
            finding(
                "data",
                "keys are not sorted (data before stringData); kustomize sorts them and the MAC "
                "would no longer match after rendering; set a key with `promote secrets set` "
                "to rewrite the file in order",
            )
        )
    return out
