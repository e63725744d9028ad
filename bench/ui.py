"""Benchmark: the dashboard's pages for 100 apps x 3 environments, served by uvicorn.

Run: `python bench/ui.py [--apps 100] [--repeat 20]` (what `make bench` does). Builds the
tests' 100-app repository (bench/promotion.py's Bench: a bare remote, a clone, rm1's key),
opens a promotion PR into staging that rm1 approves and merges, and a second one into prod
that waits, then times each page over HTTP:

- cold: the first request (opens the session, reads overlays, verifies signatures, renders);
- warm: the median of ``--repeat`` requests while main is unchanged (what a person clicking
  around sees; target under 200 ms for the matrix and PR pages);
- re-read: warm, but the page re-fetches main first (``--refresh 0``; main unchanged);
- diff pages render with kustomize: cold is the first render, cached the next request.

No cluster runs here: every agent status reads "unavailable" (one failed connection per
environment every refresh), so the matrix times are Git and page time alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from promote.promotion import engine, propose, review
from promote.secrets import gpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository: tests/
from tests.ui_world import free_port, serve  # noqa: E402

TARGET_S = 0.2
_spec = importlib.util.spec_from_file_location("bench_promotion", HERE / "promotion.py")
assert _spec is not None and _spec.loader is not None
bench_promotion = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_promotion)


def world(root: Path, apps: int) -> tuple[Path, int]:
    """The clone, with PR 1 (staging) merged and the number of the open PR into prod."""
    b = bench_promotion.Bench(root, apps)
    signer = gpg.Signer(gnupghome=str(b.gnupg))
    with engine.session(b.clone) as s:
        pr = propose.open_pull_request(
            s, propose.plan_promotion(s, "staging"), opener="bench", signer=signer
        )
    with engine.session(b.clone) as s:
        review.approve(s, pr.number, approver="rm1", signer=signer)
    with engine.session(b.clone) as s:
        review.merge(s, pr.number, by="bench")
    with engine.session(b.clone) as s:
        prod = propose.open_pull_request(
            s, propose.plan_promotion(s, "prod"), opener="bench", signer=signer
        )
    with engine.session(b.clone) as s:
        review.approve(s, prod.number, approver="rm1", signer=signer)
    os.environ["GNUPGHOME"] = str(b.gnupg)
    return b.clone, prod.number


def timed_get(client: httpx.Client, path: str) -> float:
    t0 = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: HTTP {response.status_code}")
    return elapsed


def measure(clone: Path, prod_pr: int, repeat: int) -> list[tuple[str, float, float, float]]:
    """(page, cold, warm median, re-read median) per page."""
    from promote.ui import app

    settings = app.Settings(repo_dir=clone, port=free_port(), refresh_s=3600)
    history = "/history/staging"
    pages = ["/", "/matrix/table", "/prs", f"/prs/{prod_pr}", history, "/agents"]
    rows = []
    with serve(settings) as base, httpx.Client(base_url=base, timeout=600) as c:
        cold = {p: timed_get(c, p) for p in pages}
        warm = {p: statistics.median(timed_get(c, p) for _ in range(repeat)) for p in pages}
        first = c.get("/api/history/staging").json()["entries"]
        diffs = [f"/prs/{prod_pr}/diff"]
        if len(first) > 1:
            diffs.append(f"{history}/diff?from={first[1]['commit']}&to={first[0]['commit']}")
        diff_times = [(p, timed_get(c, p), timed_get(c, p)) for p in diffs]
    settings = app.Settings(repo_dir=clone, port=free_port(), refresh_s=0)
    with serve(settings) as base, httpx.Client(base_url=base, timeout=600) as c:
        for p in pages:
            timed_get(c, p)
        reread = {p: statistics.median(timed_get(c, p) for _ in range(repeat)) for p in pages}
    for p in pages:
        rows.append((p, cold[p], warm[p], reread[p]))
    for p, first_s, cached_s in diff_times:
        rows.append((f"{p.split('?')[0]} (renders)", first_s, cached_s, float("nan")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="promote-bench-ui-"))
    try:
        clone, prod_pr = world(root, args.apps)
        rows = measure(clone, prod_pr, args.repeat)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "gpg-agent"],
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"promote ui benchmark: {args.apps} apps x 3 environments, {args.repeat} requests, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'page'.ljust(width)}   cold s  warm/cached s  re-read main s  target {TARGET_S}s warm")
    for page, cold, warm, reread in rows:
        mark = ""
        if not page.endswith("(renders)"):
            mark = "ok" if warm < TARGET_S else "OVER"
        shown = "      -" if reread != reread else f"{reread:14.3f}"
        print(f"{page.ljust(width)}  {cold:7.3f}  {warm:13.3f}  {shown:>14}  {mark}")


if __name__ == "__main__":
    main()
