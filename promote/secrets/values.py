"""Value types that can hold plaintext: their ``repr`` and ``str`` never show it.

The floor of the secrets package (no I/O, no imports of its siblings). A stray log line, a
traceback with locals, or ``%s`` of a dict holding one of these prints ``<redacted>``.
"""

from __future__ import annotations


class Plaintext:
    """Decrypted bytes, as sops returns them; ``reveal()`` is the one way to the content."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Plaintext(<redacted>, {len(self._value)} bytes)"

    __str__ = __repr__


class SecretText(str):
    """A plaintext string (a Secret value, or its base64) whose ``repr`` is redacted.

    It is a real ``str``: JSON encoding and the Kubernetes client see the value; only ``repr``
    (and so ``str()`` of a container holding it) hides it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"
