"""Split a large overlay into kustomize builds that each stay small (issue 19).

Owns one decision and its files: whether an overlay may be built in chunks, and the chunk
kustomizations written into a scratch folder. It runs no kustomize itself (render.py does).

Why: ``kustomize build`` is quadratic in the objects of one build. Every object appended is
checked against every object already there (``resmap.Append`` re-reads each one's id from
its YAML), and the name-reference pass scans every candidate object for every reference
field (kustomize issue #5084; the fixes proposed upstream, #5081 and #5481, are not merged).
Profiled with kustomize's own library (v0.20.1): 1,000 objects take 2.7 s of CPU, 4,000
objects 100 s (46 s accumulating, of which 23 s in ``Append``; 37 s in name references);
10,000 did not finish in 10 minutes. The layout of files does not matter, the count of
objects in one build does.

When chunks are exact: the overlay's kustomization is only a list of folders (per-app
overlays or bases: ``resources: [app1/, app2/, ...]``, nothing else), and no kustomization
under it renames or moves anything (no name prefix or suffix, generator, namespace, patch,
replacement, component or plugin; see ``_PLAIN``). Then the name-reference pass of the
whole build changes nothing, and the whole build is the union of its folders' builds: each
chunk of folders is built on its own, chunks in parallel, and the duplicate check the whole
build would have made is made here on the union. Output order differs from one build; the
agent orders objects itself (``cluster.apply.prepare``). Any other overlay is built as one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from promote.errors import RenderError
from promote.kustomize.overlay import KUSTOMIZATION_NAMES

#: Folders per chunk: ~64 apps of a few objects each is a few hundred objects, where
#: kustomize's quadratic terms are still small next to its start-up (~50 ms).
CHUNK_FOLDERS = 64
#: Fields of a kustomization that never rename an object or move it to another namespace.
_PLAIN = frozenset(
    {"apiVersion", "kind", "metadata", "resources", "labels", "commonLabels", "commonAnnotations"}
)
_TOP = frozenset({"apiVersion", "kind", "metadata", "resources"})
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def plan(overlay_dir: Path, *, chunk: int = CHUNK_FOLDERS) -> list[list[Path]] | None:
    """The overlay's folders in chunks, or None when it must be built as one (see module)."""
    top = _load(overlay_dir)
    if top is None or not set(top) <= _TOP:
        return None
    entries = top.get("resources")
    if not isinstance(entries, list) or len(entries) <= chunk:
        return None  # small enough for one build
    folders = []
    for entry in entries:
        if not isinstance(entry, str):
            return None
        folder = Path(os.path.normpath(overlay_dir / entry))
        if not folder.is_dir():
            return None  # a file at the top: kustomize's restrictor ties it to the overlay
        folders.append(folder)
    seen: set[Path] = set()
    if not all(_plain(f, seen) for f in folders):
        return None
    return [folders[i : i + chunk] for i in range(0, len(folders), chunk)]


def write_chunks(chunks: Sequence[Sequence[Path]], scratch: Path) -> list[Path]:
    """One kustomization per chunk under ``scratch``, naming its folders by relative path
    (kustomize's load restrictor allows bases anywhere; files stay under their folder)."""
    out = []
    for i, folders in enumerate(chunks):
        where = scratch / f"chunk-{i:04d}"
        where.mkdir(parents=True)
        lines = "".join(f"- {os.path.relpath(f, where)}\n" for f in folders)
        (where / "kustomization.yaml").write_text("resources:\n" + lines)
        out.append(where)
    return out


def check_unique(objects: Iterable[dict[str, Any]], display: str) -> None:
    """The whole build's duplicate check, on the union of the chunks' objects."""
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        ident = (group, str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))
        if ident in seen:
            raise RenderError(
                f"{display}: two of its folders define {ident[1]} {ident[2] or '-'}/{ident[3]}; "
                "kustomize refuses an id registered twice.",
                hint="Keep each object in one folder of the overlay.",
            )
        seen.add(ident)


def _plain(folder: Path, seen: set[Path]) -> bool:
    """Whether every kustomization from ``folder`` down uses only ``_PLAIN`` fields."""
    if folder in seen:
        return True
    seen.add(folder)
    data = _load(folder)
    if data is None or not set(data) <= _PLAIN:
        return False
    entries = data.get("resources") or []
    if not isinstance(entries, list):
        return False
    for entry in entries:
        if not isinstance(entry, str):
            return False
        target = Path(os.path.normpath(folder / entry))
        if target.is_dir() and not _plain(target, seen):
            return False
    return True


def _load(folder: Path) -> dict[str, Any] | None:
    for name in KUSTOMIZATION_NAMES:
        path = folder / name
        if path.is_file():
            try:
                data = yaml.load(path.read_bytes(), Loader=_Loader)
            except yaml.YAMLError:
                return None  # the one build reports it, with kustomize's words
            return data if isinstance(data, dict) else None
    return None
