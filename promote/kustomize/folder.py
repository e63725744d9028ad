"""An overlay folder on disk: which kustomization file it has, its images, resources, apps,
and every repository path its render reads (:func:`input_paths`, the basis of a change's scope).

The few reads of an overlay's files; the text itself is parsed and edited by the pure
:mod:`promote.kustomize.overlay`. Errors name the folder and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from promote import config
from promote.config import schema
from promote.errors import ConfigError
from promote.kustomize import overlay, realpaths
from promote.kustomize.overlay import KUSTOMIZATION_NAMES
from promote.promotion import scope

# libyaml when present: a 100-app layout has 200 kustomizations, read for every environment
# on both sides of a change (the pure-Python loader took 1 s of each `promote merge`).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def kustomization_path(overlay_dir: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        candidate = overlay_dir / name
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"{overlay_dir}: no kustomization.yaml; an overlay folder needs one listing its "
        "resources (see `promote init`)."
    )


def read_text(path: Path, display: str | None = None) -> str:
    """An overlay file's text (UTF-8, else a ConfigError naming the file)."""
    return schema.read_text(path, display or str(path))


def read_images(overlay_dir: Path) -> list[overlay.Image]:
    path = kustomization_path(overlay_dir)
    return overlay.parse_images(read_text(path), str(path))


def read_resources(overlay_dir: Path) -> list[str]:
    path = kustomization_path(overlay_dir)
    return overlay.parse_resources(read_text(path), str(path))


def list_apps(overlay_dir: Path) -> list[str]:
    """Apps of an overlay: base folders it includes (``../base/<app>``) and its images."""
    apps = {img.app for img in read_images(overlay_dir)}
    for res in read_resources(overlay_dir):
        parts = Path(res).parts
        if "base" in parts and parts.index("base") + 1 < len(parts):
            apps.add(parts[parts.index("base") + 1])
    return sorted(apps)


def input_paths(
    root: Path,
    overlay_dir: Path,
    *,
    known: Mapping[Path, frozenset[str]] | None = None,
    realpath: realpaths.Resolve = os.path.realpath,
) -> frozenset[str]:
    """Repository-relative paths an overlay's render reads: its folder (``dir/``) and, through
    every kustomization on the way, each folder or file a kustomization names (resources,
    components, bases, patches, generator files, replacements, ...).

    Over-approximates on purpose: any string in a kustomization that names an existing file
    or folder next to it counts, whatever its field. URLs and paths leaving ``root`` are not
    inputs here (the render sandbox refuses them); an unreadable kustomization still makes
    its folder an input. ``known``: the input paths of some folders (resolved), found by this
    function before on the same tree; they are not read again. ``realpath``: a
    ``realpaths.RealPaths`` shared with the render's other walks.
    """
    top = Path(realpath(root))
    seen: set[Path] = set()
    out: set[str] = set()

    def rel(path: Path) -> str | None:
        try:
            return path.relative_to(top).as_posix()
        except ValueError:
            return None

    def visit(folder: Path) -> None:
        folder = Path(realpath(folder))
        name = rel(folder)
        if folder in seen or name is None:
            return
        seen.add(folder)
        if known is not None and folder in known:
            out.update(known[folder])  # everything reachable from it: the same union
            return
        out.add("" if name == "." else f"{name}/")
        try:
            doc = yaml.load(kustomization_path(folder).read_text(encoding="utf-8"), _Loader)
        except (ConfigError, OSError, UnicodeDecodeError, yaml.YAMLError):
            return
        for value in _strings(doc):
            for candidate in {value, value.split("=", 1)[-1]}:  # generators: "key=path"
                target = Path(realpath(folder / candidate))
                if target.is_dir():
                    visit(target)
                elif target.is_file() and (found := rel(target)) is not None:
                    out.add(found)

    visit(overlay_dir)
    return frozenset(out)


def _strings(node: Any) -> Iterator[str]:
    """Every short, single-line string value below ``node`` that could be a local path."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str) and _maybe_path(node):
        yield node


def _maybe_path(text: str) -> bool:
    short = bool(text) and "\n" not in text and len(text) < 1024
    return short and "://" not in text and not text.startswith(("git@", "/"))


def layout(project: config.Project) -> scope.Layout:
    """Each environment's render inputs in ``project``'s tree (a checkout or an export).

    An environment whose file does not load (``Project.broken``) is in the layout too, so a
    change touching it is refused with its error rather than needing nobody's approval: its
    overlay's inputs when its file parsed, else the whole overlays folder (unknown overlay).
    """
    envs = tuple(project.pipeline(broken=True))
    inputs: dict[str, frozenset[str]] = {}
    for e in envs:
        known = project.environments.get(e) or project.unchecked.get(e)
        if known is not None and known.overlay_dir.is_dir():
            inputs[e] = input_paths(project.root, known.overlay_dir)
        else:
            inputs[e] = frozenset({scope.OVERLAYS_ROOT})
    return scope.Layout(envs, inputs)
