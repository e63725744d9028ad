"""Compiling and running CEL expressions with our Kubernetes library (pure).

The engine is the ``common-expression-language`` package (Python bindings of the Rust
``cel`` crate): cel-python, tried first, needed 2-5 ms per evaluation here, over the
budget of a 100-app promotion (issue 17); this one needs 0.02-0.15 ms. One :class:`Engine`
per evaluation run keeps each expression's program (or why it cannot run). Before an
expression runs we check that every function it calls is the engine's or
:mod:`promote.policy.library`'s, and that it reads no variable we cannot supply offline
(``authorizer``, ``request.userInfo``): such an expression is "not evaluated", never guessed.
Values are plain Python (dicts, lists, str, int, float, bool, None).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from promote.policy import library


def _load_engine() -> ModuleType:
    """The package's compiled module ``cel.cel`` without its ``cel/__init__.py``.

    That ``__init__`` also imports the package's interactive CLI (prompt_toolkit, rich,
    typer): ~0.2 s that every ``promote to`` with policies would pay. The extension module
    is registered under its own name, so a later ``import cel`` reuses it (initialising it
    twice panics). Any other layout falls back to the plain import.
    """
    if "cel.cel" in sys.modules:
        return sys.modules["cel.cel"]
    spec = importlib.util.find_spec("cel")
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [p for f in folders for p in Path(f).glob("cel.*") if p.suffix in (".so", ".pyd")]
    if len(found) != 1:
        import cel

        return cel
    loader = importlib.machinery.ExtensionFileLoader("cel.cel", str(found[0]))
    ext_spec = importlib.util.spec_from_file_location("cel.cel", found[0], loader=loader)
    assert ext_spec is not None
    module = importlib.util.module_from_spec(ext_spec)
    sys.modules["cel.cel"] = module
    loader.exec_module(module)
    return module


engine_lib = _load_engine()

_OFFLINE_UNKNOWN = (
    (re.compile(r"\bauthorizer\b"), "the authorizer (who may do what) is only known in-cluster"),
    (
        re.compile(r"\brequest\s*\.\s*userInfo\b"),
        "request.userInfo (who sends the change) is only known in-cluster",
    ),
)
# What the API server binds (authorizer is refused above); anything else is a namespaced
# library (sets.contains, math.least, strings.quote) the engine would read as a variable.
VARIABLES = frozenset({"object", "oldObject", "request", "params", "namespaceObject", "variables"})
# Variables a comprehension binds (the engine lists them among the expression's variables).
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_FIRST_LINE = re.compile(r"ERROR: <input>:\d+:\d+: (?P<what>[^\n|]*)")


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
        self._programs: dict[str, Program] = {}

    def compile(self, expression: str) -> Program:
        found = self._programs.get(expression)
        if found is None:
            found = self._programs[expression] = self._compile(expression)
        return found

    @staticmethod
    def _compile(expression: str) -> Program:
        for pattern, why in _OFFLINE_UNKNOWN:
            if pattern.search(expression):
                return Program(expression, unsupported=why)
        try:
            program = engine_lib.compile(expression)
        except ValueError as exc:
            found = _FIRST_LINE.search(str(exc))
            what = found["what"].strip() if found else "syntax"
            return Program(expression, unsupported=f"the CEL engine cannot parse it ({what})")
        missing = sorted(f"{n}()" for n in program.functions() if not library.supported(n))
        unknown = sorted(set(program.variables()) - VARIABLES - set(_BOUND.findall(expression)))
        if unknown:
            missing += [f"{v}.*" for v in unknown]
        if missing:
            return Program(
                expression,
                unsupported=f"it calls {', '.join(missing)}, which "
                "promote's CEL engine does not implement",
            )
        return Program(expression, program)

    @staticmethod
    def context(activation: Mapping[str, Any]) -> Any:
        """The variables and our library, bound once for several expressions."""
        return engine_lib.Context(variables=dict(activation), functions=library.FUNCTIONS)

    @staticmethod
    def run(program: Program, context: Any) -> Any:
        """The value, or :class:`EvalError` with the error in cel-go's words where we can."""
        try:
            return program.runner.execute(context)
        except KeyError as exc:
            raise EvalError(f"no such key: {exc.args[0] if exc.args else ''}") from None
        except (RuntimeError, ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
            raise EvalError(_describe(exc)) from None


def is_true(value: Any) -> bool | None:
    """True/False for a CEL bool, None for any other type (an error for a validation)."""
    return value if isinstance(value, bool) else None


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
