"""The two ways promote decrypts a SOPS document, as a fixture parameter.

``decrypt_backend`` runs a test once with the persistent decryptor (``sopsd``, built once by
``tools/ensure-sopsd`` and cached) and once with one ``sops decrypt`` process per document
(``PROMOTE_SOPSD=off``), so each decrypt test holds both to the same behaviour.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ENSURE_SOPSD = REPO_ROOT / "tools" / "ensure-sopsd"


@pytest.fixture(scope="session")
def sopsd_binary() -> Path:
    """The sopsd binary, built on first use (a cold build takes about a minute)."""
    out = subprocess.run([str(ENSURE_SOPSD)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"tools/ensure-sopsd failed:\n{out.stderr}"
    return Path(out.stdout.strip()) / "sopsd"


@pytest.fixture(params=["sopsd", "per-process"])
def decrypt_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sopsd_binary: Path
) -> str:
    """Sets PROMOTE_SOPSD for the test: the sopsd binary, or ``off``."""
    if request.param == "sopsd":
        monkeypatch.setenv("PROMOTE_SOPSD", str(sopsd_binary))
    else:
        monkeypatch.setenv("PROMOTE_SOPSD", "off")
    return str(request.param)
