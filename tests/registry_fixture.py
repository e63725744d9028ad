"""A real OCI registry, crane and cosign for the supply-chain tests (pytest plugin).

The session fixture ``oci_registry`` starts CNCF distribution's ``registry`` (built from Go
modules by ``tools/ensure-registry``) on a free 127.0.0.1 port with filesystem storage in a
temporary folder, ready when ``GET /v2/`` answers 200 (deadline below; its log is shown on
failure), and stopped by PID. Images are pushed with crane (``tools/ensure-crane``) and
signed with the cosign CLI (``tools/ensure-cosign``), keys made by ``cosign
generate-key-pair``. Cold builds are long (cosign ~16 min on two busy cores): CI runs the
scripts first (``make tools``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from promote.local.processes import free_port

TOOLS = Path(__file__).resolve().parent.parent / "tools"
READY_DEADLINE_S = 30.0
# cosign v3 signs through a Sigstore signing config by default; offline (no Rekor, no TUF)
# that is switched off and nothing is uploaded to a transparency log.
SIGN_FLAGS = [
    "--use-signing-config=false",
    "--tlog-upload=false",
    "--yes",
    "--allow-insecure-registry",
]


def ensure(tool: str) -> Path:
    proc = subprocess.run(
        [str(TOOLS / f"ensure-{tool}")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"tools/ensure-{tool} failed:\n{proc.stderr[-3000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1]) / tool


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    crane: Path
    cosign: Path
    work: Path

    def _run(self, *argv: str, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **(env or {})},
            cwd=self.work,
        )
        assert proc.returncode == 0, f"{argv[:3]}: {proc.stderr[-2000:]}"
        return proc.stdout.strip()

    def push(self, repository: str, tag: str, content: str) -> str:
        """Push a one-layer image whose file holds ``content``; its digest."""
        src = self.work / f"layer-{time.monotonic_ns()}"
        src.write_text(content)
        layer = src.with_suffix(".tar")
        with tarfile.open(layer, "w") as tar:
            tar.add(src, arcname="content.txt")
        ref = f"{self.host}/{repository}:{tag}"
        self._run(str(self.crane), "append", "-f", str(layer), "-t", ref, "--insecure")
        return self._run(str(self.crane), "digest", ref, "--insecure")

    def keypair(self, name: str) -> tuple[Path, Path]:
        """A cosign key pair (empty password); (private, public)."""
        self._run(
            str(self.cosign),
            "generate-key-pair",
            "--output-key-prefix",
            name,
            env={"COSIGN_PASSWORD": ""},
        )
        return self.work / f"{name}.key", self.work / f"{name}.pub"

    def sign(self, reference: str, key: Path) -> None:
        self._run(
            str(self.cosign),
            "sign",
            "--key",
            str(key),
            *SIGN_FLAGS,
            reference,
            env={"COSIGN_PASSWORD": ""},
        )


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[Registry]:
    binary, crane, cosign = ensure("registry"), ensure("crane"), ensure("cosign")
    work = Path(tempfile.mkdtemp(prefix="promote-registry-"))
    host = f"127.0.0.1:{free_port()}"
    (work / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {work / 'data'}\nhttp:\n  addr: {host}\n"
    )
    log_path = work / "registry.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", str(work / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"registry did not start:\n{log_path.read_text()[-3000:]}", pytrace=False
                )
            time.sleep(0.05)
        yield Registry(host, crane, cosign, work)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
