"""What an overlay may read before kustomize runs: the repository, and pinned remote bases.

Owns the check of the kustomization tree (DESIGN.md §5, step 2; issue 14). kustomize follows
every ``resources:`` entry wherever it points: a URL it fetches (``http://…/base.yaml``, a
Git repository), a folder outside the repository (``../../../../../outside``), a link. Its own
load restrictor only keeps *files* (patches, generator inputs) under each kustomization's
folder, not bases. So before a build, this module walks the tree from the overlay, following
every field that names a path (resources, bases, components, crds, patches, generators,
transformers, validators, replacements, openapi, configMap/secret generator files) and refuses:

- a remote resource or base, unless ``render.remoteBases`` in promote.yaml lists its
  repository and the entry pins that commit (``?ref=<40-hex SHA>``), so Git history still
  says what was deployed; a plain URL (``http://…/x.yaml``) cannot be pinned and is refused;
- a path that leaves the repository (after following links);
- Helm charts (``helmCharts``: kustomize would download them) and plugins (a generator or
  transformer config whose kind is not built in runs an exec or Go plugin).

Errors name the kustomization file (repository-relative), the field and entry, and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promote import config
from promote.config import schema
from promote.errors import RenderError
from promote.kustomize import realpaths
from promote.kustomize.overlay import KUSTOMIZATION_NAMES

_SHA = re.compile(r"^[0-9a-f]{40}$")
# kustomize's remote specs: a scheme (https://, ssh://, git::…), scp-like git@host:…, or a
# host with a dot followed by a path (github.com/org/repo).
_REMOTE = re.compile(
    r"^([a-z][a-z0-9+.-]*::|[a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:|[\w-]+(\.[\w-]+)+/)", re.I
)
# Fields whose entries are paths (a string, or a list of strings); a folder is a kustomization.
_PATH_LISTS = (
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "patchesStrategicMerge",
)
_OBJECT_LISTS = ("patches", "patchesJson6902", "replacements")  # entries with a `path:`
_GENERATOR_LISTS = ("configMapGenerator", "secretGenerator")  # files/envs/env
_PLUGIN_LISTS = ("generators", "transformers", "validators")


@dataclass(frozen=True, slots=True)
class RemoteBase:
    """A remote base promote.yaml allows: its repository URL and the commit it is pinned to."""

    url: str
    ref: str


@dataclass(frozen=True, slots=True)
class Sandbox:
    """Where an overlay may read from: ``root`` (the repository) and ``remote`` bases."""

    root: Path
    remote: tuple[RemoteBase, ...] = ()

    def check(
        self, overlay_dir: Path, *, realpath: realpaths.Resolve = os.path.realpath
    ) -> list[Path]:
        """Walk the kustomization tree from ``overlay_dir``; RenderError on the first escape.

        Returns the folders the overlay reads (its own and every base and component), under
        ``root`` as given (not resolved), for callers that check what else they hold.
        ``realpath``: a ``realpaths.RealPaths`` shared with the render's other walks."""
        given = Path(self.root)
        root = Path(realpath(given))
        seen: set[Path] = set()
        todo = [Path(realpath(overlay_dir))]
        while todo:
            folder = todo.pop()
            if folder in seen:
                continue
            seen.add(folder)
            kz = _kustomization_file(folder)
            if kz is None:
                continue  # kustomize reports a folder without a kustomization itself
            display = _display(kz, root)
            data = _load(kz, display)
            for field, entry in _entries(data, display):
                local = folder / entry
                if not os.path.lexists(local) and _REMOTE.match(entry):
                    self._check_remote(display, field, entry)
                    continue
                target = Path(realpath(local))
                if not target.is_relative_to(root):
                    raise RenderError(
                        f"{display}: {field}: {entry!r} is outside the repository; promote "
                        "renders overlays only from the repository's own files.",
                        hint="Copy what it needs into the repository (e.g. overlays/base/), "
                        "or, for a remote base, list it in promote.yaml render.remoteBases.",
                    )
                if target.is_dir():
                    todo.append(target)
        return sorted(given / folder.relative_to(root) for folder in seen)

    def _check_remote(self, display: str, field: str, entry: str) -> None:
        base, _, query = entry.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        ref = params.get("ref") or params.get("version") or ""
        for allowed in self.remote:
            url = allowed.url.rstrip("/")
            if base == url or base.startswith((url + "/", url + ".git")):
                if ref == allowed.ref:
                    return
                raise RenderError(
                    f"{display}: {field}: {entry!r} is not pinned to the commit promote.yaml "
                    f"allows ({allowed.ref}); write ?ref={allowed.ref}.",
                )
        raise RenderError(
            f"{display}: {field}: {entry!r} is a remote resource; promote renders in a "
            "sandbox and fetches nothing that promote.yaml does not allow.",
            hint="Copy it into the repository, or allow a remote base pinned to a commit in "
            "promote.yaml's render.remoteBases (`render: {remoteBases: [{url: REPO_URL, ref: "
            "<40-hex commit SHA>}]}`) and reference it as REPO_URL//path?ref=<that SHA>.",
        )


def for_project(project: config.Project) -> Sandbox:
    """The sandbox of a project's overlays: its root and promote.yaml's render.remoteBases."""
    remote = tuple(RemoteBase(b.url, b.ref) for b in project.config.render.remote_bases)
    return Sandbox(project.root, remote)


def guess_root(overlay_dir: Path) -> Path:
    """The repository an overlay belongs to (for callers without a project): the nearest
    folder above it with promote.yaml, environments/ or .git, else its grandparent."""
    folder = Path(os.path.realpath(overlay_dir))
    for candidate in (folder, *folder.parents):
        if any((candidate / n).exists() for n in ("promote.yaml", "environments", ".git")):
            return candidate
    return folder.parent.parent


def _kustomization_file(folder: Path) -> Path | None:
    for name in KUSTOMIZATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _display(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _load(path: Path, display: str) -> dict[str, Any]:
    data, _ = schema.read_yaml(path, display)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"{display}: expected a mapping (a Kustomization); fix the file.")
    return data


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _entries(data: dict[str, Any], display: str) -> Iterator[tuple[str, str]]:
    """(field, path or URL) for every entry of a kustomization that names something to read."""
    if data.get("helmCharts") or data.get("helmChartInflationGenerator"):
        raise RenderError(
            f"{display}: helmCharts: promote does not inflate Helm charts (kustomize would "
            "download them); render the chart into the repository instead."
        )
    for field in _PATH_LISTS:
        for entry in _strings(data.get(field)):
            if "\n" not in entry:  # patchesStrategicMerge may hold an inline patch
                yield field, entry
    for field in _OBJECT_LISTS:
        for i, item in enumerate(_list(data.get(field))):
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                yield f"{field}[{i}].path", item["path"]
    for field in _GENERATOR_LISTS:
        for i, item in enumerate(_list(data.get(field))):
            if not isinstance(item, dict):
                continue
            for key in ("files", "envs", "env"):
                for entry in _strings(item.get(key)):
                    yield f"{field}[{i}].{key}", entry.partition("=")[2] or entry
    openapi = data.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield "openapi.path", openapi["path"]
    for field in _PLUGIN_LISTS:
        for entry in _strings(data.get(field)):
            if "\n" in entry:  # an inline plugin configuration
                raise RenderError(
                    f"{display}: {field}: inline plugin configurations are not allowed; "
                    "promote renders without plugins."
                )
            yield field, entry


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []
