"""The Kubernetes CEL libraries promote supports, as functions for the CEL engine (pure).

The API server adds libraries to CEL (k8s.io/apiserver/pkg/cel/library); this module is our
implementation of the ones policies use most, held to the real API server by
``tests/integration/test_policy_differential.py``:

- quantity: ``quantity()``, ``isQuantity()``, and on a quantity ``sign``, ``isInteger``,
  ``asInteger``, ``asApproximateFloat``, ``add``, ``sub``, ``isGreaterThan``, ``isLessThan``,
  ``compareTo`` (values are exact fractions: ``quantity('1Gi') == quantity('1024Mi')``);
- regex: ``find``, ``findAll`` (RE2 syntax; ``matches`` is the engine's own);
- lists: ``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``, ``lastIndexOf``;
- strings (cel-go's ``ext.Strings``): ``charAt``, ``indexOf``, ``lastIndexOf``, ``lowerAscii``,
  ``upperAscii``, ``replace``, ``split``, ``substring``, ``trim``, ``join``.

CEL calls ``x.f(a)`` as ``f(x, a)``; ``indexOf`` therefore serves both lists and strings.
A function raising ``ValueError`` or ``TypeError`` becomes a CEL evaluation error, which the
evaluator treats as the API server does (``failurePolicy``). Functions not listed here
(``url``, ``ip``, ``cidr``, ``semver``, ``sets.*``, ``authorizer``, ``format``) are refused
before evaluation, so a policy using them is reported "not evaluated".
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import re2

from promote.policy import quantity as q

Value = Any


# The CEL library takes only CEL values back from a function, so a quantity travels as a
# one-key map holding its exact value ("n/d"): equal quantities are equal maps, whatever
# their spelling (quantity('1Gi') == quantity('1024Mi')).
_TAG = "__quantity__"


def _wrap(value: q.Quantity) -> dict[str, str]:
    return {_TAG: str(value.value)}


def _quantity(text: Value) -> dict[str, str]:
    return _wrap(q.parse(str(text)))


def _q(value: Value) -> q.Quantity:
    if isinstance(value, dict) and set(value) == {_TAG}:
        return q.Quantity(Fraction(value[_TAG]))
    raise TypeError(f"no such overload: expected a quantity, got {type(value).__name__}")


def _add(a: Value, b: Value) -> dict[str, str]:
    if isinstance(b, int) and not isinstance(b, bool):
        return _wrap(_q(a).plus(b))
    return _wrap(_q(a).plus(_q(b)))


def _sub(a: Value, b: Value) -> dict[str, str]:
    if isinstance(b, int) and not isinstance(b, bool):
        return _wrap(_q(a).plus(-b))
    return _wrap(_q(a).plus(q.Quantity(-_q(b).value)))


def _list(value: Value) -> list[Value]:
    if not isinstance(value, list):
        raise TypeError(f"no such overload: expected a list, got {type(value).__name__}")
    return value


def _comparable(items: list[Value]) -> list[Value]:
    kinds = {type(i) for i in items}
    if len(kinds) > 1 and not all(isinstance(i, int | float) for i in items):
        raise TypeError("no such overload: list elements of different types")
    return items


def _sorted_key(items: list[Value]) -> list[Value]:
    return _comparable(items)


def _is_sorted(value: Value) -> bool:
    items = _sorted_key(_list(value))
    return bool(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(value: Value) -> Value:
    items = _comparable(_list(value))
    if not items:
        return 0
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


def _extreme(pick: Callable[..., Value]) -> Callable[[Value], Value]:
    def run(value: Value) -> Value:
        items = _comparable(_list(value))
        if not items:
            raise ValueError("min/max of an empty list")
        return pick(items)

    return run


def _index_of(value: Value, item: Value, offset: Value = None) -> int:
    if isinstance(value, list):
        return int(value.index(item) if item in value else -1)
    text, sub = str(value), str(item)
    start = int(offset) if offset is not None else 0
    if not 0 <= start <= len(text):
        raise ValueError(f"index out of range: {start}")
    return int(text.find(sub, start))


def _last_index_of(value: Value, item: Value, offset: Value = None) -> int:
    if isinstance(value, list):
        hits = [i for i, v in enumerate(value) if v == item]
        return int(hits[-1] if hits else -1)
    text, sub = str(value), str(item)
    end = int(offset) if offset is not None else len(text)
    if not 0 <= end <= len(text):
        raise ValueError(f"index out of range: {end}")
    return int(text.rfind(sub, 0, end + len(sub)))


def _find(text: Value, pattern: Value) -> str:
    found = re2.search(str(pattern), str(text))
    return str(found.group(0) if found else "")


def _find_all(text: Value, pattern: Value, limit: Value = None) -> list:
    found = [m.group(0) for m in re2.finditer(str(pattern), str(text))]
    if limit is not None and int(limit) >= 0:
        found = found[: int(limit)]
    return list([str(s) for s in found])


def _split(text: Value, sep: Value, limit: Value = None) -> list:
    n = -1 if limit is None else int(limit)
    if n == 0:
        return list()
    parts = str(text).split(str(sep), n - 1) if n > 0 else str(text).split(str(sep))
    if str(sep) == "":
        parts = list(str(text))
    return list([str(p) for p in parts])


def _substring(text: Value, start: Value, end: Value = None) -> str:
    s, b = str(text), int(start)
    e = len(s) if end is None else int(end)
    if not 0 <= b <= e <= len(s):
        raise ValueError(f"substring out of range: {b}, {e}")
    return str(s[b:e])


def _replace(text: Value, old: Value, new: Value, limit: Value = None) -> str:
    n = -1 if limit is None else int(limit)
    return str(str(text).replace(str(old), str(new), n))


def _join(value: Value, sep: Value = "") -> str:
    return str(str(sep).join(str(i) for i in _list(value)))


def _char_at(text: Value, index: Value) -> str:
    s, i = str(text), int(index)
    if not 0 <= i <= len(s):
        raise ValueError(f"index out of range: {i}")
    return str(s[i : i + 1])


def _is_quantity(t: Value) -> bool:
    return bool(q.is_quantity(str(t)))


def _sign(a: Value) -> int:
    return int(_q(a).sign())


def _is_integer(a: Value) -> bool:
    return bool(_q(a).is_integer())


def _as_integer(a: Value) -> int:
    return int(_q(a).as_integer())


def _as_approximate_float(a: Value) -> float:
    return float(_q(a).as_float())


def _is_greater_than(a: Value, b: Value) -> bool:
    return bool(_q(a).compare(_q(b)) > 0)


def _is_less_than(a: Value, b: Value) -> bool:
    return bool(_q(a).compare(_q(b)) < 0)


def _compare_to(a: Value, b: Value) -> int:
    return int(_q(a).compare(_q(b)))


def _lower_ascii(t: Value) -> str:
    return str(str(t).lower())


def _upper_ascii(t: Value) -> str:
    return str(str(t).upper())


def _trim(t: Value) -> str:
    return str(str(t).strip())


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "quantity": _quantity,
    "isQuantity": _is_quantity,
    "sign": _sign,
    "isInteger": _is_integer,
    "asInteger": _as_integer,
    "asApproximateFloat": _as_approximate_float,
    "add": _add,
    "sub": _sub,
    "isGreaterThan": _is_greater_than,
    "isLessThan": _is_less_than,
    "compareTo": _compare_to,
    "find": _find,
    "findAll": _find_all,
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _extreme(min),
    "max": _extreme(max),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "charAt": _char_at,
    "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii,
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": _trim,
    "join": _join,
}

# What the engine (the Rust cel crate) provides itself, as ``Program.functions()`` names it;
# operators (``_&&_``, ``@in``, ``!_``) start with ``_``, ``@``, ``!`` or ``-``.
BUILTINS = frozenset(
    {
        "has",
        "all",
        "exists",
        "exists_one",
        "map",
        "filter",
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "type",
        "int",
        "uint",
        "double",
        "string",
        "bool",
        "bytes",
        "duration",
        "timestamp",
        "dyn",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getMonth",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getSeconds",
    }
)
SUPPORTED = BUILTINS | frozenset(FUNCTIONS)


def supported(name: str) -> bool:
    return name in SUPPORTED or name[:1] in ("_", "@", "!", "-")
