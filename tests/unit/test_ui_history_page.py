"""The history page's words for changes the demo-like world does not make: a merged rollback,
a break-glass merge (its signed reason verified now) and an unknown state an agent may report
later. The page template alone, over the core's own values (no server)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from promote import config
from promote.forge import base as forge_base
from promote.kustomize import overlay
from promote.promotion import approvals, history, plan
from promote.ui import app
from tests.helpers import REPO_ROOT

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _entry(number: int, kind: forge_base.PRKind, *, glass: str | None) -> history.Entry:
    sha, parent = f"{number:040x}", f"{number + 100:040x}"
    merge = forge_base.MergeResult(sha, "merge-commit", AT, "rm1", "f" * 40, ("rm1", "rm2"))
    pr = forge_base.PullRequest(
        number, f"PR {number}", "", "prod", None, kind, "b", "main", "f" * 40, "dev1",
        forge_base.PRState.MERGED, AT, "origin#refs/promote/prs/1", merge=merge,
    )  # fmt: skip
    checked = [
        approvals.CheckedApproval(
            forge_base.Approval(n, number, "prod", "f" * 40, AT, break_glass=glass),
            approvals.SignatureStatus.VALID,
        )
        for n in ("rm1", "rm2")
    ]
    old, new = overlay.Image("web-app", None, "v2.5.0"), overlay.Image("web-app", None, "v2.3.1")
    return history.Entry(
        commit=sha, parent=parent, at=AT, kind=str(kind), source=None,
        source_revision=parent if kind is forge_base.PRKind.ROLLBACK else None,
        changes=(plan.ImageChange("web-app", "web-app", old, new),), pr=pr,
        approvals=tuple(checked), judged=history.Judged.RESTORED
        if kind is forge_base.PRKind.ROLLBACK else history.Judged.APPROVED,
    )  # fmt: skip


def _render(name: str, **context: Any) -> str:
    base = {"request": None, "settings": None, "stale": None, "token": False, "now": AT}
    return app.templates().get_template(name).render(**base, **context)


def test_history_names_a_rollback_and_a_break_glass_merge_with_its_reason() -> None:
    rollback = _entry(7, forge_base.PRKind.ROLLBACK, glass=None)
    glass = _entry(8, forge_base.PRKind.PROMOTION, glass="INC-42: checkout is down")
    found = ([glass, rollback], [])
    html = _render(
        "history.html", title="History of prod", env="prod", entries=found[0],
        timeline=[("change", glass), ("change", rollback)], pipeline=["prod"], required=2,
    )  # fmt: skip
    words = _words(html)
    assert "rollback restored back to " + rollback.parent[:12] in words  # type: ignore[index]
    assert "Back to a verified revision's inputs" in words
    assert "break-glass merged outside the merge windows: INC-42: checkout is down" in words
    assert re.search(r'class="state bad"\s*>break-glass<', html)


def test_matrix_writes_out_a_state_it_does_not_know() -> None:
    from promote.reconcile import control

    status = {
        "sync": "Synced", "health": "Healthy", "revision": "a" * 40, "corrections": 0,
        "last_error": None, "autoPromotion": {"state": "Paused", "message": "held by rm2"},
    }  # fmt: skip
    main: dict[str, Any] = {"project": config.load_project(REPO_ROOT), "holds": {}}
    state = control.release_state(main, "prod", {"status": status}, AT)
    assert state["other"] == [
        {"name": "autoPromotion", "state": "Paused", "message": "held by rm2"}
    ]
    html = _render(
        "_matrix_table.html", poll_s=5, revision="a" * 40, pipeline=["prod"],
        upstream={"prod": None}, rows=[], statuses={"prod": {"status": status}},
        release={"prod": state},
    )  # fmt: skip
    assert "autoPromotion: Paused held by rm2" in _words(html)
