"""Read and edit an overlay's ``kustomization.yaml``: its ``images:`` entries and resources.

Edits are surgical: libyaml composes the file to find where each value sits, and only those
bytes change, so comments, key order, quoting and indentation stay exactly as the user wrote
them and a promotion's diff touches only the changed lines. This module owns the overlay file;
it does not render (``render.py``) and does not touch secrets' contents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import yaml

from promote.config import schema
from promote.errors import ConfigError
from promote.kustomize import reference

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NULL_TAG = "tag:yaml.org,2002:null"


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

    def problems(self) -> list[tuple[str, str]]:
        """``(field, why)`` for every value outside the OCI reference grammar."""
        return entry_problems({"name": self.name, **self.fields()})


_CHECKS = {
    "name": reference.name_problem,
    "newName": reference.name_problem,
    "newTag": reference.tag_problem,
    "digest": reference.digest_problem,
}


def entry_problems(entry: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """``(field, why)`` for each value of one ``images:`` entry that is not an image name, tag
    or digest as its field needs (None is an absent field)."""
    found = []
    for key, check in _CHECKS.items():
        value = entry.get(key)
        problem = check(value) if value is not None else None
        if problem is not None:
            found.append((key, problem))
    return found


def check_image(image: Image, display: str) -> None:
    """Refuse (:class:`ConfigError`) an image whose values are not valid references."""
    problems = image.problems()
    if problems:
        what = "; ".join(f"{key}: {why}" for key, why in problems)
        raise ConfigError(
            f"{display}: images entry {image.name!r}: {what}. promote writes only valid "
            "image references; fix the value where it came from."
        )


def parse_images(text: str, display: str = "kustomization.yaml") -> list[Image]:
    """The ``images:`` entries of a kustomization text, values as written (``1.10`` stays
    "1.10", not the float 1.1; ``null``, ``~`` or nothing is None)."""
    return [
        Image(
            name=entry["name"] or "",
            new_name=entry.get("newName"),
            new_tag=entry.get("newTag"),
            digest=entry.get("digest"),
        )
        for entry in image_entries(text, display)
    ]


def image_entries(text: str, display: str = "kustomization.yaml") -> list[dict[str, str | None]]:
    """Every ``images:`` entry as ``{key: value as written, or None for a YAML null}``.

    libyaml composes the document (fast: a 100-image overlay in milliseconds); node tags say
    what is null, node values keep the text as written. Keys other than the four we know are
    kept too, so callers can tell an entry they do not understand.
    """
    seq = _images_node(_compose(text, display), display)
    if not isinstance(seq, yaml.SequenceNode):  # no `images:`, or `images:` with nothing
        return []
    out = []
    for i, item in enumerate(seq.value):
        entry: dict[str, str | None] = {}
        for key, value in item.value if isinstance(item, yaml.MappingNode) else ():
            if not isinstance(value, yaml.ScalarNode):
                raise ConfigError(
                    f"{display}: images[{i}].{key.value} must be a single value (a string); "
                    "fix the entry."
                )
            entry[str(key.value)] = None if _is_null(value) else str(value.value)
        if entry.get("name") is None:
            raise ConfigError(f"{display}: images[{i}]: each entry needs a `name`; add it.")
        out.append(entry)
    return out


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def parse_resources(text: str, display: str = "kustomization.yaml") -> list[str]:
    """The ``resources:`` entries of a kustomization's text (non-strings skipped)."""
    found = _field(_compose(text, display), "resources")
    items = found[1].value if found and isinstance(found[1], yaml.SequenceNode) else []
    return [str(i.value) for i in items if isinstance(i, yaml.ScalarNode)]


# --- surgical edits ---------------------------------------------------------------------------


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


