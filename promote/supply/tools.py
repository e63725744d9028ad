"""Finding the supply-chain binaries: ``$PROMOTE_<TOOL>``, PATH, then the cache that
``tools/ensure-<tool>`` fills (``$PROMOTE_CACHE/<tool>/<version>/<tool>``)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from promote import childproc
from promote.errors import RegistryError

log = logging.getLogger(__name__)

# keep in step with tools/ensure-*; the registry only serves the demo and the tests
VERSIONS = {"crane": "v0.22.1", "cosign": "v3.1.3", "registry": "v3.1.2"}


def cache_root() -> Path:
    return Path(os.environ.get("PROMOTE_CACHE") or Path.home() / ".cache/promote")


def find(tool: str) -> Path:
    variable = f"PROMOTE_{tool.upper()}"
    explicit = os.environ.get(variable)
    if explicit:
        problem = childproc.unusable(explicit)
        if problem:
            raise RegistryError(
                f"{variable} names no program to run: {problem}.",
                hint=f"Set {variable} to the path of the {tool} binary, or unset it to use "
                f"{tool} from PATH or the cache `tools/ensure-{tool}` fills.",
            )
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


def run(argv: list[str], *, timeout_s: float, late: str) -> subprocess.CompletedProcess[str]:
    """Run a supply-chain tool in :func:`environment` (never a shell); RegistryError with
    ``late`` ("REF: cosign verify did not finish") when it outlives ``timeout_s``."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"{late} within {timeout_s:.0f} s.") from exc
    except OSError as exc:  # the binary went away or lost its x bit since find()
        tool = Path(argv[0]).name
        reason = childproc.unusable(argv[0]) or f"{argv[0]}: {exc.strerror or exc}"
        raise RegistryError(
            f"cannot run {tool}: {reason}.",
            hint=f"Set PROMOTE_{tool.upper()} to the {tool} binary or run `tools/ensure-{tool}`.",
        ) from exc
    log.debug("%s %s: %.2f s", Path(argv[0]).name, argv[1], time.monotonic() - started)
    return proc
