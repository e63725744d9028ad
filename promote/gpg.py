"""GnuPG (python-gnupg): sign approvals with the approver's key, verify them against one key.

Owns one outside system: the ``gpg`` binary. Signing uses the user's keyring (``GNUPGHOME``
from the environment, else gpg's default) and their agent. Verifying never trusts that keyring:
each check imports ONLY the approver's public key (the file ``keys/release-managers/NAME.asc``
read at main) into a throw-away keyring, so a signature by any other key, even one the user
trusts, is not valid for that approver. Throw-away keyrings run with ``--no-autostart``
(no agent is spawned) and are deleted afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import gnupg

from promote.errors import GpgError
from promote.forge.base import Approval
from promote.promotion.approvals import CheckedApproval, SignatureStatus, valid_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verification:
    valid: bool
    fingerprint: str  # primary key of the signer ("" when unknown)
    detail: str  # gpg's status, e.g. "signature valid" / "signature bad"
    other_key: bool = False  # a well-formed signature, but not by a key of this keyring


def _gpg(home: str | None, *, autostart: bool = True) -> gnupg.GPG:
    try:
        return gnupg.GPG(gnupghome=home, options=None if autostart else ["--no-autostart"])
    except (OSError, ValueError) as exc:
        raise GpgError(
            f"cannot run gpg ({exc}).", hint="Install GnuPG 2 (`apt-get install gnupg`)."
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

    def sign(self, payload: bytes, *, fingerprints: Sequence[str], who: str) -> str:
        """An ASCII-armoured detached signature of ``payload`` by the first of ``fingerprints``
        (the keys of ``who``'s public key file) whose secret key this keyring holds."""
        secret = {k["fingerprint"] for k in self._gpg.list_keys(secret=True)}
        where = f"GNUPGHOME={self._home}" if self._home else "your default GnuPG keyring"
        usable = [f for f in fingerprints if f in secret]
        fingerprint = usable[0] if usable else ""
        if not fingerprint:
            raise GpgError(
                f"no secret key for {who} (fingerprint {', '.join(fingerprints)}) in {where}; "
                f"approve with the key whose public half is keys/release-managers/{who}.asc.",
                hint="Import your secret key (`gpg --import`) or point GNUPGHOME at your keyring.",
            )
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
        self._home = tempfile.mkdtemp(prefix="promote-gpg-")
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
        shutil.rmtree(self._home, ignore_errors=True)

    def verify(self, payload: bytes, signature: str) -> Verification:
        sig_file = Path(self._home) / "approval.sig"
        sig_file.write_text(signature, encoding="utf-8")
        result = self._gpg.verify_data(str(sig_file), payload)
        primary = str(result.pubkey_fingerprint or result.fingerprint or "")
        valid = bool(result.valid) and primary in self.fingerprints
        detail = str(result.status or "no signature found")
        if result.valid and not valid:
            return Verification(
                False, primary, f"signed by {primary}, not the approver's key", True
            )
        if result.status == "no public key":
            signer = result.key_id or "an unknown key"
            return Verification(False, "", f"signed by {signer}, not the approver's key", True)
        return Verification(valid=valid, fingerprint=primary, detail=detail)


def verify_approvals(
    found: Sequence[Approval], keys_dir: Path, *, where: str
) -> list[CheckedApproval]:
    """Check each approval's signature against ``keys_dir/<approver>.asc`` (and nothing else).

    A server forge's review (no payload, no signature) is vouched for by the forge. ``where``
    names ``keys_dir`` in messages (e.g. "keys/release-managers/ on main").
    """
    rings: dict[str, KeyRing | None] = {}
    out = []
    try:
        for a in found:
            if a.payload is None and a.signature is None:
                out.append(CheckedApproval(a, SignatureStatus.FORGE))
                continue
            if not a.signature or not a.payload:
                out.append(CheckedApproval(a, SignatureStatus.UNSIGNED))
                continue
            if a.approver not in rings:
                path = keys_dir / f"{a.approver}.asc"
                ok = valid_name(a.approver) and path.is_file()
                rings[a.approver] = KeyRing(path.read_text(encoding="utf-8")) if ok else None
            ring = rings[a.approver]
            if ring is None:
                detail = f"no {a.approver}.asc in {where} to verify it"
                out.append(CheckedApproval(a, SignatureStatus.NO_KEY, detail))
                continue
            result = ring.verify(a.payload.encode(), a.signature)
            if result.valid:
                out.append(CheckedApproval(a, SignatureStatus.VALID, result.fingerprint))
            elif result.other_key:
                out.append(CheckedApproval(a, SignatureStatus.WRONG_KEY, result.detail))
            else:
                out.append(CheckedApproval(a, SignatureStatus.BAD, result.detail))
    finally:
        for ring in rings.values():
            if ring is not None:
                ring.close()
    return out
