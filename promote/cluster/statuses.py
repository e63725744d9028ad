"""Kubernetes API statuses mapped to our error tree, and scrubbed of Secret values.

Owns the classification of an API server's answer (kopf's ``check_response``): 401/403, 404,
409, 422 and 429/5xx/connection errors each map to one of our error classes; response bodies are
cut to the Status message because a body may echo a Secret. An object the server rejects as
invalid is :class:`Invalid` (permanent), whatever the status code; 429, other 5xx and connection
errors are :class:`ClusterUnavailable` (retried with backoff).

Pure apart from reading the ``kubernetes`` library's exception type: it must not make requests,
hold a connection or log; :mod:`promote.cluster.client` calls it at the adapter edge.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any

from kubernetes.client.exceptions import ApiException

from promote.errors import ClusterError, ClusterUnavailable, NotFound
from promote.secrets import redact

# A Status message names object, field and key; long enough for every cause the server lists.
_STATUS_LIMIT = 2000


class CrdTerminating(ClusterUnavailable):
    """The kind's CustomResourceDefinition was deleted moments ago and the API server still
    answers for the dying one (a prune, then the CRD applied anew): transient, retried."""


class Conflict(ClusterError):
    """409: another field manager owns a field (server-side apply without force)."""

    code = "conflict"


class Invalid(ClusterError):
    """The API server rejected an object as invalid: a permanent error in the input.

    422 Invalid, 400 BadRequest, 413 too large, and the 500 that server-side apply answers
    when the object does not fit its schema ("failed to create typed patch object": duplicate
    list-map keys, a wrong type). Retrying the same object cannot help (Flux's stalled
    condition, kopf's ``PermanentError``): the loop reports it once and waits for a new
    revision.
    """

    code = "invalid"
    retryable = False


class Immutable(Invalid):
    """The change touches a field the server never changes in place (``immutable: true``
    Secrets and ConfigMaps, a Deployment's selector, a Job's template): only deleting and
    creating the object applies it (annotation ``promote.dev/sync-options: Replace=true``)."""

    code = "immutable"


# kubectl's and Flux's test for an immutable-field rejection, on the server's message.
_IMMUTABLE = re.compile(r"field is immutable|is immutable|cannot change|cannot be changed")

# Status reasons (metav1.StatusReason) that describe the request, not the server's health.
_INPUT_REASONS = {
    "Invalid",
    "BadRequest",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "NotAcceptable",
    "MethodNotAllowed",
}
# Server-side apply builds a typed object from the patch before anything is stored; an object
# that does not fit the schema fails there with a 500 whose message says so.
_TYPED_PATCH = re.compile(r"^failed to create typed (?:patch|live) object \([^)]*\): ")
_PERMANENT_500 = (_TYPED_PATCH, re.compile(r"duplicate entries for key"))


def _status(body: Any) -> tuple[str, str]:
    """``(reason, message)`` of a kind: Status body; anything else is dropped (it may be an
    object echoing a Secret). The message is cut at a length no field path reaches."""
    try:
        doc = json.loads(body) if isinstance(body, str | bytes) else body
    except (ValueError, TypeError):
        return "", ""
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return str(doc.get("reason", "")), str(doc.get("message", ""))[:_STATUS_LIMIT]
    return "", ""


def is_input_error(status: int, reason: str, message: str) -> bool:
    """Whether an error status describes the object sent rather than the server's health."""
    if reason in _INPUT_REASONS or status in (400, 413, 422):
        return True
    return status == 500 and any(p.search(message) for p in _PERMANENT_500)


def translate_status(status: int, body: Any, what: str) -> ClusterError:
    """Map an HTTP error status to our error tree (never carries a response body raw)."""
    reason, message = _status(body)
    if status == 404:
        return NotFoundInCluster(f"{what}: not found ({message}).")
    if status == 409:
        return Conflict(f"{what}: conflict: {message}")
    if is_input_error(status, reason, message) and _IMMUTABLE.search(message):
        return Immutable(
            f"{what}: rejected: {message}",
            hint="Change it under a new name, or let promote delete and recreate the object: "
            "annotation promote.dev/sync-options: Replace=true.",
        )
    if is_input_error(status, reason, message):
        return Invalid(
            f"{what}: rejected as invalid: {_TYPED_PATCH.sub('', message)}",
            hint="Fix the object in Git; the agent retries when a new revision arrives.",
        )
    if status == 403 and "while custom resource definition is terminating" in message:
        # Not a permission: the kind's CRD is still being deleted (a prune moments ago); the
        # next attempt, once it is gone and applied again, succeeds.
        return CrdTerminating(f"{what}: its CustomResourceDefinition is terminating: {message}")
    if status in (401, 403):
        return ClusterError(
            f"{what}: access denied ({status}): {message}",
            hint="Check the kubeconfig credentials and the agent's RBAC.",
        )
    if status == 429 or status >= 500:
        return ClusterUnavailable(f"{what}: API server unavailable ({status}): {message}")
    return ClusterError(f"{what}: API error {status}: {message}")


def translate(exc: Exception, what: str) -> ClusterError:
    """Map a transport exception (connection refused, TLS, timeout) to our error tree."""
    if isinstance(exc, ApiException):
        return translate_status(exc.status or 0, exc.body, what)
    return ClusterUnavailable(f"{what}: cannot reach the API server ({type(exc).__name__}).")


class NotFoundInCluster(ClusterError, NotFound):
    code = "not-found"


def scrubbed(exc: ClusterError, obj: dict[str, Any]) -> ClusterError:
    """The error without any of a Secret's values: schema errors quote the offending value."""
    if obj.get("kind") != "Secret":
        return exc
    found: list[str] = []
    for section in redact.SECRET_SECTIONS:
        for value in (obj.get(section) or {}).values():
            text = str(value)
            found.append(text)
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                found.append(base64.b64decode(text, validate=True).decode())
    message = redact.scrub(exc.message, sorted(found, key=len, reverse=True))
    if message == exc.message:
        return exc
    return type(exc)(message, hint=exc.hint)
