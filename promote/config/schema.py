"""Typed YAML: read a configuration file with its line numbers, build frozen dataclasses.

Pure apart from reading the file. :func:`read_yaml` parses once with libyaml and keeps the node
tree, so an error can name the line of the field it is about (:func:`line_of`), and refuses
duplicate keys (PyYAML would silently keep the last). :func:`validate` builds a dataclass from
the data: generic over ``dataclasses.fields()`` and the type hints (resolved once per class),
camelCase YAML keys or the snake_case field names, ``X | None``, nested dataclasses, lists,
mappings (``dict[str, X]``), free-form values (``Any``, checked by the caller's rules),
``Literal``, ``bool``, ``int`` (``metadata["ge"]`` is a lower bound), ``str``, durations
(``timedelta``) and wall-clock times (``datetime``, no offset). Every problem becomes one
``file:line: field: message; fix.`` sentence, and all of a file's problems one
:class:`~promote.errors.ConfigError` paragraph.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from promote.errors import ConfigError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """Parse ``60s``, ``5m``, ``1h30m``, ``500ms`` (Go-style, as Flux and Argo CD write them)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    text = str(value).strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(
            f"{text!r} is not a duration; write a number with a unit, e.g. 30s, 5m, 1h or 1h30m"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


# --- reading YAML ---------------------------------------------------------------------------


def read_yaml(path: Path, display: str) -> tuple[Any, yaml.Node | None]:
    """The file's plain data and its PyYAML node tree (for line numbers), from one parse."""
    text = read_text(path, display)
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display}: not valid YAML ({exc}); fix the file.") from exc
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file
            return None, None
        check_aliases(node, display)
        _refuse_duplicate_keys(node, set())
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(
            f"{display}:{line}: not valid YAML ({exc.problem}); fix the syntax at that line."
        ) from exc
    except yaml.YAMLError as exc:  # ReaderError: a control character, not a syntax mark
        raise ConfigError(f"{display}: not valid YAML ({exc}); remove that character.") from exc
    finally:
        loader.dispose()


# A YAML document's size once its aliases are expanded, in nodes. PyYAML shares an alias's
# object instead of copying it, but whatever walks or serialises the data later pays for every
# expansion: a 9-level "billion laughs" is 9**9 nodes from a few hundred bytes (issue 14).
MAX_EXPANDED_NODES = 100_000


def check_aliases(node: yaml.Node, display: str) -> None:
    """Refuse a document whose aliases expand past :data:`MAX_EXPANDED_NODES` nodes."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a recursive alias counts once (PyYAML builds a cycle)
        total = 1
        if isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total += sum(size(v) for v in n.value)
        sizes[id(n)] = total
        return total

    stack: list[yaml.Node] = [node]  # sizes bottom-up without deep recursion on deep files
    order: list[yaml.Node] = []
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        order.append(n)
        if isinstance(n, yaml.MappingNode):
            stack.extend(x for kv in n.value for x in kv)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    for n in reversed(order):
        if size(n) > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{display}:{n.start_mark.line + 1}: YAML aliases expand this document past "
                f"{MAX_EXPANDED_NODES} nodes (an alias bomb?); write the values out instead "
                "of nesting anchors (&) and aliases (*)."
            )


def compose_checked(text: str, display: str) -> yaml.Node | None:
    """One YAML document's node tree, with its aliases bounded (:func:`check_aliases`)."""
    node = yaml.compose(text, Loader=_Loader)
    if node is not None:
        check_aliases(node, display)
    return node


