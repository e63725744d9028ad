"""Compiling and running CEL expressions with cel-python and our Kubernetes library (pure).

One :class:`Engine` per evaluation run keeps each expression's program (or why it cannot
run), so a policy applied to a hundred objects is parsed once. Before an expression runs we
check that every function it calls is one cel-python or :mod:`promote.policy.library`
provides, and that it reads no variable we cannot supply offline (``authorizer``,
``request.userInfo``): such an expression is "not evaluated", never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import lark
from celpy import celtypes

from promote.policy import library

_OFFLINE_UNKNOWN = (
    (re.compile(r"\bauthorizer\b"), "the authorizer (who may do what) is only known in-cluster"),
    (
        re.compile(r"\brequest\s*\.\s*userInfo\b"),
        "request.userInfo (who sends the change) is only known in-cluster",
    ),
)
_CALLS = ("member_dot_arg", "ident_arg", "dot_ident_arg")


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled expression, or ``unsupported``: why it cannot be evaluated offline."""

    expression: str
    runner: Any = None
    unsupported: str = ""


class EvalError(Exception):
    """The expression failed at run time, as it would in the API server (failurePolicy)."""


class Engine:
    def __init__(self) -> None:
        self._env = celpy.Environment()
        self._programs: dict[str, Program] = {}

    def compile(self, expression: str) -> Program:
        found = self._programs.get(expression)
        if found is None:
            found = self._programs[expression] = self._compile(expression)
        return found

    def _compile(self, expression: str) -> Program:
        for pattern, why in _OFFLINE_UNKNOWN:
            if pattern.search(expression):
                return Program(expression, unsupported=why)
        try:
            ast = self._env.compile(expression)
        except celpy.CELParseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax"
            return Program(expression, unsupported=f"cel-python cannot parse it ({first})")
        missing = sorted(_called(ast) - library.SUPPORTED)
        if missing:
            return Program(
                expression,
                unsupported=f"it calls {', '.join(missing)}(), which "
                "promote's CEL engine does not implement",
            )
        return Program(expression, self._env.program(ast, functions=library.FUNCTIONS))

    @staticmethod
    def run(program: Program, activation: Mapping[str, Any]) -> Any:
        """The value, or :class:`EvalError` with the CEL error's text."""
        try:
            value = program.runner.evaluate(dict(activation))
        except celpy.CELEvalError as exc:
            raise EvalError(_describe(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as exc:
            raise EvalError(f"{type(exc).__name__}: {exc}") from None
        if isinstance(value, celpy.CELEvalError):
            raise EvalError(_describe(value))
        return value


def to_cel(value: Any) -> Any:
    """A JSON-like Python value as CEL values (maps, lists, strings, ints, ...)."""
    return celpy.json_to_cel(value)


def is_true(value: Any) -> bool | None:
    """True/False for a CEL bool, None for any other type (an error for a validation)."""
    return bool(value) if isinstance(value, celtypes.BoolType | bool) else None


def as_text(value: Any) -> str | None:
    return str(value) if isinstance(value, str) else None  # StringType is a str


def _called(tree: lark.Tree) -> set[str]:
    names = set()
    for node in tree.iter_subtrees():
        if node.data in _CALLS:
            for child in node.children:
                if isinstance(child, lark.Token) and child.type == "IDENT":
                    names.add(str(child))
    return names


_NO_KEY = re.compile(r"no such member in mapping: '(?P<key>[^']*)'")


def _describe(exc: BaseException) -> str:
    """cel-python's error text, in cel-go's words where they name the same error."""
    args = [a for a in exc.args if isinstance(a, str)]
    text = args[0] if args else str(exc)
    detail = [str(a) for a in exc.args[2:3] if a] if len(exc.args) > 2 else []
    text = f"{text} {detail[0]}" if detail else text
    return _NO_KEY.sub(lambda m: f"no such key: {m['key']}", text)


def lazy_map(programs: Mapping[str, Program], engine: Engine, activation: dict[str, Any]) -> Any:
    """``variables``: each evaluated in order with the earlier ones in scope; a failing one
    holds its error, which surfaces only where an expression reads it (as in the API server)."""
    values = celtypes.MapType()
    activation["variables"] = values
    for name, program in programs.items():
        try:
            values[celtypes.StringType(name)] = engine.run(program, activation)
        except EvalError as exc:
            # held as the value: reading it makes the reader's expression fail
            values[celtypes.StringType(name)] = celpy.CELEvalError(str(exc))  # type: ignore[assignment]
    return values
