"""Finding the supply-chain binaries: ``$PROMOTE_<TOOL>``, PATH, then the cache that
``tools/ensure-<tool>`` fills (``$PROMOTE_CACHE/<tool>/<version>/<tool>``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from promote.errors import RegistryError

VERSIONS = {"crane": "v0.22.1", "cosign": "v3.1.3"}  # keep in step with tools/ensure-*


def cache_root() -> Path:
    return Path(os.environ.get("PROMOTE_CACHE") or Path.home() / ".cache/promote")


def find(tool: str) -> Path:
    explicit = os.environ.get(f"PROMOTE_{tool.upper()}")
    if explicit:
        return Path(explicit)
    on_path = shutil.which(tool)
    if on_path:
        return Path(on_path)
    cached = cache_root() / tool / VERSIONS[tool] / tool
    if cached.is_file():
        return cached
    raise RegistryError(
        f"{tool} not found (no $PROMOTE_{tool.upper()}, nothing on PATH, nothing in {cached}).",
        hint=f"Run `tools/ensure-{tool}` to build it, or install {tool} and put it on PATH.",
    )


def environment() -> dict[str, str]:
    """The tools' environment: ours minus what would change their behaviour unasked.

    HOME and DOCKER_CONFIG stay: they locate the docker config (registry credentials).
    COSIGN_* variables are dropped (a COSIGN_PASSWORD, COSIGN_KEY or COSIGN_EXPERIMENTAL of
    the user's shell must not steer verification).
    """
    return {k: v for k, v in os.environ.items() if not k.startswith("COSIGN_")}
