"""GnuPG (python-gnupg): sign and verify approvals; read, export and import public keys.

Owns one outside system: the ``gpg`` binary, for approvals and for environment keys.

Approvals: signing uses the user's keyring (``GNUPGHOME``
from the environment, else gpg's default) and their agent. Verifying never trusts that keyring:
each check imports ONLY the approver's public key (the file ``keys/release-managers/NAME.asc``
read at main) into a throw-away keyring, so a signature by any other key, even one the user
trusts, is not valid for that approver. Throw-away keyrings run with ``--no-autostart``
(no agent is spawned) and are deleted afterwards.

Environment keys (the secrets package): a PGP recipient of an environment is a public key file
in ``keys/<env>/``, and sops can only encrypt to a fingerprint that is in the keyring, so the
keys of an environment are imported into the keyring in use before sops encrypts. Private keys
stay in the user's or the agent's GnuPG home: every reader here refuses armoured private key
material (:func:`holds_private_key`), in ``keys/<env>/`` and in ``keys/release-managers/``.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import gnupg

from promote.errors import GpgError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verification:
    valid: bool
    fingerprint: str  # primary key of the signer ("" when unknown)
    detail: str  # gpg's status, e.g. "signature valid" / "signature bad"
    other_key: bool = False  # a well-formed signature, but not by a key of this keyring
    key_state: KeyState | None = None  # the approver's key made it, but has expired or was revoked


class KeyState(enum.StrEnum):
    EXPIRED = "expired"
    REVOKED = "revoked"


def _gpg(home: str | None, *, autostart: bool = True) -> gnupg.GPG:
    # Checked first: python-gnupg logs a missing binary at ERROR, traceback and all, before
    # it raises, and that would print ahead of our one paragraph.
    if shutil.which("gpg") is None:
        raise GpgError(
            "cannot run gpg: not found on PATH.",
            hint="Install GnuPG 2 (e.g. `apt-get install gnupg`) and put `gpg` on PATH.",
        )
    try:
        return gnupg.GPG(gnupghome=home, options=None if autostart else ["--no-autostart"])
    except (OSError, ValueError, RuntimeError) as exc:
        raise GpgError(
            f"cannot run gpg ({type(exc).__name__}: {exc}).",
            hint="Install GnuPG 2 (the `gpg` command) and check GNUPGHOME.",
        ) from exc


def key_fingerprints(public_key: str) -> tuple[str, ...]:
    """Primary-key fingerprints in an ASCII-armoured public key (empty when it holds none)."""
    with KeyRing(public_key) as ring:
        return ring.fingerprints


class Signer:
    """Signs with a secret key from the user's keyring."""

    def __init__(self, *, gnupghome: str | None = None) -> None:
        self._home = gnupghome if gnupghome is not None else os.environ.get("GNUPGHOME")
        self._gpg = _gpg(self._home)

    def secret_fingerprints(self) -> frozenset[str]:
        """Primary fingerprints of the secret keys this keyring holds."""
        return frozenset(str(k["fingerprint"]).upper() for k in self._gpg.list_keys(secret=True))

    def secret_key_for(self, fingerprints: Sequence[str], *, who: str, action: str) -> str:
        """The first of ``fingerprints`` (the keys of ``who``'s public key file) whose secret
        key this keyring holds; GpgError naming the keyring when there is none. ``action``
        ("approve", "sign the pin") completes the message's advice."""
        secret = {str(k["fingerprint"]).upper() for k in self._gpg.list_keys(secret=True)}
        where = f"GNUPGHOME={self._home}" if self._home else "your default GnuPG keyring"
        usable = [f for f in fingerprints if f.upper() in secret]
        if not usable:
            raise GpgError(
                f"no secret key for {who} (fingerprint {', '.join(fingerprints)}) in {where}; "
                f"{action} with the key whose public half is keys/release-managers/{who}.asc.",
                hint="Import your secret key (`gpg --import`) or point GNUPGHOME at your keyring.",
            )
        return usable[0]

    def sign(self, payload: bytes, *, fingerprints: Sequence[str], who: str) -> str:
        """An ASCII-armoured detached signature of ``payload`` by the first of ``fingerprints``
        (the keys of ``who``'s public key file) whose secret key this keyring holds."""
        fingerprint = self.secret_key_for(fingerprints, who=who, action="approve")
        started = time.monotonic()
        sig = self._gpg.sign(payload, keyid=fingerprint, detach=True, binary=False)
        log.debug("gpg sign took %.3fs", time.monotonic() - started)
        if not sig.data:
            raise GpgError(
                f"gpg could not sign as {who} ({sig.status or 'no status'}; "
                f"{(sig.stderr or '').strip().splitlines()[-1:] or ''}).",
                hint="Is the key protected by a passphrase that no gpg-agent can ask for?",
            )
        return str(sig)


