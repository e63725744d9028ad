"""The corpus's expected verdicts (annotations in testdata/policy/policies.yaml), offline.

tests/integration/test_policy_differential.py holds the same verdicts to the real
kube-apiserver; this keeps them without a server.
"""

from __future__ import annotations

import pytest

from tests import policy_corpus

CASES = policy_corpus.cases()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len(CASES[0].objects) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_denies_exactly_the_expected_objects(case: policy_corpus.Case) -> None:
    verdicts = policy_corpus.ours(case)
    assert {n for n, v in verdicts.items() if v.denied} == case.denies
    assert {n for n, v in verdicts.items() if v.warnings} == case.warns
