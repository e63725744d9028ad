"""Kubernetes resource quantities (``500m``, ``1Gi``, ``1e3``) for the CEL ``quantity()`` library.

Pure: parses the same grammar as apimachinery's ``resource.ParseQuantity`` into an exact
:class:`~fractions.Fraction` and compares by value (``1Gi == 1024Mi``), as the API server's
CEL ``Quantity`` type does. It does not reproduce the canonical string form
(``quantity('1024Mi')`` prints as ``1Gi`` there): policies compare values, not spellings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# sign, digits with an optional fraction, then one suffix (binary, decimal or an exponent).
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+|)$"
)
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


@dataclass(frozen=True, slots=True, order=False)
class Quantity:
    """An exact quantity value; ``text`` is how it was written (for messages)."""

    value: Fraction
    text: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def compare(self, other: Quantity) -> int:
        return (self.value > other.value) - (self.value < other.value)

    def sign(self) -> int:
        return (self.value > 0) - (self.value < 0)

    def is_integer(self) -> bool:
        """Whether ``asInteger()`` succeeds: a whole number within int64."""
        return self.value.denominator == 1 and _INT64_MIN <= self.value <= _INT64_MAX

    def as_integer(self) -> int:
        if not self.is_integer():
            raise QuantityError(f"cannot convert value to integer: {self.text or self.value}")
        return int(self.value)

    def as_float(self) -> float:
        return float(self.value)

    def plus(self, other: Quantity | int) -> Quantity:
        add = other.value if isinstance(other, Quantity) else Fraction(other)
        total = self.value + add
        return Quantity(total, _format(total))


def parse(text: str) -> Quantity:
    """``text`` as a quantity; :class:`QuantityError` when the API server would refuse it."""
    found = _QUANTITY.match(text) if isinstance(text, str) else None
    if not found or found["num"] in ("+", "-", "."):
        raise QuantityError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )
    number = Fraction(found["num"])
    suffix = found["suffix"]
    if suffix in _BINARY:
        value = number * (1024 ** _BINARY[suffix])
    elif suffix in _DECIMAL:
        value = number * Fraction(10) ** _DECIMAL[suffix]
    else:  # e.g. "e3": a decimal exponent
        exponent = int(suffix[1:])
        if abs(exponent) > 1000:
            raise QuantityError(f"quantity exponent out of range: {text!r}")
        value = number * Fraction(10) ** exponent
    return Quantity(value, text)


def is_quantity(text: str) -> bool:
    try:
        parse(text)
    except QuantityError:
        return False
    return True


def _format(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    milli = value * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    return f"{float(value):g}" if math.isfinite(float(value)) else str(value)
