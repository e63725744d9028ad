"""The demo's supply-chain chapter: a local OCI registry, its images signed, prod gated.

Owns, for ``promote demo``: starting CNCF distribution's ``registry`` on 127.0.0.1 (a demo
process, stopped with the others), pushing the images the story promotes to it with crane,
signing them with the cosign CLI, and turning ``gates.pinDigests`` and ``gates.signedImages``
on for prod, with the signer's public key in ``keys/image-signers/``; after the prod merge,
checking that prod got (and runs) the digest the registry holds for the tag.

The signing key: a cosign key pair generated at demo time in a temporary folder (mode 0700),
its private half encrypted by cosign with a random password that lives in memory and reaches
cosign only through its environment (``COSIGN_PASSWORD``); the folder is removed as soon as
the images are signed. Only the public key enters the repository.

Must not: print (it tells the world's narrator), or know the order of the story.
"""

from __future__ import annotations

import io
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from promote.kustomize import overlay
from promote.local import processes, seed
from promote.local.seed import DemoError
from promote.local.world import World
from promote.supply import tools

EXAMPLE_REGISTRY = "registry.example.com/acme/"  # the example overlays' image names
SIGNER = "keys/image-signers/demo.pub"
READY_DEADLINE_S = 30.0
TOOL_TIMEOUT_S = 120.0
# cosign v3 signs through a Sigstore signing config by default; offline (no Rekor, no TUF)
# that is switched off and nothing is uploaded to a transparency log.
SIGN_FLAGS = ("--use-signing-config=false", "--tlog-upload=false", "--yes",
              "--allow-insecure-registry")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Published:
    reference: str  # 127.0.0.1:PORT/acme/web-app:v2.4.1
    digest: str  # sha256:...


@dataclass(slots=True)
class SupplyChain:
    """The chapter's state: the registry's address, the public key, what was published."""

    host: str = ""
    public_key: bytes = b""
    published: tuple[Published, ...] = ()


def start(w: World, images: list[tuple[str, str]], chain: SupplyChain) -> str:
    """Start the registry, push ``images`` ([(repository below acme/, tag)]) and sign them."""
    binary, crane, cosign = (tools.find(t) for t in ("registry", "crane", "cosign"))
    # The CLI's children keep their cache under the demo's directory: name the tools.
    w.child_env.update(PROMOTE_CRANE=str(crane), PROMOTE_COSIGN=str(cosign))
    chain.host = _serve(w, binary)
    work = Path(tempfile.mkdtemp(prefix="promote-demo-signing-"))
    try:
        password = secrets.token_urlsafe(24)  # in memory; cosign reads it from its env
        env = {**tools.environment(), "COSIGN_PASSWORD": password}
        _run([str(cosign), "generate-key-pair", "--output-key-prefix", "demo"], env=env, cwd=work)
        chain.public_key = (work / "demo.pub").read_bytes()
        found = []
        for repository, tag in images:
            ref = f"{chain.host}/acme/{repository}:{tag}"
            digest = _push(crane, ref, work)
            by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
            _run([str(cosign), "sign", "--key", str(work / "demo.key"), *SIGN_FLAGS, by_digest],
                 env=env, cwd=work)  # fmt: skip
            found.append(Published(ref, digest))
        chain.published = tuple(found)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the encrypted private key goes with it
    names = ", ".join(p.reference.split("/", 1)[1] for p in chain.published)
    return (
        f"registry at {chain.host}; pushed and signed {names} (cosign key pair made now, "
        "private half encrypted and removed after signing)"
    )


def configure(clone: Path, chain: SupplyChain) -> str:
    """prod pulls the example's images from the demo's registry (``newName`` is not
    promoted: each environment keeps its own), pins digests and needs signatures by
    ``keys/image-signers/demo.pub``."""
    kz = clone / "overlays" / "prod" / "kustomization.yaml"
    text = kz.read_text(encoding="utf-8")
    kz.write_text(text.replace(EXAMPLE_REGISTRY, f"{chain.host}/acme/"), encoding="utf-8")
    signer = clone / SIGNER
    signer.parent.mkdir(parents=True, exist_ok=True)
    signer.write_bytes(chain.public_key)
    prod = clone / "environments" / "prod.yaml"
    text = prod.read_text(encoding="utf-8")
    if "\ngates:\n" not in text:
        raise DemoError(f"{prod}: the demo expects a gates: section to add to.")
    added = "\ngates:\n  pinDigests: true    # the demo's: tags resolved and pinned\n" \
            "  signedImages: true  # cosign signatures by keys/image-signers/\n"  # fmt: skip
    prod.write_text(text.replace("\ngates:\n", added, 1), encoding="utf-8")
    return f"prod pulls from {chain.host} with gates.pinDigests, gates.signedImages; {SIGNER}"


def check_pinned(w: World, chain: SupplyChain, app: str, tag: str) -> str:
    """Prod's overlay on main pins ``app`` to the digest the registry holds for ``tag``, and
    prod's Deployment runs exactly that."""
    wanted = next((p for p in chain.published if p.reference.endswith(f"/{app}:{tag}")), None)
    if wanted is None:
        raise DemoError(f"{app}:{tag} was not published to the demo's registry.")
    path = "overlays/prod/kustomization.yaml"
    text = seed.git("show", f"main:{path}", cwd=w.remote)
    image = next((i for i in overlay.parse_images(text, path) if i.name == app), None)
    if image is None or image.digest != wanted.digest:
        found = image.version if image else "no entry"
        raise DemoError(f"{path} on main: {app} is {found}, not pinned to {wanted.digest}.")
    running = w.image("prod", app)
    if not running.endswith(f":{tag}@{wanted.digest}"):
        raise DemoError(f"prod's Deployment {app} runs {running}, not {tag}@{wanted.digest}.")
    return f"prod pins {app} {tag}@{wanted.digest[:19]}... (the registry's digest) and runs it"


def _serve(w: World, binary: Path) -> str:
    """``registry serve`` on a free port, filesystem storage in the demo's directory."""
    folder = w.dir / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{processes.free_port()}"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\nhttp:\n  addr: {host}\n",
        encoding="utf-8",
    )
    proc = w.procs.spawn("registry", [str(binary), "serve", str(config)], env=w.child_env,
                         log_path=folder / "registry.log")  # fmt: skip
    w.record()
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if w.procs.exited(proc) is not None:
            break
        try:
            if httpx.get(f"http://{host}/v2/", timeout=2).status_code == 200:
                return host
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise DemoError(
        f"the registry did not answer within {READY_DEADLINE_S:g}s; log {proc.log}:\n"
        f"{processes.log_tail(proc.log)}"
    )


def _push(crane: Path, ref: str, work: Path) -> str:
    """A one-layer image naming itself (kwok runs no containers); its digest."""
    layer = work / "layer.tar"
    data = f"{ref}\n".encode()
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("image.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    _run([str(crane), "append", "-f", str(layer), "-t", ref, "--insecure"], cwd=work)
    return _run([str(crane), "digest", ref, "--insecure"], cwd=work).strip()


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                              env=env or tools.environment(), timeout=TOOL_TIMEOUT_S,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"{Path(argv[0]).name} {argv[1]} did not finish in time") from exc
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise DemoError(f"{Path(argv[0]).name} {argv[1]} failed: {said}")
    return proc.stdout
