"""How API server error statuses are classified: input errors are permanent, faults retry."""

from __future__ import annotations

import json

import pytest

from promote.cluster import statuses
from promote.errors import ClusterUnavailable

DUPLICATE = (
    "failed to create typed patch object (dev/worker; apps/v1, Kind=Deployment): "
    '.spec.template.spec.containers[name="worker"].env: duplicate entries for key [name="MODE"]'
)


def _body(code: int, message: str, reason: str = "") -> str:
    doc = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
    if reason:
        doc["reason"] = reason
    return json.dumps({**doc, "code": code})


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (500, "", DUPLICATE),
        (422, "Invalid", 'Secret "s" is invalid: data: Forbidden: field is immutable'),
        (400, "BadRequest", "the body of the request was in an unknown format"),
        (413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728"),
    ],
)
def test_rejected_objects_are_permanent_and_keep_field_and_key(
    code: int, reason: str, message: str
) -> None:
    err = statuses.translate_status(code, _body(code, message, reason), "apply Deployment dev/w")
    assert isinstance(err, statuses.Invalid) and not err.retryable
    assert "unavailable" not in str(err)
    assert "failed to create typed patch object" not in str(err)
    assert message.split(": ", 1)[-1].split("): ")[-1] in str(err)


@pytest.mark.parametrize(
    ("code", "message"),
    [(500, "etcdserver: request timed out"), (503, "unavailable"), (429, "too many requests")],
)
def test_server_faults_are_retried(code: int, message: str) -> None:
    err = statuses.translate_status(code, _body(code, message), "apply Deployment dev/w")
    assert isinstance(err, ClusterUnavailable) and err.retryable


def test_a_body_that_is_not_a_status_is_dropped() -> None:
    err = statuses.translate_status(422, '{"kind": "Secret", "data": {"k": "c2VjcmV0"}}', "apply")
    assert "c2VjcmV0" not in str(err)
