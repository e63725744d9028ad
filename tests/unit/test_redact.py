"""Redaction: Secret values never reach a diff, log line, PR body, event or error."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from promote.secrets import redact

CANARY = "CANARY-redact-5d1c9e"
ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def _secret(**sections: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod", "labels": {"app": "api"}},
        "type": "Opaque",
        **sections,
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_secret(), True),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, False),
        ({"apiVersion": "example.com/v1", "kind": "Secret"}, False),  # a CRD named Secret
        ({"kind": "Secret"}, True),  # apiVersion defaults to v1
        (None, False),
        ({}, False),
    ],
)
def test_is_secret(obj: dict[str, Any] | None, expected: bool) -> None:
    assert redact.is_secret(obj) is expected


def test_redact_object_hides_values_keeps_keys_and_metadata() -> None:
    obj = _secret(
        data={"password": "Q0FOQVJZ", "user": "YWRtaW4="},
        stringData={"token": CANARY},
        sops={"mac": "ENC[...]", "age": [{"recipient": "age1x"}]},
    )
    original = copy.deepcopy(obj)
    out = redact.redact_object(obj)
    assert out["data"] == {"password": redact.REDACTED, "user": redact.REDACTED}
    assert out["stringData"] == {"token": redact.REDACTED}
    assert out["sops"] == redact.REDACTED
    assert out["metadata"] == obj["metadata"] and out["type"] == "Opaque"
    assert CANARY not in json.dumps(out)
    assert obj == original  # the input is not modified


def test_redact_object_hides_last_applied_annotation() -> None:
    obj = _secret(data={"k": "dg=="})
    obj["metadata"]["annotations"] = {ANNOTATION: json.dumps({"data": {"k": CANARY}}), "a": "b"}
    out = redact.redact_object(obj)
    assert out["metadata"]["annotations"] == {ANNOTATION: redact.REDACTED, "a": "b"}
    assert CANARY not in json.dumps(out)
    assert CANARY in obj["metadata"]["annotations"][ANNOTATION]


def test_redact_object_leaves_other_kinds_alone() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"LOG_LEVEL": "debug"}}
    assert redact.redact_object(cm) is cm


@pytest.mark.parametrize(
    ("before", "after", "want_before", "want_after"),
    [
        (  # same value: unchanged on both sides
            {"a": "x"},
            {"a": "x"},
            {"a": redact.UNCHANGED},
            {"a": redact.UNCHANGED},
        ),
        (  # a changed value reads <changed> on both sides so a diff shows the line
            {"a": "x"},
            {"a": CANARY},
            {"a": redact.CHANGED},
            {"a": redact.CHANGED},
        ),
        (  # keys only on one side
            {"old": "x", "kept": "k"},
            {"new": CANARY, "kept": "k"},
            {"old": redact.REMOVED, "kept": redact.UNCHANGED},
            {"new": redact.ADDED, "kept": redact.UNCHANGED},
        ),
    ],
)
def test_redact_pair_marks_changes_without_values(
    before: dict[str, str],
    after: dict[str, str],
    want_before: dict[str, str],
    want_after: dict[str, str],
) -> None:
    b, a = redact.redact_pair(_secret(data=before), _secret(data=after))
    assert b is not None and a is not None
    assert b["data"] == want_before
    assert a["data"] == want_after
    assert CANARY not in json.dumps([b, a])


def test_redact_pair_with_one_side_missing() -> None:
    b, a = redact.redact_pair(None, _secret(stringData={"token": CANARY}, sops={"mac": "m"}))
    assert b is None and a is not None
    assert a["stringData"] == {"token": redact.ADDED}
    assert a["sops"] == redact.REDACTED
    b, a = redact.redact_pair(_secret(data={"k": CANARY}), None)
    assert a is None and b is not None and b["data"] == {"k": redact.REMOVED}


def test_redact_pair_passes_non_secrets_through() -> None:
    before = {"kind": "ConfigMap", "data": {"a": "1"}}
    after = {"kind": "ConfigMap", "data": {"a": "2"}}
    assert redact.redact_pair(before, after) == (before, after)


def test_redact_pair_does_not_modify_inputs() -> None:
    before, after = _secret(data={"a": "x"}), _secret(data={"a": CANARY})
    snapshot = copy.deepcopy((before, after))
    redact.redact_pair(before, after)
    assert (before, after) == snapshot


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        (f"error: value {CANARY} is bad", [CANARY], "error: value <redacted> is bad"),
        (f"{CANARY} and {CANARY}", (CANARY,), "<redacted> and <redacted>"),
        ("nothing to hide", [CANARY], "nothing to hide"),
        ("short ab values stay", ["ab", ""], "short ab values stay"),  # too short to scrub
    ],
)
def test_scrub_removes_known_values(text: str, secrets: list[str], expected: str) -> None:
    assert redact.scrub(text, secrets) == expected
