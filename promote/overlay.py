"""Read and edit an overlay's ``kustomization.yaml``: its ``images:`` entries and resources.

Edits are surgical: ruamel.yaml parses the file to find where each value sits, and only those
bytes change, so comments, key order, quoting and indentation stay exactly as the user wrote
them and a promotion's diff touches only the changed lines. This module owns the overlay file;
it does not render (``render.py``) and does not touch secrets' contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from promote.errors import ConfigError

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass(frozen=True, slots=True)
class Image:
    """One ``images:`` entry: kustomize replaces ``name`` with ``newName:newTag@digest``."""

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None

    @property
    def app(self) -> str:
        """The app an image belongs to: the last path segment of its name."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def ref(self) -> str:
        """What the image resolves to, e.g. ``registry/web-app:v2.4.1`` (for people)."""
        base = self.new_name or self.name
        if self.new_tag:
            base += f":{self.new_tag}"
        if self.digest:
            base += f"@{self.digest}"
        return base

    @property
    def version(self) -> str:
        """The tag and/or digest: what a promotion moves."""
        parts = [self.new_tag or ""]
        if self.digest:
            parts.append(self.digest)
        return "@".join(p for p in parts if p) or "(untagged)"

    def fields(self) -> dict[str, str | None]:
        return {"newName": self.new_name, "newTag": self.new_tag, "digest": self.digest}


def kustomization_path(overlay_dir: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        candidate = overlay_dir / name
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"{overlay_dir}: no kustomization.yaml; an overlay folder needs one listing its "
        "resources (see `promote init`)."
    )


def _load(text: str, display: str) -> CommentedMap:
    try:
        data = YAML(typ="rt").load(text)
    except Exception as exc:  # ruamel raises many types; all mean "not YAML"
        raise ConfigError(f"{display}: not valid YAML ({exc}); fix the file.") from exc
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError(f"{display}: expected a mapping (a Kustomization); fix the file.")
    return data


def _load_strings(text: str) -> Any:
    """The same document with every scalar as the string written (``newTag: 1.10`` stays
    "1.10"; the round-trip loader would read the float 1.1)."""
    return YAML(typ="base").load(text)


def _images_seq(data: CommentedMap, display: str) -> CommentedSeq | None:
    images = data.get("images")
    if images is None:
        return None
    if not isinstance(images, CommentedSeq):
        raise ConfigError(f"{display}: images: must be a list of {{name, newTag}} entries.")
    return images


def parse_images(text: str, display: str = "kustomization.yaml") -> list[Image]:
    data = _load(text, display)
    typed: list[Any] = list(_images_seq(data, display) or [])
    raw = _written_images(text)
    out = []
    for i, (item, written) in enumerate(zip(typed, raw, strict=False)):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{display}: images[{i}]: each entry needs a `name`; add it.")
        out.append(
            Image(
                name=str(written["name"]),
                new_name=_as_written(item, written, "newName"),
                new_tag=_as_written(item, written, "newTag"),
                digest=_as_written(item, written, "digest"),
            )
        )
    return out


def _written_images(text: str) -> list[dict[str, Any]]:
    raw = (_load_strings(text) or {}).get("images") or []
    return [r if isinstance(r, dict) else {} for r in raw]


def _as_written(typed: dict[str, Any], written: dict[str, Any], key: str) -> str | None:
    """The value as the user wrote it (``1.10`` stays "1.10"), None when YAML says null."""
    if typed.get(key) is None:
        return None
    return str(written.get(key))


def read_images(overlay_dir: Path) -> list[Image]:
    path = kustomization_path(overlay_dir)
    return parse_images(path.read_text(encoding="utf-8"), str(path))


def read_resources(overlay_dir: Path) -> list[str]:
    path = kustomization_path(overlay_dir)
    data = _load(path.read_text(encoding="utf-8"), str(path))
    return [str(r) for r in (data.get("resources") or [])]


def list_apps(overlay_dir: Path) -> list[str]:
    """Apps of an overlay: base folders it includes (``../base/<app>``) and its images."""
    apps = {img.app for img in read_images(overlay_dir)}
    for res in read_resources(overlay_dir):
        parts = Path(res).parts
        if "base" in parts and parts.index("base") + 1 < len(parts):
            apps.add(parts[parts.index("base") + 1])
    return sorted(apps)


# --- surgical edits ---------------------------------------------------------------------------

_PLAIN_END = re.compile(r"\s+#|\s*$")


def _scalar_span(line: str, col: int) -> tuple[int, int, str]:
    """(start, end, quote) of the scalar starting at ``col`` on a single line."""
    ch = line[col] if col < len(line) else ""
    if ch in ("'", '"'):
        i = col + 1
        while i < len(line):
            if line[i] == ch:
                if ch == "'" and i + 1 < len(line) and line[i + 1] == "'":
                    i += 2
                    continue
                return col, i + 1, ch
            if ch == '"' and line[i] == "\\":
                i += 1
            i += 1
        raise ConfigError("a quoted image value spans several lines; put it on one line.")
    match = _PLAIN_END.search(line, col)
    end = match.start() if match else len(line)
    return col, end, ""


