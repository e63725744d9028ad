"""The dashboard's application: settings, the Starlette app and its pages, and serving it.

Every page reads through the same core functions as the CLI (``reconcile.report`` for the
release matrix, ``promotion.review``/``approvals`` for pull requests, ``promotion.history``,
``promotion.changes`` for rendered diffs); the page modules beside this one (``matrix``,
``prs``, ``history``, ``agents``) only put their results into templates. It is read-only:
every route answers GET (``/login`` also takes the token by POST and sets a cookie).

Starlette, Jinja2 and uvicorn are imported here and in the page modules, which only
``promote ui`` loads: no other command pays for them.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from promote import config
from promote.errors import NotFound, PromoteError, UsageError
from promote.promotion import documents
from promote.ui import agents, history, hub, matrix, prs, security

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Settings:
    repo_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = field(default=None, repr=False)  # required unless host is loopback
    agent_urls: Mapping[str, str] = field(default_factory=dict)  # env -> agent base URL
    kubeconfig: str | None = None  # for the status ConfigMaps (read-only credentials do)
    context: str | None = None
    refresh_s: float = 2.0  # how old main and agents' status may be before a page re-reads
    poll_s: float = 5.0  # how often open pages ask for fresh matrix and agent tables


def check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond loopback without a token (issue 18: safe by default)."""
    if not security.is_loopback(settings.host) and not settings.token:
        raise UsageError(
            f"--listen {settings.host}:{settings.port} is reachable from other machines; the "
            "dashboard then requires a token. Put one (16+ characters) in an environment "
            "variable and name it with --token-env NAME."
        )
    if settings.token is not None and len(settings.token) < 16:
        raise UsageError("the token is shorter than 16 characters; use a longer random one.")


class UI:
    """What every page needs: settings, the main snapshot, the agents' board, templates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Cluster access comes from here; an environment whose file does not load is shown
        # with its error, and the others still are (isolate).
        local = config.load_project(settings.repo_dir, isolate=True)
        self.hub = hub.Hub(settings.repo_dir, max_age_s=settings.refresh_s)
        self.board = agents.StatusBoard(
            local,
            urls=settings.agent_urls,
            kubeconfig=settings.kubeconfig,
            context=settings.context,
            max_age_s=settings.refresh_s,
        )
        self.templates = templates()

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            request=request,
            settings=self.settings,
            stale=self.hub.error,
            token=bool(self.settings.token),
            now=datetime.now(UTC),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def close(self) -> None:
        self.hub.close()
        self.board.close()


def templates() -> jinja2.Environment:
    """The pages' templates: autoescaped, strict about missing values."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = lambda sha: (sha or "")[:12]
    env.filters["when"] = _when
    env.filters["kind_label"] = documents.kind_label
    return env


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _errors(ui: UI) -> dict[Any, Any]:
    async def not_found(request: Request, exc: Exception) -> Response:
        return ui.page(request, "error.html", 404, title="Not found", message=str(exc))

    async def failed(request: Request, exc: Exception) -> Response:
        status = 400 if isinstance(exc, UsageError) else 502
        return ui.page(request, "error.html", status, title="Could not read", message=str(exc))

    return {NotFound: not_found, PromoteError: failed}


def _login(ui: UI) -> list[Route]:
    async def form(request: Request) -> Response:
        return ui.page(request, "login.html", title="Sign in", failed=False)

    async def submit(request: Request) -> Response:
        token = ui.settings.token or ""
        body = await request.body()  # a urlencoded form: one field (no multipart parser)
        given = urllib.parse.parse_qs(body[:4096].decode("utf-8", "replace")).get("token", [""])[0]
        if not token or not security.token_matches(given, token):
            return ui.page(request, "login.html", 401, title="Sign in", failed=True)
        out = RedirectResponse("/", status_code=303)
        out.set_cookie(
            security.COOKIE,
            security.cookie_value(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return out

    return [Route("/login", form, methods=["GET"]), Route("/login", submit, methods=["POST"])]


def create_app(settings: Settings) -> Starlette:
    ui = UI(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ui.close()

    routes = [
        *matrix.routes(ui),
        *prs.routes(ui),
        *history.routes(ui),
        *agents.routes(ui),
        *_login(ui),
        Route("/healthz", lambda request: PlainTextResponse("ok"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=_errors(ui), lifespan=lifespan)
    app.state.ui = ui
    if settings.token:
        app.add_middleware(security.TokenGate, token=settings.token)
    app.add_middleware(security.HostCheck, listen_host=settings.host)
    app.add_middleware(security.SecurityHeaders)
    return app


def serve(settings: Settings) -> None:
    """Run the dashboard until interrupted (uvicorn; its access log is off: URLs stay out of
    logs)."""
    import uvicorn

    check_exposure(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )
