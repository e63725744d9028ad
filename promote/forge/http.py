"""HTTP plumbing shared by the server forges (Gitea, GitHub): the token, the client, git's auth.

Owns: reading the API token from the environment variable ``forge.tokenEnv`` names (and only
from there), an httpx client that sends it, status codes mapped to our errors, rate limits
(waits for the advertised delay, then retries), pagination as each forge really pages (GitHub:
the ``Link`` header; Gitea: ``page``/``limit`` and ``X-Total-Count``, since several of its
lists, labels and reviews among them, send no ``Link``), and the environment that lets ``git``
push to the forge with the same token.

Must not: put the token anywhere but an ``Authorization`` header. It never goes into a URL
(which git stores in ``.git/config`` and prints in errors), a log line, an error message or a
``repr``: :class:`Token` redacts itself, and every forge message we repeat is scrubbed of it.
``forge/gitea.py`` and ``forge/github.py`` import this module, never each other.
"""

from __future__ import annotations

import base64
import enum
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from promote import __version__
from promote.errors import ConfigError, ForgeError, ForgeUnavailable, NotFound

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 300  # characters of a forge's error message we repeat (kopf keeps 256)
MAX_PAGES = 500  # a guard against a Link header that never ends
# GitHub's secondary rate limits: "wait for at least one minute before retrying", then "an
# exponentially increasing amount of time", then give up (docs.github.com, REST API rate limits).
SECONDARY_WAIT_S = 60.0


class Paging(enum.Enum):
    LINK = "link"  # follow Link: <...>; rel="next" (GitHub)
    PAGE = "page"  # page=1,2,... with the page size, until X-Total-Count or a short page (Gitea)


_GIT_USER = "x-access-token"  # GitHub's documented user for token auth; Gitea ignores it


class Token:
    """An API token. ``str()`` and ``repr()`` never show it; :meth:`reveal` does, for a header."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str) -> None:
        self._value = value
        self.source = source  # where it came from, for messages: "$GITEA_TOKEN"

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "[secure]") if self._value else text

    def __repr__(self) -> str:
        return f"Token({self.source}, [secure])"

    __str__ = __repr__


def read_token(token_env: str | None, *, forge: str) -> Token:
    """The token from the variable ``forge.tokenEnv`` names; ConfigError when unusable."""
    if not token_env:
        raise ConfigError(
            f"promote.yaml: forge.tokenEnv is required for a {forge} forge; name the environment "
            f"variable that holds the API token (e.g. `tokenEnv: {forge.upper()}_TOKEN`)."
        )
    value = os.environ.get(token_env, "").strip()
    if not value:
        raise ConfigError(
            f"${token_env} is not set or empty; export a {forge} API token in it (promote.yaml "
            "forge.tokenEnv names this variable; the token is read from nowhere else)."
        )
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ConfigError(f"${token_env} holds spaces or control characters; it is not a token.")
    return Token(value, source=f"${token_env}")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without any user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}".lower()


def git_environment(
    remote_url: str, token: Token, *, web_url: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Variables that make ``git`` send ``token`` to ``remote_url``, or {} when it must not.

    Git reads ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n`` as configuration
    of this one process; the header is scoped to the remote's URL (``http.<url>.extraHeader``),
    so nothing is written to ``.git/config`` and no other host ever receives it. A remote on
    another host than the forge (a mirror), or over SSH, gets nothing.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(remote_url)
    if parts.scheme not in ("http", "https") or origin(remote_url) != origin(web_url):
        return {}
    clean = urlunsplit((parts.scheme, origin(remote_url).split("://", 1)[1], parts.path, "", ""))
    basic = base64.b64encode(f"{_GIT_USER}:{token.reveal()}".encode()).decode()
    n = int(env.get("GIT_CONFIG_COUNT", "0") or "0")
    return {
        "GIT_CONFIG_COUNT": str(n + 1),
        f"GIT_CONFIG_KEY_{n}": f"http.{clean}.extraHeader",
        f"GIT_CONFIG_VALUE_{n}": f"Authorization: Basic {basic}",
    }


class Api:
    """An httpx client on one forge's API: auth, errors, rate limits and pagination.

    ``what`` arguments name the operation for messages ("open a pull request on platform/gitops").
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: Token,
        forge: str,
        auth_scheme: str = "token",
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        max_wait_s: float = 60.0,
        max_attempts: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        paging: Paging = Paging.LINK,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.forge = forge
        self._token = token
        self._timeout_s = timeout_s
        self._max_wait_s = max_wait_s  # longest rate-limit pause we sit out (GitHub: 1 min)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._paging = paging
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers={
                "Authorization": f"{auth_scheme} {token.reveal()}",
                "Accept": "application/json",
                "User-Agent": f"promote/{__version__}",
                **(headers or {}),
            },
            timeout=timeout_s,
            transport=transport,
            follow_redirects=True,  # httpx drops Authorization on a redirect to another origin
        )

    def close(self) -> None:
        self._client.close()

    # --- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one request; a success or a status in ``accept`` is returned, the rest raised."""
        url = path if path.startswith(("http://", "https://")) else path.lstrip("/")
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._client.request(method, url, params=params, json=json)
            except httpx.TimeoutException as exc:
                raise ForgeUnavailable(
                    f"{what}: {self.forge} at {self.base_url} did not answer within "
                    f"{self._timeout_s:.0f} s.",
                    hint="Try again; check the server's health.",
                ) from exc
            except httpx.HTTPError as exc:
                raise ForgeUnavailable(
                    f"{what}: cannot reach {self.forge} at {self.base_url} "
                    f"({self._token.scrub(_reason(exc))}).",
                    hint="Check forge.url in promote.yaml and that the server is running.",
                ) from exc
            if resp.is_success or resp.status_code in accept:
                return resp
            wait = rate_limit_wait(resp, attempt=attempt)
            if wait is not None:
                if wait > self._max_wait_s or attempt >= self._max_attempts:
                    why = (
                        f"still limited after {attempt} attempts"
                        if wait <= self._max_wait_s
                        else f"it asks to wait {wait:.0f} s, more than promote waits "
                        f"({self._max_wait_s:.0f} s)"
                    )
                    raise ForgeUnavailable(
                        f"{what}: {self.forge} rate limit reached (HTTP {resp.status_code}); "
                        f"{why}. Try again after {_clock(wait)}."
                    )
                log.warning("%s rate limit reached; waiting %.1f s as it asks", self.forge, wait)
                self._sleep(wait)
                continue
            if resp.status_code in (502, 503, 504) and method == "GET" and attempt < 3:
                self._sleep(0.5 * attempt)
                continue
            raise self.error(resp, what)

    def json(self, method: str, path: str, *, what: str, **kw: Any) -> Any:
        resp = self.request(method, path, what=what, **kw)
        return decode(resp, what, self.forge)

    def paginate(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        missing: Callable[[], Exception] | None = None,
    ) -> Iterator[Any]:
        """Every item of a list endpoint, page after page as this forge pages (:class:`Paging`).

        ``missing`` makes the error raised when the first page is a 404.
        """
        resp = self.request("GET", path, what=what, params=params, accept=(404,))
        if resp.status_code == 404:
            raise missing() if missing else self.error(resp, what)
        if self._paging is Paging.PAGE:
            yield from self._pages(resp, path, what=what, params=dict(params or {}))
            return
        for _ in range(MAX_PAGES):
            page = decode(resp, what, self.forge)
            if not isinstance(page, list):
                raise ForgeError(f"{what}: {self.forge} answered with {type(page).__name__}.")
            yield from page
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return
            if origin(nxt) != origin(self.base_url):  # never send the token to another host
                raise ForgeError(
                    f"{what}: {self.forge}'s next page is on {origin(nxt)}, not on "
                    f"{origin(self.base_url)}; refusing to follow it."
                )
            resp = self.request("GET", nxt, what=what)
        raise ForgeError(f"{what}: more than {MAX_PAGES} pages; stopped.")

    def _pages(
        self, resp: httpx.Response, path: str, *, what: str, params: dict[str, Any]
    ) -> Iterator[Any]:
        """Gitea: ``page`` counts from 1; ``X-Total-Count`` says how many items there are. A
        server may cap ``limit`` (MAX_RESPONSE_ITEMS), so a short page ends the list only
        when the total is unknown."""
        limit = int(params.get("limit") or 0)
        seen = 0
        for page in range(1, MAX_PAGES + 1):
            if page > 1:
                resp = self.request("GET", path, what=what, params={**params, "page": page})
            items = decode(resp, what, self.forge)
            if not isinstance(items, list):
                raise ForgeError(f"{what}: {self.forge} answered with {type(items).__name__}.")
            yield from items
            seen += len(items)
            total = resp.headers.get("x-total-count", "")
            if not items or (total.isdigit() and seen >= int(total)):
                return
            if not total.isdigit() and limit and len(items) < limit:
                return
        raise ForgeError(f"{what}: more than {MAX_PAGES} pages; stopped.")

    # --- errors -----------------------------------------------------------------------------

    def message(self, resp: httpx.Response) -> str:
        """The forge's own error message (JSON ``message`` + ``errors``), scrubbed, truncated."""
        return self._token.scrub(error_message(resp))

    def error(self, resp: httpx.Response, what: str) -> ForgeError | NotFound:
        code = resp.status_code
        said = self.message(resp)
        detail = f"HTTP {code}{': ' + said if said else ''}"
        if code == 401:
            return ForgeError(
                f"{what}: {self.forge} at {self.base_url} refused the token in "
                f"{self._token.source} ({detail}).",
                hint=f"Create a new {self.forge} access token with read/write access to the "
                f"repository and export it in {self._token.source}.",
            )
        if code == 403:
            return ForgeError(
                f"{what}: {self.forge} does not allow it to the token's user ({detail}).",
                hint="The user needs write access to the repository, and the token the "
                "repository (read/write) scope.",
            )
        if code == 404:
            return NotFound(f"{what}: not found on {self.forge} ({detail}).")
        if code >= 500:
            return ForgeUnavailable(f"{what}: {self.forge} failed ({detail}); try again.")
        return ForgeError(f"{what}: {self.forge} refused ({detail}).")


def decode(resp: httpx.Response, what: str, forge: str) -> Any:
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        raise ForgeError(
            f"{what}: {forge} answered HTTP {resp.status_code} with a body that is not JSON; "
            "is forge.url the server's address?"
        ) from exc


def error_message(resp: httpx.Response) -> str:
    """The message of an error document; other bodies (HTML pages, proxies) are dropped."""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    parts = [str(doc.get("message") or "").strip()]
    for item in doc.get("errors") or ():
        text = item.get("message") or item.get("code") if isinstance(item, dict) else item
        if text and str(text).strip() not in parts:
            parts.append(str(text).strip())
    text = "; ".join(p for p in parts if p)
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def rate_limit_wait(
    resp: httpx.Response, *, now: float | None = None, attempt: int = 1
) -> float | None:
    """Seconds to wait before retrying, when ``resp`` says a rate limit was hit; else None.

    GitHub: 429, or 403 with ``x-ratelimit-remaining: 0`` (primary limit, wait until
    ``x-ratelimit-reset``, epoch seconds) or with ``retry-after`` (secondary limit). Without
    either header (a 429, or a 403 whose message names a rate limit) GitHub asks for at least
    a minute, then exponentially longer, and warns that hammering can ban the integration:
    60 s, 120 s, 240 s ... by ``attempt`` (the caller gives up past its longest wait).
    Gitea answers 429 with ``Retry-After``.
    """
    code = resp.status_code
    if code not in (403, 429):
        return None
    headers = resp.headers
    now = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
            except (TypeError, ValueError):
                pass
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(1.0, float(headers["x-ratelimit-reset"]) - now + 1.0)
        except ValueError:
            pass
    if code == 429 or "rate limit" in error_message(resp).lower():
        return SECONDARY_WAIT_S * 2 ** (max(attempt, 1) - 1)
    return None


def _clock(wait_s: float) -> str:
    return datetime.fromtimestamp(time.time() + wait_s, UTC).strftime("%H:%M:%S UTC")


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:MESSAGE_LIMIT]