class KeyRing:
    """A throw-away keyring holding one public key file; a context manager."""

    def __init__(self, public_key: str) -> None:
        if holds_private_key(public_key):
            raise GpgError(
                "the key file holds a PGP PRIVATE key block; a public key is expected. Replace "
                "it with `gpg --armor --export ID` and rotate the key: it is in Git history."
            )
        self._home = tempfile.mkdtemp(prefix="promote-gpg-")
        # Removed by close(), else when the ring is collected or the process exits: a ring
        # kept by a long-lived object (an agent's verifier) is not left behind in /tmp.
        self._remove = weakref.finalize(self, shutil.rmtree, self._home, True)
        os.chmod(self._home, 0o700)
        self._gpg = _gpg(self._home, autostart=False)
        result = self._gpg.import_keys(public_key)
        self.fingerprints: tuple[str, ...] = tuple(
            dict.fromkeys(f for f in result.fingerprints if f)
        )

    def __enter__(self) -> KeyRing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._remove()

    def verify(self, payload: bytes, signature: str) -> Verification:
        """Thread-safe: each call writes its own signature file (gpg reads it by name)."""
        fd, name = tempfile.mkstemp(prefix="approval-", suffix=".sig", dir=self._home)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(signature)
            result = self._gpg.verify_data(name, payload)
        finally:
            Path(name).unlink(missing_ok=True)
        primary = str(result.pubkey_fingerprint or result.fingerprint or "")
        valid = bool(result.valid) and primary in self.fingerprints
        detail = str(result.status or "no signature found")
        if result.valid and not valid:
            return Verification(
                False, primary, f"signed by {primary}, not the approver's key", True
            )
        if result.key_status and primary in self.fingerprints:
            # EXPKEYSIG/REVKEYSIG: python-gnupg sets key_status, but the VALIDSIG line that
            # follows overwrites status with "signature valid" (valid stays False).
            state = KeyState.REVOKED if "revoked" in result.key_status else KeyState.EXPIRED
            return Verification(False, primary, str(result.key_status), key_state=state)
        if result.status == "no public key":
            signer = result.key_id or "an unknown key"
            return Verification(False, "", f"signed by {signer}, not the approver's key", True)
        return Verification(valid=valid, fingerprint=primary, detail=detail)


# --- public keys of environments and approvers ------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class KeyFileFacts:
    """What one armoured key file holds, read without importing it anywhere."""

    primaries: tuple[str, ...]  # primary-key fingerprints (upper case), in file order
    fingerprints: frozenset[str]  # every fingerprint: primary keys and subkeys
    private: bool  # an armoured PRIVATE/SECRET key block is in the text


def scan_key_file(text: str) -> KeyFileFacts:
    """The keys in an armoured text (``gpg --show-keys``); a private block is never imported."""
    if holds_private_key(text):
        return KeyFileFacts((), frozenset(), True)
    home = tempfile.mkdtemp(prefix="promote-gpg-")
    try:
        keys = _gpg(home, autostart=False).scan_keys_mem(text) if text.strip() else []
    finally:
        shutil.rmtree(home, ignore_errors=True)
    primaries = tuple(str(k["fingerprint"]).upper() for k in keys if k.get("type") == "pub")
    subkeys = {str(sub[2]).upper() for k in keys for sub in k.get("subkeys") or () if sub[2]}
    secret = any(k.get("type") == "sec" for k in keys)
    return KeyFileFacts(primaries, frozenset(primaries) | frozenset(subkeys), secret)


FINGERPRINT = re.compile(r"^(0x)?[0-9A-Fa-f]{40}$")


def public_fingerprints(armored: str, *, display: str, environ: Mapping[str, str]) -> list[str]:
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
    keys = _gpg(environ.get("GNUPGHOME") or None).scan_keys_mem(armored)
    found = [str(k["fingerprint"]).upper() for k in keys if k.get("type") == "pub"]
    if not found:
        raise GpgError(f"{display}: gpg found no public key in it; export the key again.")
    return found


def export_public(fingerprint: str, *, environ: Mapping[str, str]) -> str:
    """The armoured public key of ``fingerprint`` from the keyring in use."""
    data = _gpg(environ.get("GNUPGHOME") or None).export_keys(
        fingerprint.removeprefix("0x"), armor=True
    )
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
    result = _gpg(environ.get("GNUPGHOME") or None).import_keys(armored)
    if not result.fingerprints:
        raise GpgError(f"{display}: gpg imported no key from it; check the file.")
    log.debug("imported PGP public key(s) %s from %s", ",".join(result.fingerprints), display)
