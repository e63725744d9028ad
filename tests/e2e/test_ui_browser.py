"""The dashboard in a real browser: Debian's Chromium driven by Playwright (no browser of
Playwright's own: tools/ensure-chromium installs /usr/bin/chromium).

A release manager clicks matrix -> PR -> diff -> history -> agents on the demo-like world of
tests/ui_world.py and reads what the pages say, release control and the trust chain included
(Unverified, a failed verification, a hold, a closed window, a policy violation, an
unapproved change); the matrix updates without a reload when an agent reports; a keyboard
reaches and opens a link. Pages must run under their own CSP
without a console error. ``PROMOTE_UI_SCREENSHOTS=docs`` also writes the README's
screenshots (docs/ui-*.png); otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT
from tests.ui_world import World

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 30_000


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run tools/ensure-chromium (make tools)", pytrace=False)
    errors: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1180, "height": 760},
        )
        context.set_default_timeout(TIMEOUT_MS)
        p = context.new_page()
        p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        p.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield p
        finally:
            context.close()
    assert not errors, f"console errors (a CSP violation?): {errors}"


def shot(page: Any, name: str, tmp_path: Path) -> None:
    """A screenshot of the viewport; into docs/ when PROMOTE_UI_SCREENSHOTS=docs."""
    out = tmp_path / f"ui-{name}.png"
    page.screenshot(path=str(out))
    assert out.stat().st_size > 10_000
    if os.environ.get("PROMOTE_UI_SCREENSHOTS") == "docs":
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(out, REPO_ROOT / "docs" / out.name)


def test_release_manager_clicks_matrix_pr_diff_history_and_agents(
    ui_world: World, dashboard: str, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    n = ui_world.prs["prod"]
    page.goto(f"{dashboard}/")
    expect(page.get_by_role("heading", name="Release matrix")).to_be_visible()
    web = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="web-app"))
    expect(web).to_contain_text("v2.3.1")
    expect(web).to_contain_text("behind staging")
    expect(web).to_contain_text("drift corrected")
    expect(web.get_by_text("Synced").first).to_have_class(re.compile(r"\bok\b"))
    shot(page, "matrix", tmp_path)

    page.locator(f"#pr-{n}-web-app-prod").click()
    expect(page).to_have_url(f"{dashboard}/prs/{n}")
    expect(page.get_by_role("heading", name=f"PR #{n}")).to_be_visible()
    expect(page.locator("#verdict")).to_contain_text("Not mergeable")
    expect(page.locator("#verdict")).to_contain_text("Missing: 1 more from rm2")
    approvals = page.get_by_role("row").filter(has_text="mallory")
    expect(approvals).to_contain_text("not a listed approver of prod")
    expect(page.get_by_text(f"promote approve {n} --as rm2")).to_be_visible()
    shot(page, "pr", tmp_path)

    page.get_by_role("link", name="Rendered diff of each affected environment").click()
    expect(page.get_by_role("heading", name="prod: 2 object(s) change")).to_be_visible()
    expect(page.locator("ins").filter(has_text="web-app:v2.5.0")).to_be_visible()
    expect(page.locator("del").filter(has_text="web-app:v2.3.1")).to_be_visible()
    shot(page, "diff", tmp_path)

    page.get_by_role("link", name="History").first.click()
    page.get_by_role("link", name="staging").click()
    expect(page.get_by_role("heading", name="History of staging")).to_be_visible()
    latest = page.locator("ol.timeline > li").filter(has_text="PR #").first
    expect(latest).to_contain_text(f"PR #{ui_world.prs['staging']}")
    expect(latest).to_contain_text("signature valid")
    shot(page, "history", tmp_path)
    page.get_by_role("button", name="Show the rendered difference").click()
    expect(page.locator("ins").filter(has_text="web-app:v2.5.0")).to_be_visible()

    page.get_by_role("link", name="Agents").click()
    dev = page.locator("section.agent").filter(has=page.get_by_role("heading", name="dev"))
    expect(dev).to_contain_text("Drift corrections")
    expect(dev).to_contain_text("Deployment")
    shot(page, "agents", tmp_path)


def test_release_manager_sees_unverified_failed_hold_closed_window_and_violation(
    ui_world: World, dashboard: str, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    bad = re.compile(r"\bbad\b")
    page.goto(f"{dashboard}/")
    prod = page.locator("#env-prod")
    unverified = prod.locator("li.unverified")
    expect(unverified).to_contain_text(f"refuses commit {ui_world.unapproved[:12]}")
    expect(unverified).to_contain_text("policies/no-v2.5.0-in-prod.yaml")
    expect(unverified.get_by_text("Unverified", exact=True)).to_have_class(bad)
    expect(prod.locator("li.hold")).to_contain_text("on hold")
    expect(prod.locator("li.hold")).to_contain_text("INC-7: payments freeze")
    window = prod.locator("li.window")
    expect(window).to_contain_text("next opening")
    expect(window.get_by_text("closed", exact=True)).to_have_class(bad)
    failed = page.locator("#env-staging li.verification")
    expect(failed.get_by_text("Failed", exact=True)).to_have_class(bad)
    api = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="api"))
    expect(api).to_contain_text("runs a rejected version: api v1.8.0 was rejected by rm1")
    shot(page, "release", tmp_path)

    n = ui_world.prs["prod"]
    page.locator(f"#pr-{n}-web-app-prod").click()
    gates = page.locator("#gates")
    policy = gates.get_by_role("row").filter(has_text="Policies on the head")
    expect(policy).to_contain_text("policy violation")
    expect(policy).to_contain_text("web-app v2.5.0 must not reach prod")
    expect(policy.get_by_text("violated", exact=True)).to_have_class(bad)
    closed = gates.get_by_role("row").filter(has_text="Merge window of prod")
    expect(closed.get_by_text("closed", exact=True)).to_have_class(bad)
    expect(gates.get_by_role("row").filter(has_text="Hold on prod")).to_contain_text("rm2")
    expect(gates.get_by_role("row").filter(has_text="Rejected versions")).to_contain_text(
        "api v1.8.0"
    )
    expect(page.locator("#scope")).to_contain_text("prod: because of overlays/prod/")
    gates.evaluate("el => el.scrollIntoView({block: 'start'})")
    shot(page, "gates", tmp_path)

    page.goto(f"{dashboard}/history/prod")
    change = page.locator("ol.timeline > li.unapproved").first
    expect(change).to_contain_text(f"commit {ui_world.unapproved[:12]}")
    expect(change).to_contain_text("Reached prod without approval")
    expect(change.get_by_text("unapproved", exact=True)).to_have_class(bad)
    expect(page.locator("ol.timeline > li.record").filter(has_text="Hold prod")).to_contain_text(
        "INC-7: payments freeze"
    )


def test_keyboard_reaches_a_pull_request_link_and_opens_it(
    ui_world: World, dashboard: str, page: Any
) -> None:
    from playwright.sync_api import expect

    n = ui_world.prs["prod"]
    page.goto(f"{dashboard}/prs")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    target = page.locator(f"#prs-link-{n}")
    for _ in range(40):  # every focusable element before it, in order
        if target.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(target).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{dashboard}/prs/{n}")
    expect(page.get_by_role("heading", name=f"PR #{n}")).to_be_visible()


def test_matrix_updates_without_reload_when_an_agent_reports(
    ui_world: World, dashboard: str, page: Any
) -> None:
    from playwright.sync_api import expect

    from promote.reconcile import status as status_mod

    ns = ui_world.namespaces["staging"]
    before = status_mod.read(ui_world.cluster, env="staging", namespace=ns)
    assert before is not None
    page.goto(f"{dashboard}/")
    header = page.get_by_role("columnheader").filter(has_text="from dev")
    expect(header).to_contain_text("Synced")
    failed = status_mod.EnvStatus.from_dict(before.to_dict())
    failed.sync = status_mod.SyncState.FAILED
    failed.last_error = {"stage": "render", "message": "kustomize failed", "at": "2026-01-01"}
    status_mod.write(ui_world.cluster, failed, namespace=ns)
    try:
        expect(header).to_contain_text("last pass failed at render")  # htmx polled it in
        expect(header.get_by_text("Failed", exact=True).first).to_have_class(re.compile(r"\bbad\b"))
    finally:
        status_mod.write(ui_world.cluster, before, namespace=ns)
