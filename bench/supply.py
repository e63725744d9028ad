"""Benchmark: resolving 100 promoted tags to digests (gates.pinDigests, issue 17), cold.

Run: `python bench/supply.py [--images 100] [--repeat 3]`. Starts a distribution registry on
127.0.0.1 (tools/ensure-registry), pushes ``--images`` one-layer images with crane, then
times ``promotion.supply.pin_digests`` for all of them: every tag resolved in the registry
(``crane digest``, 4 at a time), what a promotion into an environment with pinDigests adds.
There is no digest cache: a tag can move, and pinning must read what it names now.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from promote.kustomize.overlay import Image
from promote.local.processes import free_port
from promote.promotion import plan, supply

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def ensure(tool: str) -> Path:
    out = subprocess.run(
        [str(TOOLS / f"ensure-{tool}")], capture_output=True, text=True, check=True
    ).stdout
    return Path(out.strip().splitlines()[-1]) / tool


def verify_signatures(work: Path, *, cosign: Path, pinned: list[Image]) -> None:
    """Sign each pinned image with a throw-away key; time ``supply.verify_signatures``."""
    env = {**os.environ, "COSIGN_PASSWORD": ""}
    subprocess.run(
        [str(cosign), "generate-key-pair", "--output-key-prefix", "bench"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )

    def sign(image: Image) -> None:  # signatures live beside each repository's image
        subprocess.run(
            [
                str(cosign),
                "sign",
                "--key",
                "bench.key",
                "--use-signing-config=false",
                "--tlog-upload=false",
                "--yes",
                "--allow-insecure-registry",
                f"{image.new_name}@{image.digest}",
            ],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(sign, pinned))
    keys = work / "keys/image-signers"
    keys.mkdir(parents=True)
    shutil.copy(work / "bench.pub", keys / "bench.pub")
    changes = [plan.ImageChange(p.app, p.name, None, p) for p in pinned]
    os.environ["PROMOTE_CACHE"] = str(work / "cache")  # tools are found through PATH-less
    os.environ["PROMOTE_COSIGN"] = str(cosign)  # lookups below, verifications start cold
    for kind in ("cold", "verified before (cache)"):
        started = time.perf_counter()
        gates = supply.verify_signatures(work, changes)
        took = time.perf_counter() - started
        blocked = [g for g in gates if g.blocks]
        assert not blocked, blocked[:2]
        print(
            f"verify {len(changes)} cosign signatures ({kind}, offline, "
            f"{supply.WORKERS} at a time): {took:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry, crane = ensure("registry"), ensure("crane")
    work = Path(tempfile.mkdtemp(prefix="promote-bench-supply-"))
    host = f"127.0.0.1:{free_port()}"
    (work / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: "
        f"{work / 'data'}}}}}\nhttp: {{addr: '{host}'}}\n"
    )
    proc = subprocess.Popen(
        [str(registry), "serve", str(work / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("registry did not start") from None
            time.sleep(0.05)
        wanted = [
            Image(f"app{i:03d}", f"{host}/bench/app{i:03d}", "v1.0.0") for i in range(args.images)
        ]

        def push(image: Image) -> None:  # distinct content: distinct digests to verify
            layer = work / f"{image.name}.tar"
            (work / f"{image.name}.txt").write_text(image.name)
            with tarfile.open(layer, "w") as tar:
                tar.add(work / f"{image.name}.txt", arcname="app.txt")
            subprocess.run(
                [
                    str(crane),
                    "append",
                    "-f",
                    str(layer),
                    "-t",
                    f"{image.new_name}:v1.0.0",
                    "--insecure",
                ],
                check=True,
                capture_output=True,
            )

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(push, wanted))
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            pinned = supply.pin_digests(wanted, [])
            times.append(time.perf_counter() - started)
            assert all(p.digest for p in pinned)
        print(
            f"pin {args.images} digests from the registry (cold, {supply.WORKERS} at a time): "
            f"best {min(times):.3f} s, median {statistics.median(times):.3f} s"
        )
        verify_signatures(work, cosign=ensure("cosign"), pinned=pinned)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
