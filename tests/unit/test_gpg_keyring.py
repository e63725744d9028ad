"""A throw-away keyring's folder does not outlive it, closed or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from promote.secrets import gpg


def test_closed_ring_leaves_nothing() -> None:
    ring = gpg.KeyRing("")
    home = Path(ring._home)
    assert home.is_dir()
    ring.close()
    ring.close()  # twice is fine
    assert not home.exists()


def test_a_ring_never_closed_is_removed_when_the_process_exits(tmp_path: Path) -> None:
    """An agent or a command that keeps a ring until it ends (verifiers, registries) used to
    leave a promote-gpg-* folder in /tmp per run."""
    code = "from promote.secrets import gpg; ring = gpg.KeyRing(''); print(ring._home)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    home = Path(proc.stdout.strip())
    assert home.name.startswith("promote-gpg-")
    assert not home.exists()
