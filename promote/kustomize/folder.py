"""An overlay folder on disk: which kustomization file it has, its images, resources, apps.

The few reads of an overlay's files; the text itself is parsed and edited by the pure
:mod:`promote.kustomize.overlay`. Errors name the folder and how to fix it.
"""

from __future__ import annotations

from pathlib import Path

from promote.config import schema
from promote.errors import ConfigError
from promote.kustomize import overlay
from promote.kustomize.overlay import KUSTOMIZATION_NAMES


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
