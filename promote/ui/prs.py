"""Pull request pages: the list, one PR (plan, approvals verified now, what is missing, the
commands to approve and merge) and its rendered diff per affected environment.

Approvals are checked by ``promotion.review.check_approvals`` (each signature verified now
against its approver's key on main); an open PR's gates (the approval verdict, policies on its
head, merge windows, rejected versions, holds, supply-chain gates) come from
``promotion.readiness.assess``: what ``promote show`` prints, from what ``promote merge``
decides with. The diff page renders with kustomize through ``promotion.changes``; Secret
values are redacted before any text is made. ``/api/prs`` and ``/api/prs/N`` give the
documents of ``promote prs -o json`` and ``promote show -o json``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promote.errors import NotFound, UsageError
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.promotion import approvals, changes, documents, readiness, review

if TYPE_CHECKING:
    from promote.promotion import engine
    from promote.ui.app import UI
    from promote.ui.hub import Snapshot


def number_of(request: Request) -> int:
    try:
        return review.parse_pr(str(request.path_params["number"]))
    except UsageError as exc:  # this URL names no PR
        raise NotFound(f"{request.path_params['number']!r} is not a PR number.") from exc


def _list(snap: Snapshot) -> dict[str, list[forge_base.PullRequest]]:
    found = snap.session.forge.list()
    by_state: dict[str, list[forge_base.PullRequest]] = {str(s): [] for s in forge_base.PRState}
    for pr in sorted(found, key=lambda p: -p.number):
        by_state[str(pr.state)].append(pr)
    return by_state


def _approval_rows(
    checked: list[approvals.CheckedApproval], verdict: approvals.Verdict
) -> list[dict[str, Any]]:
    """Each approval with its signature status and whether it counts, and why not."""
    not_counted: dict[str, list[tuple[str, str]]] = {}
    for name, reason in verdict.not_counted:
        not_counted.setdefault(name, []).append(("not counted", reason))
    for name, reason in verdict.refused:
        not_counted.setdefault(name, []).append(("refused", reason))
    rows = []
    counted = set(verdict.counted)
    for c in sorted(checked, key=lambda c: c.approval.at):
        name = c.approval.approver
        if name in counted:
            outcome, reason = "counted", ""
            counted.discard(name)  # a second approval by the same person is "already counted"
        elif not_counted.get(name):
            outcome, reason = not_counted[name].pop(0)
        else:
            outcome, reason = "not counted", ""
        rows.append({"checked": c, "outcome": outcome, "reason": reason})
    return rows


def _detail(s: engine.Session, number: int) -> dict[str, Any]:
    """What the PR page shows but the merge windows, which depend on the clock (``gates.at``
    on each request: they open and close while main stays the same)."""
    pr = s.forge.get(number)
    checked = review.check_approvals(s, s.forge.approvals(number))
    server = forge_factory.server_forge(s.forge)
    current = {i.name: i.version for i in s.read_overlay(s.project.env(pr.env))[1]}
    images = []
    for item in pr.images:
        name, _, version = item.partition("=")
        images.append({"name": name, "now": current.get(name, "(none)"), "to": version})
    seen, gates, rows, candidates = None, None, [], []
    if pr.state is forge_base.PRState.OPEN:
        seen = review.inspect_pr(s, pr)  # the scope, from what the head changes
        gates = readiness.gates(s, pr, seen=seen)  # what `promote show` prints
        verdict = gates.verdict
        rows = _approval_rows(checked, verdict)
        # Who could still approve, over every environment the PR affects (its scope).
        candidates = list(dict.fromkeys(n for e in verdict.envs for n in verdict.candidates(e)))
    else:
        rows = [{"checked": c, "outcome": "", "reason": ""} for c in checked]
    return {
        "pr": pr,
        "images": images,
        "rows": rows,
        "seen": seen,
        "gates": gates,
        "candidates": candidates,
        "server": server.name if server is not None else None,
        "main": s.sha,
    }


def _document(s: engine.Session, number: int) -> dict[str, Any]:
    """``promote show N -o json``, but the gates' clock-dependent part (see ``_detail``)."""
    pr = s.forge.get(number)
    checked = review.check_approvals(s, s.forge.approvals(number))
    seen, gates = None, None
    if pr.state is forge_base.PRState.OPEN:
        seen = review.inspect_pr(s, pr, rendered=True)
        gates = readiness.gates(s, pr, seen=seen)
    return {
        "pullRequest": documents.pr_to_dict(pr, body=True),
        "head": documents.head_to_dict(seen) if seen else None,
        "approvals": [documents.checked_to_dict(c) for c in checked],
        "policy": documents.verdict_to_dict(gates.verdict) if gates else None,
        "gates": gates,
    }


def routes(ui: UI) -> list[Route]:
    def listing(request: Request) -> Response:
        with ui.hub.use() as snap:
            by_state = snap.memo("prs", lambda: _list(snap))
        return ui.page(request, "prs.html", title="Pull requests", by_state=by_state)

    def detail(request: Request) -> Response:
        number = number_of(request)
        with ui.hub.use() as snap:
            found = snap.memo(("pr", number), lambda: _detail(snap.session, number))
        gates = found["gates"].at(datetime.now(UTC)) if found["gates"] else None
        return ui.page(request, "pr.html", title=f"PR #{number}", **{**found, "gates": gates})

    def api_list(request: Request) -> Response:
        with ui.hub.use() as snap:  # `promote prs --state all -o json`
            every = snap.memo("prs-all", lambda: snap.session.forge.list())
        return JSONResponse({"pullRequests": [documents.pr_to_dict(p) for p in every]})

    def api_detail(request: Request) -> Response:
        number = number_of(request)
        with ui.hub.use() as snap:
            doc = snap.memo(("pr-doc", number), lambda: _document(snap.session, number))
        gates = doc["gates"]
        now = datetime.now(UTC)
        return JSONResponse({**doc, "gates": readiness.to_dict(gates.at(now)) if gates else None})

    def diff_page(request: Request) -> Response:
        number = number_of(request)
        with ui.hub.use() as snap:
            s = snap.session
            pr = s.forge.get(number)
            before, after = changes.revisions(s, pr)
            change = ui.hub.memo(
                ("change", before, after),
                lambda: changes.between(s, before, after, ui.hub.workdir),
            )
        return ui.page(
            request, "diff.html", title=f"PR #{number}: rendered diff", pr=pr, change=change
        )

    return [
        Route("/prs", listing, methods=["GET"]),
        Route("/prs/{number}", detail, methods=["GET"]),
        Route("/prs/{number}/diff", diff_page, methods=["GET"]),
        Route("/api/prs", api_list, methods=["GET"]),
        Route("/api/prs/{number}", api_detail, methods=["GET"]),
    ]
