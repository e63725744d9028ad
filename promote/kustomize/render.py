"""Render an overlay with kustomize and return its objects.

Owns one outside system: the ``kustomize`` binary (or ``kubectl kustomize``). SOPS-encrypted
Secrets pass through untouched: kustomize never sees plaintext, because decryption happens
later, in memory, in ``secrets/resolve.py``. Kustomize's own error text is passed on with the
overlay path (it names files and fields, never secret values: values are ciphertext here).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import yaml

from promote import childproc
from promote.errors import RenderError
from promote.kustomize import renderstore, shards
from promote.kustomize import sandbox as sandbox_mod

log = logging.getLogger(__name__)

KUSTOMIZE_VERSION = "v5.7.1"  # tools/ensure-kustomize installs this when no kustomize exists
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Files (patches, generator inputs) only from under each kustomization's own folder; kustomize's
# default, said explicitly so a user's kustomize configuration cannot loosen it.
_RESTRICTOR = "--load-restrictor=LoadRestrictionsRootOnly"


def cache_dir() -> Path:
    return Path(os.environ.get("PROMOTE_CACHE", Path.home() / ".cache" / "promote"))


def find_kustomize() -> list[str]:
    """argv for kustomize: $PROMOTE_KUSTOMIZE, `kustomize`, our cache, `kubectl kustomize`."""
    explicit = os.environ.get("PROMOTE_KUSTOMIZE")
    if explicit:
        problem = childproc.unusable(explicit)
        if problem:
            raise RenderError(
                f"PROMOTE_KUSTOMIZE names no program to run: {problem}.",
                hint="Set PROMOTE_KUSTOMIZE to the path of the kustomize binary, or unset it "
                "to use `kustomize` (or `kubectl kustomize`) from PATH.",
            )
        return [explicit, "build"]
    found = shutil.which("kustomize")
    if found:
        return [found, "build"]
    cached = cache_dir() / "kustomize" / KUSTOMIZE_VERSION / "kustomize"
    if cached.exists():
        return [str(cached), "build"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    raise RenderError(
        "kustomize not found: neither `kustomize` nor `kubectl` is on PATH.",
        hint="Run `tools/ensure-kustomize` (go install sigs.k8s.io/kustomize/kustomize/v5) "
        "or install kubectl.",
    )


class ChunkMemo(Protocol):
    """Chunk renders a caller keeps (the agent, in memory), found by the content of a chunk's
    inputs: ``key`` is None when a chunk cannot be kept; ``get`` and ``put`` hold its objects
    as kustomize rendered them (SOPS ciphertext intact, never mutated by the caller)."""

    def key(self, folders: Sequence[Path]) -> str | None: ...

    def get(self, key: str) -> list[dict[str, Any]] | None: ...

    def put(self, key: str, objects: list[dict[str, Any]]) -> None: ...


class Kustomize:
    """The kustomize binary, found once; ``build`` is its one verb."""

    def __init__(
        self,
        argv: list[str] | None = None,
        *,
        timeout_s: float = 120,
        store: renderstore.RenderStore | None = None,
    ) -> None:
        self._argv = argv or find_kustomize()
        self._limits = childproc.Limits.from_env(os.environ, timeout_s=timeout_s)
        self._store = store  # renders kept on disk by input content (the CLI's commands)

    def build_text(
        self,
        overlay_dir: Path,
        *,
        sandbox: sandbox_mod.Sandbox | None = None,
        checked: bool = False,
    ) -> str:
        """kustomize's output for ``overlay_dir``, after checking that it reads nothing outside
        ``sandbox`` (by default the repository the overlay sits in, no remote bases); a caller
        that has just made that check itself says ``checked`` (it reads every kustomization of
        the tree: ~7 ms per folder, a third of the render of 1,000 per-app folders)."""
        box = sandbox or sandbox_mod.Sandbox(sandbox_mod.guess_root(overlay_dir))
        if not checked:
            box.check(overlay_dir)
        key = None
        if self._store is not None and renderstore.enabled():
            key = self._store.key(box.root, overlay_dir)
            text = self._store.get(key) if key else None
            if text is not None:
                return text
        text = self._run(overlay_dir)
        if key is not None and self._store is not None:
            self._store.put(key, text)
        return text

    def _run(self, overlay_dir: Path) -> str:
        argv = [*self._argv, _RESTRICTOR, str(overlay_dir)]
        started = time.monotonic()
        try:
            proc = childproc.run(argv, limits=self._limits, env=_go_env(self._limits))
        except childproc.NotStarted as exc:
            raise RenderError(
                f"{overlay_dir}: cannot run kustomize: {exc}.",
                hint="Set PROMOTE_KUSTOMIZE to the kustomize binary, or put kustomize (or "
                "kubectl) on PATH (`tools/ensure-kustomize` installs it).",
            ) from exc
        except childproc.Exceeded as exc:
            raise RenderError(
                f"{overlay_dir}: kustomize build was stopped: it {exc} (a YAML alias bomb or an "
                "overlay far larger than any real one?).",
                hint="Look for YAML anchors (&) and aliases (*) that multiply, or very large "
                "files; PROMOTE_CHILD_MAX_RSS_MB raises the memory budget.",
            ) from exc
        log.debug("kustomize build %s took %.3fs", overlay_dir, time.monotonic() - started)
        if proc.returncode != 0:
            stderr = proc.stderr.decode("utf-8", "replace")
            detail = stderr.strip().replace("\n", " ")[:2000]
            raise RenderError(
                f"{overlay_dir}: kustomize build failed: {detail}",
                hint="Fix the overlay (run `kustomize build` on it to see the same error).",
            )
        return proc.stdout.decode("utf-8", "replace")

    def build(
        self,
        overlay_dir: Path,
        *,
        sandbox: sandbox_mod.Sandbox | None = None,
        scratch: Path | None = None,
        checked: bool = False,
        memo: ChunkMemo | None = None,
        chunk: int = shards.CHUNK_FOLDERS,
    ) -> list[dict[str, Any]]:
        """The overlay's objects. Given ``scratch`` (an empty folder this call may write), an
        overlay of many plain folders is built in chunks, in parallel (``shards``): the same
        objects, in time linear in their number instead of kustomize's quadratic. Given
        ``memo``, a chunk whose inputs it already holds is not built again (a commit that
        changes one app rebuilds one chunk, of ``chunk`` folders)."""
        chunks = shards.plan(overlay_dir, chunk=chunk) if scratch is not None else None
        if scratch is None or chunks is None:
            text = self.build_text(overlay_dir, sandbox=sandbox, checked=checked)
            return parse_objects(text, str(overlay_dir))
        if not checked:
            (sandbox or sandbox_mod.Sandbox(sandbox_mod.guess_root(overlay_dir))).check(overlay_dir)
        started = time.monotonic()
        keys = [memo.key(c) if memo is not None else None for c in chunks]
        found = [memo.get(k) if memo is not None and k else None for k in keys]
        todo = [i for i, objs in enumerate(found) if objs is None]
        folders = shards.write_chunks([chunks[i] for i in todo], scratch)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            texts = list(pool.map(self._build_chunk, folders))
        for i, text in zip(todo, texts, strict=True):
            found[i] = parse_objects(text, str(overlay_dir))
        objects = [o for objs in found for o in objs or ()]
        shards.check_unique(objects, str(overlay_dir))
        for i in todo:  # kept once the union holds no duplicate
            key, objs = keys[i], found[i]
            if memo is not None and key and objs is not None:
                memo.put(key, objs)
        log.info(
            "kustomize build %s: %d objects in %d chunks (%d built), %.3fs",
            overlay_dir,
            len(objects),
            len(chunks),
            len(todo),
            time.monotonic() - started,
        )
        return objects

    def _build_chunk(self, chunk_dir: Path) -> str:
        # Checked as a whole by build(): a chunk names only the overlay's own folders.
        return self._run(chunk_dir)


def _go_env(limits: childproc.Limits) -> dict[str, str]:
    """kustomize's environment: a build is short-lived, so Go's collector may wait longer
    (GOGC=400: ~20% less CPU, ~0.1 s less when a plan runs two builds on two cores, at
    ~1.3x the memory), within GOMEMLIMIT (childproc). A GOGC the user set wins."""
    return childproc.go_env({"GOGC": "400", **os.environ}, limits)


def parse_objects(text: str, display: str) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise RenderError(f"{display}: rendered output is not YAML: {exc}") from exc
    out = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise RenderError(f"{display}: rendered a document that is not an object.")
        out.append(doc)
    return out


def render(overlay_dir: Path) -> list[dict[str, Any]]:
    return Kustomize().build(overlay_dir)