def read_text(path: Path, display: str) -> str:
    """A configuration file's text: UTF-8, or a ConfigError naming the file and the byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read the file ({exc.strerror}).") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{display}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8."
        ) from exc


def _refuse_duplicate_keys(node: yaml.Node, seen: set[int]) -> None:
    """PyYAML silently keeps the last of two equal keys; a config file must not have them."""
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    keys: set[str] = set()
    for item in node.value if isinstance(node, yaml.CollectionNode) else []:
        key, value = item if isinstance(node, yaml.MappingNode) else (None, item)
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in keys:
                raise yaml.constructor.ConstructorError(
                    problem=f"found duplicate key {key.value!r}", problem_mark=key.start_mark
                )
            keys.add(key.value)
        _refuse_duplicate_keys(value, seen)


def line_of(node: yaml.Node | None, loc: Iterable[int | str]) -> int | None:
    """Best line number (1-based) for a field location: that of the deepest key or item found."""
    line = None
    for part in loc:
        key = None
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
            key, node = pairs[-1] if pairs else (None, None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            key = node = node.value[part] if part < len(node.value) else None
        if key is None:
            break
        line = key.start_mark.line + 1
    return line


# --- validating -----------------------------------------------------------------------------
# Generic over dataclasses: driven by dataclasses.fields() and the type hints, which
# are resolved once per class; a field's ``metadata["ge"]`` is a lower bound. Each problem becomes
# (location, message, fix); the location is the path of YAML keys and list indices as written
# in the file (``sync.ignore.0.paths``).

_T = TypeVar("_T")
_Loc = tuple[int | str, ...]
_Error = tuple[_Loc, str, str]
_CORRECT = "correct the value"
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_INT = re.compile(r"\s*[-+]?\d+\s*")


@functools.cache
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """camelCase YAML key -> (field, resolved type hint), in definition order."""
    hints = typing.get_type_hints(cls)
    return {_camel(f.name): (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m[1].upper(), name)


def _build(cls: type[_T], data: Any, loc: _Loc, errors: list[_Error]) -> _T | None:
    """An instance of ``cls`` from a YAML mapping, or None after appending to ``errors``."""
    if not isinstance(data, Mapping):
        what = "null" if data is None else type(data).__name__
        errors.append((loc, f"Input should be a mapping (key: value lines), not {what}", _CORRECT))
        return None
    before, spec = len(errors), _fields(typing.cast(type, cls))
    data = {str(k): v for k, v in data.items()}
    kwargs: dict[str, Any] = {}
    used = {camel if camel in data else f.name for camel, (f, _) in spec.items()}
    for camel, (f, hint) in spec.items():
        key = camel if camel in data else f.name  # if both are given, the other is unknown
        if key in data:
            value = kwargs[f.name] = _convert(hint, data[key], (*loc, key), errors)
            if "ge" in f.metadata and isinstance(value, int) and value < f.metadata["ge"]:
                msg = f"Input should be greater than or equal to {f.metadata['ge']}"
                errors.append(((*loc, key), msg, _CORRECT))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(((*loc, camel), "Field required", "add it"))
    for key in [k for k in data if k not in used]:
        msg = f"unknown field {key!r}; allowed here: {', '.join(sorted(spec))}"
        errors.append(((*loc, key), msg, "remove it or check its spelling"))
    return cls(**kwargs) if len(errors) == before else None


def _wall_clock(value: Any) -> tuple[datetime | None, str, str]:
    """A wall-clock time (YAML's timestamp, or ISO 8601 text) without an offset, or None with
    the message and the fix."""
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None, "Input should be a date and time, e.g. 2026-01-05T09:00:00", _CORRECT
    if parsed.tzinfo is not None:
        return None, "Input should be a wall-clock time without an offset", "drop the offset"
    return parsed, "", _CORRECT


def _convert(hint: Any, value: Any, loc: _Loc, errors: list[_Error]) -> Any:
    """``value`` as ``hint``, lax the way YAML is written by hand, or None after an error."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    fix = _CORRECT
    if origin in (types.UnionType, typing.Union):  # only `X | None` is used
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _convert(inner, value, loc, errors)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, loc, errors)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        *rest, last = (repr(a) for a in args)
        given = repr(value) if isinstance(value, str | int | float) else "the value"
        given = given if len(given) <= 60 else "the value"  # config, never a secret: shown
        msg = f"{given} is not one of {', '.join(rest)} or {last}"
        fix = "use one of the allowed values"
    elif hint is Any:  # free-form YAML (a Job spec template): checked by its own rules
        return value
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: _convert(args[1], v, (*loc, k), errors) for k, v in value.items()}
        msg = "Input should be a mapping with string keys"
    elif origin is list:
        if isinstance(value, list):
            return [_convert(args[0], v, (*loc, i), errors) for i, v in enumerate(value)]
        msg = "Input should be a valid list"
    elif hint is timedelta:
        try:
            return parse_duration(value)
        except ValueError as exc:
            msg = str(exc)
    elif hint is datetime:
        parsed, msg, fix = _wall_clock(value)
        if parsed is not None:
            return parsed
    elif hint is bool:  # YAML true/false, and yes/no/on/off/1/0 as text or 0/1 as numbers
        text = str(value).strip().lower() if isinstance(value, str | int) else None
        if isinstance(value, bool) or text in _TRUE | _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        msg = "Input should be a valid boolean (true or false)"
    elif hint is int:  # an int (not a bool), a whole float or a string of digits
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.fullmatch(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        msg = "Input should be a valid integer"
    elif hint is str:  # only a string: quote numbers and booleans meant as text
        if isinstance(value, str):
            return value
        msg = "Input should be a valid string"
    else:
        raise TypeError(f"{hint!r}: no conversion for this config field type")
    errors.append((loc, msg, fix))
    return None


def validate(cls: type[_T], data: Any, node: yaml.Node | None, display: str) -> _T:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{display}: expected a mapping of settings at the top level, found "
            f"{type(data).__name__}; write `key: value` lines."
        )
    errors: list[_Error] = []
    result = _build(cls, data, (), errors)
    if result is None:
        raise ConfigError(" ".join(_describe(display, node, *error) for error in errors))
    return result


def _describe(display: str, node: yaml.Node | None, loc: _Loc, msg: str, fix: str) -> str:
    line = line_of(node, loc)
    where = f"{display}:{line}" if line else display
    return f"{where}: {field_path(loc) or '(top level)'}: {msg}; {fix}."


def field_path(loc: Iterable[int | str]) -> str:
    """A field's path as our messages write it: keys joined by dots, list items by index in
    brackets (``windows.allow[0].timeZone``), as kubectl explain and JSONPath write them."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
