"""History pages: what reached an environment (``promote history``), and the rendered
difference of that environment between any two points of main.

Entries come from ``reconcile.audit.history``, what ``promote history`` prints (approvals
verified now, each change judged by the agent's rules: approved, restored or unapproved;
rollbacks and break-glass merges named), and the release records beside them (rejections,
holds) from ``promotion.history.record_events``; the difference from
``promotion.changes.env_diff`` (rendered with kustomize, Secret values redacted).
Revisions in a URL must be hexadecimal and on main: nothing else reaches a Git command.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promote.errors import NotFound
from promote.promotion import changes
from promote.promotion import history as history_mod
from promote.reconcile import audit

if TYPE_CHECKING:
    from promote.promotion import engine
    from promote.ui.app import UI

_HEX = re.compile(r"^[0-9a-f]{7,40}$")


def env_of(request: Request, s: engine.Session) -> str:
    env = str(request.path_params["env"])
    if env not in s.project.environments:
        raise NotFound(
            f"{env!r} is not an environment on {s.main} "
            f"(environments: {', '.join(s.project.pipeline())})."
        )
    return env


def revision_on_main(s: engine.Session, text: str) -> str:
    """The full SHA ``text`` names, when it is a commit of main (404 otherwise)."""
    found = s.repo.try_resolve(text) if _HEX.match(text) else None
    if found is None or not s.repo.is_ancestor(found, s.sha):
        raise NotFound(f"{text[:40]!r} is not a commit on {s.main}.")
    return found


Found = tuple[list[history_mod.Entry], list[history_mod.RecordEvent]]


def _entries(s: engine.Session, env: str) -> Found:
    return audit.history(s, env), history_mod.record_events(s, env)


def timeline(found: Found) -> list[tuple[str, Any]]:
    """Changes and records in one list, newest first (``("change" | "record", item)``)."""
    items: list[tuple[Any, int, str, Any]] = [
        (e.at, -i, "change", e) for i, e in enumerate(found[0])
    ] + [(r.at, -i, "record", r) for i, r in enumerate(found[1])]
    return [
        (kind, item) for _, _, kind, item in sorted(items, key=lambda x: (x[0], x[1]), reverse=True)
    ]


def routes(ui: UI) -> list[Route]:
    def entries(request: Request) -> tuple[str, Found, engine.Session]:
        with ui.hub.use() as snap:
            env = env_of(request, snap.session)
            found = snap.memo(("history", env), lambda: _entries(snap.session, env))
            return env, found, snap.session

    def page(request: Request) -> Response:
        env, found, s = entries(request)
        return ui.page(
            request, "history.html", title=f"History of {env}", env=env, entries=found[0],
            timeline=timeline(found),
            pipeline=s.project.pipeline(), required=s.project.env(env).config.approvals.required,
        )  # fmt: skip

    def api(request: Request) -> Response:
        """``promote history ENV -o json``'s document, plus the release records."""
        env, found, s = entries(request)
        rejected = history_mod.rejected_in(found[0], s.rejections())
        return JSONResponse(
            {
                "env": env,
                "entries": [history_mod.to_dict(e) for e in found[0]],
                "rejections": [history_mod.rejection_to_dict(r, c) for r, c in rejected],
                "records": [history_mod.record_to_dict(r) for r in found[1]],
            }
        )

    def diff_page(request: Request) -> Response:
        with ui.hub.use() as snap:
            s = snap.session
            env = env_of(request, s)
            before = revision_on_main(s, request.query_params.get("from", ""))
            after = revision_on_main(s, request.query_params.get("to", ""))
            found: Any = ui.hub.memo(
                ("env-diff", env, before, after),
                lambda: changes.env_diff(s, env, before, after, ui.hub.workdir),
            )
        return ui.page(
            request, "history_diff.html", title=f"{env}: {before[:12]} → {after[:12]}",
            env=env, before=before, after=after, diffs=found,
        )  # fmt: skip

    def index(request: Request) -> Response:
        with ui.hub.use() as snap:
            pipeline = snap.session.project.pipeline()
        return ui.page(request, "history_index.html", title="History", pipeline=pipeline)

    return [
        Route("/history", index, methods=["GET"]),
        Route("/history/{env}", page, methods=["GET"]),
        Route("/history/{env}/diff", diff_page, methods=["GET"]),
        Route("/api/history/{env}", api, methods=["GET"]),
    ]
