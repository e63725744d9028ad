"""Kubernetes quantities and the CEL library functions on them (promote/policy/quantity.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from promote.policy import cel, quantity

PARSED = [
    ("1", Fraction(1)),
    ("500m", Fraction(1, 2)),
    ("0.5", Fraction(1, 2)),
    ("1Ki", Fraction(1024)),
    ("1.5Gi", Fraction(3 * 2**29)),
    ("1e3", Fraction(1000)),
    ("1E-3", Fraction(1, 1000)),
    ("2k", Fraction(2000)),
    ("+3M", Fraction(3_000_000)),
    ("-2", Fraction(-2)),
    (".5", Fraction(1, 2)),
    ("100n", Fraction(1, 10_000_000)),
]


@pytest.mark.parametrize(("text", "value"), PARSED)
def test_quantity_parses_like_the_api_server(text: str, value: Fraction) -> None:
    assert quantity.parse(text).value == value


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", "1GB", "1.2.3", "abc", "1Kii", "--1"])
def test_invalid_quantity_is_refused(text: str) -> None:
    assert not quantity.is_quantity(text)
    with pytest.raises(quantity.QuantityError):
        quantity.parse(text)


EXPRESSIONS = [
    ("quantity('1Gi') == quantity('1024Mi')", True),
    ("quantity('1Gi').isGreaterThan(quantity('1000Mi'))", True),
    ("quantity('500m').isLessThan(quantity('1'))", True),
    ("quantity('2').compareTo(quantity('2000m'))", 0),
    ("quantity('1.5').isInteger()", False),
    ("quantity('3k').asInteger()", 3000),
    ("quantity('-5').sign()", -1),
    ("quantity('1').add(quantity('500m')) == quantity('1.5')", True),
    ("quantity('1').add(2) == quantity('3')", True),
    ("quantity('1').sub(quantity('1')).sign()", 0),
    ("quantity('250m').asApproximateFloat()", 0.25),
    ("isQuantity('1Gi') && !isQuantity('1 Gi')", True),
    ("[3, 1, 2].isSorted()", False),
    ("[1, 2, 2].isSorted()", True),
    ("[1, 2, 3].sum()", 6),
    ("[4, 1, 9].min() + [4, 1, 9].max()", 10),
    ("[1, 2, 1].indexOf(1) + [1, 2, 1].lastIndexOf(1)", 2),
    ("'abc-123-def'.find('[0-9]+')", "123"),
    ("'a1b22c333'.findAll('[0-9]+').size()", 3),
    ("'a1b22c333'.findAll('[0-9]+', 2)", ["1", "22"]),
    ("'Hello'.lowerAscii() + 'x'.upperAscii()", "helloX"),
    ("'a,b,c'.split(',')", ["a", "b", "c"]),
    ("['a', 'b'].join('-')", "a-b"),
    ("'  x '.trim()", "x"),
    ("'abcdef'.substring(1, 3) + 'abc'.charAt(2)", "bcc"),
    ("'aaa'.replace('a', 'b', 2)", "bba"),
    ("'abcabc'.indexOf('c') + 'abcabc'.lastIndexOf('c')", 7),
]


@pytest.mark.parametrize(("expression", "expected"), EXPRESSIONS)
def test_kubernetes_cel_library(expression: str, expected: object) -> None:
    engine = cel.Engine()
    program = engine.compile(expression)
    assert not program.unsupported
    assert engine.run(program, engine.context({})) == expected


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("url('https://x').getHost() == 'x'", "url()"),
        (
            "authorizer.group('apps').resource('deployments').check('create').allowed()",
            "authorizer",
        ),
        ("request.userInfo.username == 'admin'", "userInfo"),
        ("object.?spec.orValue(1) == 1", "cannot parse"),
        ("sets.contains([1], [1])", "sets.*"),
    ],
)
def test_what_cannot_run_offline_is_named(expression: str, why: str) -> None:
    assert why in cel.Engine().compile(expression).unsupported


@pytest.mark.parametrize(
    "expression", ["quantity('nope') == quantity('1')", "quantity('1.5').asInteger() == 1"]
)
def test_quantity_errors_are_cel_errors(expression: str) -> None:
    engine = cel.Engine()
    with pytest.raises(cel.EvalError):
        engine.run(engine.compile(expression), engine.context({}))
