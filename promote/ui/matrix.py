"""The release matrix page: apps down, environments across (``promote status`` as a page).

Versions come from main's overlays (``reconcile.report.images_in``), sync and health from
the agents' status (:class:`promote.ui.agents.StatusBoard`), and the matrix itself from
``reconcile.report.release_matrix``, the function ``promote status`` prints. Release control
(holds, rejected versions running, verification, trust chain, merge windows) comes from
``reconcile.control``, the functions ``promote status`` prints. The page adds links: an open
PR that would change a cell, and each environment's history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promote.forge import base as forge_base
from promote.kustomize import overlay
from promote.promotion import rejections, review
from promote.reconcile import control, report

if TYPE_CHECKING:
    from promote.ui.app import UI
    from promote.ui.hub import Snapshot


def _main_view(snap: Snapshot) -> dict[str, Any]:
    """What main says (kept with the snapshot): images, pipeline, open PRs by cell, holds,
    and each rejected version an environment runs or an open PR offers."""
    s = snap.session
    images = report.images_in(s.project)
    records = s.rejections()
    open_prs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for pr in s.forge.list(state=forge_base.PRState.OPEN):
        hits = {c.app: r for c, r in rejections.rejected(review.pr_changes(s, pr), records)}
        for item in pr.images:
            name, _, version = item.partition("=")
            app = overlay.Image(name).app
            found = hits.get(app)
            open_prs.setdefault((pr.env, app), []).append(
                {
                    "number": pr.number,
                    "to": version,
                    "rejected": found.describe() if found else None,
                }
            )
    overlays = {e: s.read_overlay(s.project.env(e))[1] for e in s.project.pipeline()}
    control_view = control.main_records(s.project, overlays)
    p = s.project
    return {
        "revision": s.sha,
        "project": p,
        # with each environment whose file does not load (its column carries the error)
        "pipeline": p.pipeline(broken=True),
        "upstream": {e: None if e in p.broken else p.env(e).upstream for e in p.pipeline()},
        "broken": {e: str(exc) for e, exc in p.broken.items()},
        "images": images,
        "open_prs": open_prs,
        **control_view,
    }


def view(ui: UI) -> dict[str, Any]:
    with ui.hub.use() as snap:
        main = snap.memo("matrix", lambda: _main_view(snap))
    statuses = ui.board.read()
    now = datetime.now(UTC)
    rows = report.release_matrix(main["project"], main["images"], statuses)
    control.mark_rejected(rows, main)
    for row in rows:
        for env, cell in row["environments"].items():
            cell["prs"] = main["open_prs"].get((env, row["app"]), [])
            status = (statuses.get(env) or {}).get("status") or {}
            correction = status.get("last_correction") or {}
            cell["corrected"] = _names_app(str(correction.get("object", "")), row["app"])
    return {
        "revision": main["revision"],
        "error": ui.hub.error,  # main could not be refreshed: what is shown is older
        "broken": main["broken"],
        "pipeline": main["pipeline"],
        "upstream": {e: main["upstream"].get(e) for e in main["pipeline"]},
        "rows": rows,
        "statuses": statuses,
        "release": {
            e: control.release_state(main, e, statuses.get(e) or {}, now) for e in main["pipeline"]
        },
    }


def _names_app(obj: str, app: str) -> bool:
    """Whether a drift correction's object ("Deployment production/web-app") is ``app``'s."""
    return obj.rsplit("/", 1)[-1] == app


def routes(ui: UI) -> list[Route]:
    def page(request: Request) -> Response:
        return ui.page(
            request, "matrix.html", title="Release matrix", poll_s=ui.settings.poll_s, **view(ui)
        )

    def table(request: Request) -> Response:
        return ui.page(request, "_matrix_table.html", poll_s=ui.settings.poll_s, **view(ui))

    def api(request: Request) -> Response:
        v = view(ui)
        return JSONResponse(
            {
                "revision": v["revision"],
                "error": v["error"],
                "errors": [{"environment": e, "message": m} for e, m in v["broken"].items()],
                "pipeline": v["pipeline"],
                "apps": v["rows"],
                "environments": v["statuses"],
                "release": v["release"],
            }
        )

    return [
        Route("/", page, methods=["GET"]),
        Route("/matrix/table", table, methods=["GET"]),
        Route("/api/matrix", api, methods=["GET"]),
    ]
