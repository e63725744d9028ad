"""The release matrix page: apps down, environments across (``promote status`` as a page).

Versions come from main's overlays (``reconcile.report.images_in``), sync and health from
the agents' status (:class:`promote.ui.agents.StatusBoard`), and the matrix itself from
``reconcile.report.release_matrix``, the function ``promote status`` prints. Release control
comes from the core as the CLI reads it: the agent's verification and trust-chain state from
its status (``reconcile/status.py``), holds and rejected versions from main's records
(``Session.hold``, ``Session.rejections``, ``rejections.matches``), merge windows from
``promotion.windows.state``. The page adds links: an open PR that would change a cell, and
each environment's history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promote.forge import base as forge_base
from promote.kustomize import overlay
from promote.promotion import rejections, review, windows
from promote.reconcile import report
from promote.reconcile import status as status_mod

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
    running: dict[tuple[str, str], str] = {}
    for env in s.project.pipeline():
        for image in s.read_overlay(s.project.env(env))[1]:
            for r in records:
                if rejections.matches(r, image):
                    running[(env, image.app)] = r.describe()
    holds = {e: h.describe() for e in s.project.pipeline() if (h := s.hold(e)) is not None}
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
        "running_rejected": running,
        "holds": holds,
    }


KNOWN = set(status_mod.EnvStatus.__dataclass_fields__)


def release_state(
    main: dict[str, Any], env: str, entry: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """One environment's release control, as the page and ``/api/matrix`` show it: the
    agent's verification and trust chain, the hold, the merge windows now, and any state
    the agent reports that this page does not know yet (its name and message, as given)."""
    status = entry.get("status") or {}
    if env in main["project"].broken:
        error = str(main["project"].broken[env])
        return {
            **dict.fromkeys(("verification", "unverified", "hold", "windows")),
            "error": error,
            "other": [],
        }
    cfg = main["project"].env(env).config.windows
    window = windows.state(cfg, now) if cfg.any else None
    extra = []
    for key in sorted(set(status) - KNOWN):
        value = status[key]
        if isinstance(value, dict) and "state" in value:
            text = value.get("message") or value.get("reason") or ""
            extra.append({"name": key, "state": str(value["state"]), "message": str(text)})
        elif isinstance(value, str | int | bool) and value not in ("", None):
            extra.append({"name": key, "state": str(value), "message": ""})
    return {
        "error": None,
        "verification": status.get("verification"),
        "unverified": status.get("unverified"),
        "hold": main["holds"].get(env),
        "windows": None
        if window is None
        else {
            "open": window.open,
            "text": window.describe(),
            "nextOpening": window.next_opening.isoformat() if window.next_opening else None,
        },
        "other": extra,
    }


def view(ui: UI) -> dict[str, Any]:
    with ui.hub.use() as snap:
        main = snap.memo("matrix", lambda: _main_view(snap))
    statuses = ui.board.read()
    now = datetime.now(UTC)
    rows = report.release_matrix(main["project"], main["images"], statuses)
    for row in rows:
        for env, cell in row["environments"].items():
            cell["prs"] = main["open_prs"].get((env, row["app"]), [])
            cell["rejected"] = main["running_rejected"].get((env, row["app"]))
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
            e: release_state(main, e, statuses.get(e) or {}, now) for e in main["pipeline"]
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
