"""``cosign verify`` with a public key from the repository, offline.

Offline means: the signature is checked against the key alone (``--key``), with no
transparency log (``--insecure-ignore-tlog``) and no TUF root, since neither is reachable
here. Online verification would add Rekor's proof that the signature was logged publicly
(and when), and keyless identities (Fulcio certificates bound to an OIDC identity). cosign's
stdout (the verified payload) is not kept; its stderr is reduced to the reason.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from promote.errors import RegistryError
from promote.supply import images, tools

log = logging.getLogger(__name__)
MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str = ""  # why not, in cosign's words (its last error line)


class Cosign:
    def __init__(self, binary: Path | None = None, *, timeout_s: float = 60) -> None:
        self._binary = binary or tools.find("cosign")
        self._timeout_s = timeout_s

    def verify(self, reference: str, key: Path) -> Verification:
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
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                env=tools.environment(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RegistryError(
                f"{reference}: cosign verify did not finish within {self._timeout_s:.0f} s."
            ) from exc
        log.debug("cosign verify %s: %.2f s", reference, time.monotonic() - started)
        if proc.returncode == 0:
            return Verification(True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
        reason = lines[-1].removeprefix("Error:").strip() if lines else "verification failed"
        return Verification(False, reason[:MAX_REASON])
