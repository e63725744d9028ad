"""The HTTP check of verification after deploy: one GET, judged by status and body (adapter).

Used only by ``postdeploy`` once new images have been healthy for ``healthyFor``. It reports
why a check failed (the status code, or the kind of connection error), never the response
body: a service's page may echo anything. Redirects are not followed (a login page answering
200 would pass otherwise).
"""

from __future__ import annotations

import logging
import time

import httpx

from promote import config

log = logging.getLogger(__name__)


def http_get(check: config.HttpCheck) -> str | None:
    """None when ``check`` passes, else one sentence saying why it failed."""
    started = time.monotonic()
    try:
        resp = httpx.get(check.url, timeout=check.timeout.total_seconds(), follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"GET {check.url} failed ({exc.__class__.__name__})"
    finally:
        log.info("GET %s took %.2fs", check.url, time.monotonic() - started)
    if resp.status_code != check.expect_status:
        return f"GET {check.url} answered {resp.status_code}, expected {check.expect_status}"
    if check.body_contains and check.body_contains not in resp.text:
        return f"GET {check.url}: the body does not contain {check.body_contains!r}"
    return None