def _quote(value: str, quote: str) -> str:
    if quote == "'":
        return "'" + value.replace("'", "''") + "'"
    if quote == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # Plain style unless YAML would read it as something other than this string.
    plain_ok = re.fullmatch(r"[A-Za-z0-9_./@:+-]+", value) and not re.fullmatch(
        r"[-+]?(\d[\d_]*(\.\d*)?([eE][-+]?\d+)?|\.inf|\.nan|true|false|yes|no|on|off|null|~)",
        value,
        flags=re.IGNORECASE,
    )
    if plain_ok and not value.startswith(("@", "-", ":")):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_image(text: str, image: Image, display: str = "kustomization.yaml") -> str:
    """Return ``text`` with the entry for ``image.name`` set to exactly ``image``'s fields.

    Fields that ``image`` leaves ``None`` are removed from the entry; an entry that does not
    exist is appended (and an ``images:`` list created if needed). Nothing else changes.
    """
    data = _load(text, display)
    images = _images_seq(data, display)
    lines = text.splitlines(keepends=True)
    want = {k: v for k, v in image.fields().items()}
    raw = _written_images(text)
    if images is not None:
        for item, written in zip(images, raw, strict=False):
            if isinstance(item, CommentedMap) and str(written.get("name")) == image.name:
                if item.fa.flow_style():
                    raise ConfigError(
                        f"{display}: images entry {image.name!r} is written in flow style "
                        "({...}); write it as a block mapping so promote can edit it in place."
                    )
                return _edit_entry(lines, item, written, want)
    return _append_entry(text, data, images, image)


def _edit_entry(
    lines: list[str], item: CommentedMap, written: dict[str, str], want: dict[str, str | None]
) -> str:
    edits: list[tuple[int, str | None]] = []  # (line index, replacement line or None=delete)
    key_col = item.lc.key("name")[1]
    for key, value in want.items():
        if key in item:
            vline, vcol = item.lc.value(key)
            kline = item.lc.key(key)[0]
            if value is None:
                if kline != vline:
                    raise ConfigError(f"images entry {item['name']!r}: {key} spans lines.")
                edits.append((kline, None))
            elif _as_written(item, written, key) != value:
                line = lines[vline]
                start, end, quote = _scalar_span(line, vcol)
                edits.append((vline, line[:start] + _quote(value, quote) + line[end:]))
        elif value is not None:
            last_line = max(item.lc.key(k)[0] for k in item)
            indent = " " * key_col
            edits.append((last_line, f"+{indent}{key}: {_quote(value, '')}"))
    inserts: dict[int, list[str]] = {}
    for idx, repl in edits:
        if repl is not None and repl.startswith("+"):
            inserts.setdefault(idx, []).append(repl[1:])
            continue
        if repl is None:
            lines[idx] = ""
        else:
            lines[idx] = repl
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        for extra in inserts.get(i, []):
            if not line.endswith("\n"):
                out[-1] = line + "\n"
            out.append(extra + "\n")
    return "".join(out)


def _append_entry(text: str, data: CommentedMap, images: CommentedSeq | None, image: Image) -> str:
    body = [f"name: {_quote(image.name, '')}"] + [
        f"{k}: {_quote(v, '')}" for k, v in image.fields().items() if v is not None
    ]
    if not text.endswith("\n") and text:
        text += "\n"
    if images is not None and len(images) > 0:
        first = images[0]
        key_col = first.lc.key("name")[1] if isinstance(first, CommentedMap) else 2
        dash_col = max(key_col - 2, 0)
        last = images[-1]
        last_line = (
            max(last.lc.key(k)[0] for k in last)
            if isinstance(last, CommentedMap) and len(last)
            else images.lc.item(len(images) - 1)[0]
        )
        lines = text.splitlines(keepends=True)
        entry = [" " * dash_col + "- " + body[0]] + [" " * key_col + b for b in body[1:]]
        lines[last_line + 1 : last_line + 1] = [e + "\n" for e in entry]
        return "".join(lines)
    if images is not None:  # `images: []`
        raise ConfigError("images: is an empty flow list ([]); remove it so promote can add one.")
    entry = ["- " + body[0]] + ["  " + b for b in body[1:]]
    return text + "images:\n" + "".join(e + "\n" for e in entry)


def add_resource(text: str, resource: str, display: str = "kustomization.yaml") -> str:
    """Return ``text`` with ``resource`` appended to ``resources:`` (unchanged if present)."""
    data = _load(text, display)
    resources = data.get("resources")
    if resources is not None and resource in [str(r) for r in resources]:
        return text
    if not text.endswith("\n") and text:
        text += "\n"
    if isinstance(resources, CommentedSeq) and len(resources) and not resources.fa.flow_style():
        line, col = resources.lc.item(len(resources) - 1)
        lines = text.splitlines(keepends=True)
        lines.insert(line + 1, " " * (col - 2) + f"- {resource}\n")
        return "".join(lines)
    if resources is None:
        return text + f"resources:\n- {resource}\n"
    raise ConfigError(
        f"{display}: resources: is written in flow style or empty; write it as a block list."
    )
