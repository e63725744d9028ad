"""What a SOPS document says about itself without any key (pure: data in, data out).

With ``encrypted_regex: ^(data|stringData)$`` and ``mac_only_encrypted: true`` the ``sops:``
metadata block stays readable: who the data key is wrapped for (age recipients, PGP
fingerprints, Vault transit keys) and which values are encrypted. ``keys.py`` reads the
recipients an environment *should* have from ``keys/<env>/``; this module reads the ones a
file *does* have, so the two can be compared, and lists values that are not ciphertext.
Nothing here decrypts, runs a process or touches the file system.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from promote.cluster import validation

SECTIONS = ("data", "stringData")
TRANSIT_URI = re.compile(
    r"^(?P<address>https?://[^/\s]+)/v1/(?P<engine>\S+)/keys/(?P<key>[^/\s]+)$"
)


@dataclass(frozen=True, slots=True)
class Recipients:
    """The public keys a data key is wrapped for: age recipients, PGP fingerprints, transit URIs."""

    age: frozenset[str] = field(default_factory=frozenset)
    pgp: frozenset[str] = field(default_factory=frozenset)  # upper-case fingerprints
    vault_transit: frozenset[str] = field(default_factory=frozenset)  # normalised URIs

    def __bool__(self) -> bool:
        return bool(self.age or self.pgp or self.vault_transit)

    def labels(self) -> list[str]:
        """Every recipient as people read it: ``age1...``, ``PGP <fpr>``, ``vault <uri>``."""
        return (
            sorted(self.age)
            + [f"PGP {fp}" for fp in sorted(self.pgp)]
            + [f"vault {uri}" for uri in sorted(self.vault_transit)]
        )

    def minus(self, other: Recipients) -> Recipients:
        return Recipients(
            self.age - other.age, self.pgp - other.pgp, self.vault_transit - other.vault_transit
        )


def normalise_address(address: str) -> str:
    """``HTTP://Vault:8200/`` -> ``http://vault:8200``: how addresses are compared."""
    parts = urlsplit(address.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def normalise_transit_uri(uri: str) -> str | None:
    """A transit key URI in canonical form, or None when it is not one."""
    match = TRANSIT_URI.match(uri.strip())
    if not match:
        return None
    engine = match["engine"].strip("/")
    return f"{normalise_address(match['address'])}/v1/{engine}/keys/{match['key']}"


def transit_address(uri: str) -> str:
    match = TRANSIT_URI.match(uri)
    return normalise_address(match["address"]) if match else uri


def _key_groups(meta: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield meta
    for group in meta.get("key_groups") or []:
        if isinstance(group, dict):
            yield group


def file_recipients(document: dict[str, Any]) -> Recipients:
    """Recipients recorded in a document's ``sops:`` block (empty when it has none)."""
    meta = document.get("sops")
    if not isinstance(meta, dict):
        return Recipients()
    age: set[str] = set()
    pgp: set[str] = set()
    transit: set[str] = set()
    for group in _key_groups(meta):
        for entry in group.get("age") or []:
            if isinstance(entry, dict) and entry.get("recipient"):
                age.add(str(entry["recipient"]).strip())
        for entry in group.get("pgp") or []:
            if isinstance(entry, dict) and entry.get("fp"):
                pgp.add(str(entry["fp"]).strip().upper())
        for entry in group.get("hc_vault") or []:
            if isinstance(entry, dict):
                engine = str(entry.get("engine_path", "")).strip("/")
                uri = (
                    f"{entry.get('vault_address', '')}/v1/{engine}/keys/{entry.get('key_name', '')}"
                )
                transit.add(normalise_transit_uri(uri) or uri)
    return Recipients(frozenset(age), frozenset(pgp), frozenset(transit))


def transit_addresses(document: dict[str, Any]) -> set[str]:
    """Vault addresses sops would contact to unwrap this document's data key.

    sops takes the address from the file itself, so a changed file could point the agent's
    Vault token at another server; the resolver compares these with the configured Vault.
    """
    return {transit_address(uri) for uri in file_recipients(document).vault_transit}


def unencrypted_values(document: dict[str, Any]) -> list[str]:
    """Field paths under data/stringData whose value is not SOPS ciphertext.

    ``sops filestatus`` calls a file "encrypted" when one value is, so each value is checked.
    """
    found = []
    for section in SECTIONS:
        values = document.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            found.append(section)
            continue
        for key, value in values.items():
            if not (isinstance(value, str) and validation.ENC_VALUE.match(value)):
                found.append(f"{section}.{key}")
    return found


def kustomize_ordered(document: dict[str, Any]) -> bool:
    """True when encrypted keys are in the order kustomize writes them (data, then sorted).

    ``kustomize build`` sorts map keys; the MAC covers the encrypted values in document order,
    so a file whose keys are not sorted fails its MAC check after rendering.
    """
    keys = [s for s in document if s in SECTIONS]
    if keys != sorted(keys):
        return False
    for section in SECTIONS:
        values = document.get(section)
        if isinstance(values, dict) and list(values) != sorted(values, key=str):
            return False
    return True
