"""``cosign verify`` with a public key from the repository, offline.

Offline means: the signature is checked against the key alone (``--key``), with no
transparency log (``--insecure-ignore-tlog``) and no TUF root, since neither is reachable
here. Online verification would add Rekor's proof that the signature was logged publicly
(and when), and keyless identities (Fulcio certificates bound to an OIDC identity). cosign's
stdout (the verified payload) is not kept; its stderr is reduced to the reason.

A success for ``repo@sha256:...`` is remembered in ``cache_dir`` as an empty file named by the
key's SHA-256 and the reference's: the digest names the image's content, so the same key
verifies it again (a promotion into staging and then prod asks twice); a changed key file is a new
key. References by tag are never remembered (a tag can move), nor are failures.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from promote.supply import images, tools

log = logging.getLogger(__name__)
MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str = ""  # why not, in cosign's words (its last error line)


class Cosign:
    def __init__(
        self, binary: Path | None = None, *, timeout_s: float = 60, cache_dir: Path | None = None
    ) -> None:
        self._binary = binary or tools.find("cosign")
        self._timeout_s = timeout_s
        self._cache = cache_dir

    def verify(self, reference: str, key: Path) -> Verification:
        marker = self._marker(reference, key)
        if marker is not None and marker.exists():
            return Verification(True)
        found = self._verify(reference, key)
        if found.ok and marker is not None:
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError as exc:  # a read-only cache only costs time
                log.debug("cannot remember %s: %s", reference, exc)
        return found

    def _marker(self, reference: str, key: Path) -> Path | None:
        _, _, digest = reference.partition("@")
        if self._cache is None or not images.DIGEST.match(digest):
            return None
        key_id = hashlib.sha256(key.read_bytes()).hexdigest()
        # the whole reference: a signature is stored beside its repository's image
        return self._cache / key_id / hashlib.sha256(reference.encode()).hexdigest()

    def _verify(self, reference: str, key: Path) -> Verification:
        argv = [
            str(self._binary),
            "verify",
            "--key",
            str(key),
            "--insecure-ignore-tlog=true",
            "--output",
            "json",
        ]
        if images.is_loopback(images.registry(reference)):
            argv.append("--allow-insecure-registry")
        argv.append(reference)
        late = f"{reference}: cosign verify did not finish"
        proc = tools.run(argv, timeout_s=self._timeout_s, late=late)
        if proc.returncode == 0:
            return Verification(True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
        reason = lines[-1].removeprefix("Error:").strip() if lines else "verification failed"
        return Verification(False, reason[:MAX_REASON])
