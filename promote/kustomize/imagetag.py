"""Kustomize's ``images:`` transformer in Python (pure), so one render serves many image lists.

Why: kustomize runs its image transformer once per ``images:`` entry, and each run walks every
resource (``LegacyFilter``); an overlay with 100 images and 200 objects takes ~2 s to build,
against ~0.35 s without its ``images:``. A promotion needs the target rendered twice (before
and after) and the two differ only in ``images:``. So the engine renders the overlay once with
its ``images:`` removed (:func:`split`) and applies each image list here (:func:`apply`).

This is a faithful port of sigs.k8s.io/kustomize/api (v0.18-v0.20; kustomize v5.5-v5.7):
``filters/imagetag`` (``LegacyFilter``: every ``image`` in a list under any ``containers`` or
``initContainers`` key, at any depth; then the default ``FsSlice`` paths) and
``internal/image`` (``IsImageMatched``, ``Split``). The overlay's image transformer runs after
its patches, namespace, labels and replicas and before its replacements, so applying it to the
rendered result is exact unless something runs after it or changes where it looks:
:func:`split` declines overlays with ``replacements``, ``transformers``, ``validators``,
``vars``, ``configurations``, ``crds`` or an entry it does not know, and :func:`apply` raises
:class:`NotEmulated` for objects it cannot treat exactly as kustomize would (image volumes,
whose field paths differ between kustomize versions; non-string images; lists that are not
lists of mappings). The caller then renders with kustomize itself. The equivalence is tested
against the real binary (``tests/integration/test_imagetag_kustomize.py``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from promote.config import schema
from promote.kustomize import overlay

# Fields that run after the image transformer or change where it looks: keep kustomize's.
BLOCKERS = ("replacements", "transformers", "validators", "vars", "configurations", "crds")
_KEYS = {"name", "newName", "newTag", "digest"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9._/:-]+")  # RE2 and Python read these alike
_TAG = r"(:[a-zA-Z0-9_.{}-]*)?(@sha256:[a-zA-Z0-9_.{}-]*)?"
_FIELDS = ("containers", "initContainers")
_FS_PREFIXES = (("spec",), ("spec", "template", "spec"))  # default FsSlice paths' parents
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STRING_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:null")


class NotEmulated(Exception):
    """This overlay or object is outside what :func:`apply` reproduces exactly."""


@dataclass(frozen=True, slots=True)
class ImageTag:
    """One ``images:`` entry as kustomize reads it (empty string = not set)."""

    name: str
    new_name: str = ""
    new_tag: str = ""
    digest: str = ""

    def matches(self) -> re.Pattern[str]:
        # kustomize builds "^" + name + ... without escaping: "." in a name is a wildcard.
        return re.compile(self.name + _TAG)

    def transform(self, value: str) -> str:
        """``imageTagUpdater.SetImageValue`` for a value that matched."""
        name, tag, digest = split_image(value)
        if self.new_name:
            name = self.new_name
        if self.new_tag and self.digest:
            tag, digest = self.new_tag, self.digest
        elif self.new_tag:
            tag, digest = self.new_tag, ""
        elif self.digest:
            tag, digest = "", self.digest
        if tag:
            name += ":" + tag
        if digest:
            name += "@" + digest
        return name


@dataclass(frozen=True)
class Split:
    """A kustomization with its ``images:`` removed, and those images."""

    text: str
    images: tuple[ImageTag, ...]


def split(text: str, display: str) -> Split | None:
    """``text`` without its top-level ``images:`` and the entries; None when not exact.

    The entry is cut out of the text by its line span (nothing else is re-serialised, so
    every other value reaches kustomize byte for byte).
    """
    try:
        root = schema.compose_checked(text, display)
    except yaml.YAMLError:
        return None  # kustomize will say what is wrong
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    keys = [k.value for k, _ in root.value if isinstance(k, yaml.ScalarNode)]
    if any(b in keys for b in BLOCKERS) or keys.count("images") != 1:
        return None
    index = keys.index("images")
    key_node, value_node = root.value[index]
    if not all(_plain_strings(item) for item in getattr(value_node, "value", ())):
        return None  # kustomize refuses `newTag: 1.10` (a number); let it say so
    entries = overlay.image_entries(text, display)
    if any(set(e) - _KEYS or not _SAFE_NAME.fullmatch(e["name"] or "") for e in entries):
        return None
    lines = text.splitlines(keepends=True)
    start = key_node.start_mark.line
    if key_node.start_mark.column != 0:
        return None
    nxt = root.value[index + 1][0] if index + 1 < len(root.value) else None
    end = nxt.start_mark.line if nxt is not None else len(lines)
    if nxt is not None and nxt.start_mark.column != 0:
        return None
    if value_node.end_mark.line > end:
        return None
    stripped = "".join(lines[:start] + lines[end:])
    images = tuple(
        ImageTag(
            name=e["name"] or "",
            new_name=e.get("newName") or "",
            new_tag=e.get("newTag") or "",
            digest=e.get("digest") or "",
        )
        for e in entries
    )
    return Split(stripped, images)


def _plain_strings(item: yaml.Node) -> bool:
    """An entry whose values kustomize reads as strings (quoted, plain text, or null)."""
    return isinstance(item, yaml.MappingNode) and all(
        isinstance(v, yaml.ScalarNode) and v.tag in _STRING_TAGS for _, v in item.value
    )


def apply(objects: Sequence[dict[str, Any]], images: Sequence[ImageTag]) -> list[dict[str, Any]]:
    """``objects`` with ``images`` applied in order, as kustomize's transformer does.

    An object the images change is a copy; one they leave alone is returned as it is, so the
    result shares structure with ``objects`` (callers copy before they edit, as ``diff`` does).
    Per entry, kustomize runs the legacy walk over every resource and then the field-spec
    paths; an image reached by both is updated twice (the update is idempotent, but we keep
    the count so the port stays literal).
    """
    compiled = [(tag, tag.matches()) for tag in images]
    out = []
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition" and _transform(obj, compiled, dry=True):
            obj = copy.deepcopy(obj)
            _transform(obj, compiled, dry=False)
        out.append(obj)
    return out


def _transform(
    obj: dict[str, Any], compiled: list[tuple[ImageTag, re.Pattern[str]]], *, dry: bool
) -> bool:
    """Apply the images to ``obj`` (unless ``dry``); whether any image value changes."""
    changed = False
    for holder, passes in _image_slots(obj):
        value = original = holder["image"]
        for tag, pattern in compiled:
            for _ in range(passes):
                if pattern.fullmatch(value):
                    value = tag.transform(value)
        changed = changed or value != original
        if not dry:
            holder["image"] = value
    return changed


def _image_slots(obj: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """Each container mapping whose ``image`` the transformer visits, and how many times."""
    counts: dict[int, tuple[dict[str, Any], int]] = {}
    for holder in _legacy_holders(obj):
        counts[id(holder)] = (holder, 1)
    for prefix in _FS_PREFIXES:
        node: Any = obj
        for part in prefix:
            node = node.get(part)
            if node is None:
                break
            if not isinstance(node, dict):
                raise NotEmulated(f"{part} is not a mapping")  # kustomize stops with an error
        if node is None:
            continue
        volumes = node.get("volumes")
        if isinstance(volumes, list) and any(isinstance(v, dict) and "image" in v for v in volumes):
            raise NotEmulated("image volumes")  # a path only some kustomize versions know
        for field in _FIELDS:
            items = node.get(field)
            if items is not None and not isinstance(items, list):
                raise NotEmulated(f"{field} is not a list")
            for holder in items or ():
                if "image" in holder:  # a list item that is not a mapping raised above
                    seen = counts.get(id(holder))
                    counts[id(holder)] = (holder, (seen[1] if seen else 0) + 1)
    for holder, _ in counts.values():
        if not isinstance(holder["image"], str):
            raise NotEmulated("an image that is not a string")
    return list(counts.values())


def _legacy_holders(node: Any) -> Iterator[dict[str, Any]]:
    """``LegacyFilter``: list items under any ``containers``/``initContainers`` key."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _legacy_holders(value)
            if key in _FIELDS and isinstance(value, list):
                for item in value:
                    if not isinstance(item, dict):
                        raise NotEmulated(f"a {key} item that is not a mapping")
                    if "image" in item:
                        yield item
    elif isinstance(node, list):
        for item in node:
            yield from _legacy_holders(item)


def split_image(image: str) -> tuple[str, str, str]:
    """``image.Split``: name, tag and digest of ``[host[:port]/]path[:tag][@digest]``."""
    slash = image.find("/")
    search = image[slash:] if slash > 0 else image
    slash = slash if slash > 0 else 0
    at, colon = search.find("@"), search.find(":")
    if colon < 0 and at < 0:
        return image, "", ""
    if at >= 0 and (at < colon or colon < 0):
        return image[: at + slash], "", image[at + slash + 1 :]
    if at >= 0 and colon >= 0:
        return (
            image[: colon + slash],
            image[colon + slash + 1 : at + slash],
            image[at + slash + 1 :],
        )
    return image[: colon + slash], image[colon + slash + 1 :], ""
