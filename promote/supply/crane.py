"""``crane`` (go-containerregistry): what digest a tag names in its registry.

One verb, :meth:`Crane.digest`. Credentials come from the docker config, read by crane itself;
its output is a digest and its errors are registry error documents, which we shorten.
"""

from __future__ import annotations

import logging
from pathlib import Path

from promote.errors import RegistryError
from promote.supply import images, tools

log = logging.getLogger(__name__)
MAX_ERROR = 300


class Crane:
    def __init__(self, binary: Path | None = None, *, timeout_s: float = 30) -> None:
        self._binary = binary or tools.find("crane")
        self._timeout_s = timeout_s

    def digest(self, reference: str) -> str:
        """``sha256:...`` of ``reference`` (``repo:tag``) as the registry serves it now."""
        argv = [str(self._binary), "digest", reference]
        if images.is_loopback(images.registry(reference)):
            argv.append("--insecure")
        late = f"{reference}: the registry did not answer"
        proc = tools.run(argv, timeout_s=self._timeout_s, late=late)
        found = proc.stdout.strip()
        if proc.returncode != 0 or not images.DIGEST.match(found):
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:MAX_ERROR]
            raise RegistryError(
                f"{reference}: cannot resolve the tag to a digest in {images.registry(reference)} "
                f"({detail}).",
                hint="Check that the image was pushed and that the docker config "
                "($DOCKER_CONFIG or ~/.docker/config.json) can read the registry.",
            )
        return found
