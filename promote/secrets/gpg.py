"""GnuPG for environment keys: read fingerprints of public keys, export and import them.

Owns the ``gpg`` binary (through python-gnupg) for the secrets package. It only ever handles
PUBLIC keys: a PGP recipient of an environment is a public key file in ``keys/<env>/``, and
sops can only encrypt to a fingerprint that is in the keyring, so the keys of an environment
are imported into the keyring in use before sops encrypts. Private keys stay in the user's or
the agent's GnuPG home; this module refuses armoured private key material.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import gnupg

from promote.errors import GpgError

log = logging.getLogger(__name__)

# The header line of an ASCII-armoured block, matched as a pattern; its kind says whether a
# text may be used (a public key) or must be refused (a private key: a leak, never a recipient).
_ARMOR_HEADER = re.compile(r"^-----BEGIN PGP (?P<kind>[A-Z ]+)-----[ \t]*$", re.MULTILINE)
_PRIVATE_KINDS = {"PRIVATE KEY BLOCK", "SECRET KEY BLOCK"}


def _armor_kinds(text: str) -> set[str]:
    return {m.group("kind") for m in _ARMOR_HEADER.finditer(text)}


def holds_private_key(text: str) -> bool:
    """Whether ``text`` contains an armoured PGP private key block."""
    return bool(_armor_kinds(text) & _PRIVATE_KINDS)


def holds_public_key(text: str) -> bool:
    return "PUBLIC KEY BLOCK" in _armor_kinds(text)


FINGERPRINT = re.compile(r"^(0x)?[0-9A-Fa-f]{40}$")


def _gpg(environ: Mapping[str, str]) -> gnupg.GPG:
    try:
        return gnupg.GPG(gnupghome=environ.get("GNUPGHOME") or None)
    except (OSError, ValueError, RuntimeError) as exc:
        raise GpgError(
            f"cannot run gpg ({type(exc).__name__}).",
            hint="Install GnuPG (the `gpg` command) and check GNUPGHOME.",
        ) from exc


def fingerprints(armored: str, *, display: str, environ: Mapping[str, str]) -> list[str]:
    """Fingerprints (upper case) of the primary keys in an armoured PUBLIC key block."""
    if holds_private_key(armored):
        raise GpgError(
            f"{display}: holds a PGP PRIVATE key block; only public keys may be used as "
            "recipients. Export the public half with `gpg --armor --export FINGERPRINT`."
        )
    if not holds_public_key(armored):
        raise GpgError(
            f"{display}: not an ASCII-armoured PGP public key; export one with "
            "`gpg --armor --export FINGERPRINT`."
        )
    keys = _gpg(environ).scan_keys_mem(armored)
    found = [str(k["fingerprint"]).upper() for k in keys if k.get("type") == "pub"]
    if not found:
        raise GpgError(f"{display}: gpg found no public key in it; export the key again.")
    return found


def export_public(fingerprint: str, *, environ: Mapping[str, str]) -> str:
    """The armoured public key of ``fingerprint`` from the keyring in use."""
    data = _gpg(environ).export_keys(fingerprint.removeprefix("0x"), armor=True)
    if not isinstance(data, str) or not holds_public_key(data):
        raise GpgError(
            f"PGP key {fingerprint} is not in the keyring (GNUPGHOME="
            f"{environ.get('GNUPGHOME', '~/.gnupg')}); import it first, or pass the path of its "
            "armoured public key file instead."
        )
    return data


def import_public(armored: str, *, display: str, environ: Mapping[str, str]) -> None:
    """Import a public key so sops can encrypt to it (idempotent)."""
    if holds_private_key(armored):
        raise GpgError(f"{display}: holds a PGP PRIVATE key block; refusing to import it.")
    result = _gpg(environ).import_keys(armored)
    if not result.fingerprints:
        raise GpgError(f"{display}: gpg imported no key from it; check the file.")
    log.debug("imported PGP public key(s) %s from %s", ",".join(result.fingerprints), display)