class _Edits:
    """Replacements by character offset into one text, applied together (offsets stay valid)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0]
        for line in text.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self._spans: dict[int, tuple[int, str]] = {}  # start -> (end, replacement)
        self._inserts: dict[int, list[str]] = {}

    def replace(self, start: int, end: int, value: str) -> None:
        self._spans[start] = (end, value)

    def delete_line(self, line: int) -> None:
        self._spans[self.line_starts[line]] = (self.line_starts[line + 1], "")

    def insert_after_line(self, line: int, new_line: str) -> None:
        at = self.line_starts[min(line + 1, len(self.line_starts) - 1)]
        self._inserts.setdefault(at, []).append(new_line + "\n")

    def apply(self) -> str:
        text = self.text
        if self._inserts and len(text) in self._inserts and text and not text.endswith("\n"):
            self._inserts[len(text)].insert(0, "\n")
        for at in sorted(set(self._spans) | set(self._inserts), reverse=True):
            end, value = self._spans.get(at, (at, ""))
            text = text[:at] + "".join(self._inserts.get(at, ())) + value + text[end:]
        return text


def set_image(text: str, image: Image, display: str = "kustomization.yaml") -> str:
    """Return ``text`` with the entry for ``image.name`` set to exactly ``image``'s fields.

    Fields that ``image`` leaves ``None`` are removed from the entry; an entry that does not
    exist is appended (and an ``images:`` list created if needed). Nothing else changes.
    """
    return set_images(text, [image], display)


def set_images(text: str, images: Iterable[Image], display: str = "kustomization.yaml") -> str:
    """:func:`set_image` for many images with one parse (libyaml: 100 entries in milliseconds).

    Every value is replaced where it is written, in the quoting style it is written in; added
    keys take the indentation of the entry's ``name``; added entries that of the first entry.
    """
    root = _compose(text, display)
    seq = _images_node(root, display)
    entries: dict[str, yaml.MappingNode] = {}
    for item in seq.value if isinstance(seq, yaml.SequenceNode) else ():
        name = _field(item, "name")
        if name is not None and isinstance(name[1], yaml.ScalarNode):
            entries.setdefault(str(name[1].value), item)
    edits = _Edits(text)
    added = []
    for image in {i.name: i for i in images}.values():
        check_image(image, display)  # issue 13, finding 7: never write a value that is not one
        item = entries.get(image.name)
        if item is None:
            added.append(image)
        else:
            _edit_entry(edits, item, image, display)
    if added:
        _append_entries(edits, root, seq, added, display)
    return edits.apply()


def _compose(text: str, display: str) -> yaml.MappingNode | None:
    try:
        root = schema.compose_checked(text, display)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display}: not valid YAML ({exc}); fix the file.") from exc
    if root is not None and not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{display}: expected a mapping (a Kustomization); fix the file.")
    return root


def _field(node: yaml.Node | None, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return found[-1] if found else None


def _images_node(root: yaml.MappingNode | None, display: str) -> yaml.Node | None:
    """The value of ``images:`` (None when there is no such key)."""
    found = _field(root, "images") if root is not None else None
    if found is None:
        return None
    if not (isinstance(found[1], yaml.SequenceNode) or _is_null(found[1])):
        raise ConfigError(f"{display}: images: must be a list of {{name, newTag}} entries.")
    return found[1]


def _edit_entry(edits: _Edits, item: yaml.MappingNode, image: Image, display: str) -> None:
    where = f"{display}: images entry {image.name!r}"
    if item.flow_style:
        raise ConfigError(
            f"{where} is written in flow style ({{...}}); write it as a block mapping so "
            "promote can edit it in place."
        )
    pairs = {k.value: (k, v) for k, v in item.value if isinstance(k, yaml.ScalarNode)}
    key_col = pairs["name"][0].start_mark.column
    last_line = max(k.start_mark.line for k, _ in item.value)
    for key, want in image.fields().items():
        if key not in pairs:
            if want is not None:
                edits.insert_after_line(last_line, " " * key_col + f"{key}: {_quote(want, '')}")
            continue
        k, v = pairs[key]
        one_line = isinstance(v, yaml.ScalarNode) and v.end_mark.line == k.start_mark.line
        if not one_line or v.style in ("|", ">"):
            raise ConfigError(f"{where}: write {key} on one line, as `{key}: value`.")
        if want is None:
            if k.start_mark.line == item.start_mark.line or k.start_mark.column != key_col:
                raise ConfigError(f"{where}: write `name` first, each key on its own line.")
            edits.delete_line(k.start_mark.line)
        elif (None if _is_null(v) else v.value) != want:
            start, end = v.start_mark.index, v.end_mark.index
            edits.replace(start, end, (" " if start == end else "") + _quote(want, v.style or ""))


def _append_entries(
    edits: _Edits,
    root: yaml.MappingNode | None,
    seq: yaml.Node | None,
    images: list[Image],
    display: str,
) -> None:
    items = seq.value if isinstance(seq, yaml.SequenceNode) else []
    if isinstance(seq, yaml.SequenceNode) and seq.flow_style:
        raise ConfigError(
            f"{display}: images: is a flow list ([...]); write it as a block list "
            "(`- name: ...` lines) so promote can add entries."
        )
    key_col = 2
    if items:
        name = _field(items[0], "name")
        key_col = name[0].start_mark.column if name else 2
        last = items[-1]
        nodes = [k for k, _ in last.value] if isinstance(last, yaml.MappingNode) else []
        after = max((k.start_mark.line for k in nodes), default=last.start_mark.line)
    elif seq is not None:  # `images:` with nothing after it
        after, key_col = _field(root, "images")[0].start_mark.line, 2  # type: ignore[index]
    else:
        after = len(edits.line_starts) - 1  # the end of the file
        edits.insert_after_line(after, "images:")
    dash_col = max(key_col - 2, 0)
    for image in images:
        body = [f"name: {_quote(image.name, '')}"] + [
            f"{k}: {_quote(v, '')}" for k, v in image.fields().items() if v is not None
        ]
        edits.insert_after_line(after, " " * dash_col + "- " + body[0])
        for line in body[1:]:
            edits.insert_after_line(after, " " * key_col + line)


def add_resource(text: str, resource: str, display: str = "kustomization.yaml") -> str:
    """Return ``text`` with ``resource`` appended to ``resources:`` (unchanged if present)."""
    found = _field(_compose(text, display), "resources")
    items = found[1].value if found and isinstance(found[1], yaml.SequenceNode) else []
    if resource in [str(i.value) for i in items if isinstance(i, yaml.ScalarNode)]:
        return text
    edits = _Edits(text)
    if found is None:
        edits.insert_after_line(len(edits.line_starts) - 1, "resources:")
        edits.insert_after_line(len(edits.line_starts) - 1, f"- {resource}")
        return edits.apply()
    seq = found[1]
    if items and isinstance(seq, yaml.SequenceNode) and not seq.flow_style:
        last = items[-1]
        edits.insert_after_line(
            last.end_mark.line, " " * (last.start_mark.column - 2) + f"- {resource}"
        )
        return edits.apply()
    raise ConfigError(
        f"{display}: resources: is written in flow style or empty; write it as a block list."
    )
