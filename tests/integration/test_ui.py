"""The dashboard over a demo-like world: a real uvicorn server, real Git, GnuPG, kustomize,
kube-apiserver and agents (tests/ui_world.py). What a person reads on each page, and what no
page may ever carry (the canary Secret value the agents decrypted)."""

from __future__ import annotations

import base64
import re
from collections import deque
from urllib.parse import urljoin, urlparse

import httpx
import pytest

from tests.ui_world import CANARY, World, free_port, serve

pytestmark = pytest.mark.integration


def get(base: str, path: str, **kw: object) -> httpx.Response:
    return httpx.get(f"{base}{path}", timeout=60, **kw)  # type: ignore[arg-type]


def text_of(html: str) -> str:
    """The page's words, without tags (what a person reads)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_matrix_shows_versions_sync_health_behind_and_drift(
    ui_world: World, dashboard: str
) -> None:
    doc = get(dashboard, "/api/matrix").json()
    web = next(r for r in doc["apps"] if r["app"] == "web-app")
    assert web["environments"]["staging"]["tag"] == "v2.5.0"
    assert web["environments"]["prod"]["behindUpstream"] is True
    assert web["environments"]["dev"]["corrected"] is True
    assert web["environments"]["prod"]["prs"] == [{"number": ui_world.prs["prod"], "to": "v2.5.0"}]
    words = text_of(get(dashboard, "/").text)
    assert "v2.5.0" in words and "Synced" in words and "Healthy" in words
    assert "behind staging" in words and "drift corrected" in words
    assert f"PR #{ui_world.prs['prod']}: to v2.5.0" in words


def test_pr_list_has_open_and_merged(ui_world: World, dashboard: str) -> None:
    words = text_of(get(dashboard, "/prs").text)
    assert "Open (1)" in words and "Merged (1)" in words
    assert f"#{ui_world.prs['prod']}" in words and f"#{ui_world.prs['staging']}" in words


def test_pr_page_shows_approvals_verified_now_and_what_is_missing(
    ui_world: World, dashboard: str
) -> None:
    n = ui_world.prs["prod"]
    words = text_of(get(dashboard, f"/prs/{n}").text)
    assert "rm1" in words and "valid" in words and "counted" in words
    assert "mallory" in words and "not a listed approver of prod" in words
    assert "Not mergeable" in words and "Missing: 1 more from rm2" in words
    assert f"promote approve {n} --as rm2" in words and f"promote merge {n}" in words
    assert "web-app v2.3.1 v2.5.0" in words  # prod on main now, and what the PR sets


def test_pr_diff_renders_each_affected_environment_line_by_line(
    ui_world: World, dashboard: str
) -> None:
    page = get(dashboard, f"/prs/{ui_world.prs['prod']}/diff").text
    words = text_of(page)
    assert "overlays/prod/kustomization.yaml" in words
    assert "prod: 2 object(s) change" in words  # web-app and api come from staging
    assert "- - image: registry.example.com/acme/web-app:v2.3.1" in words
    assert "+ - image: registry.example.com/acme/web-app:v2.5.0" in words
    assert "\n<ins>+      - image: registry.example.com/acme/web-app:v2.5.0</ins>\n" in page


def test_history_lists_promotions_with_approvers_and_diffs_two_points(
    ui_world: World, dashboard: str
) -> None:
    page = get(dashboard, "/history/staging").text
    words = text_of(page)
    assert f"PR #{ui_world.prs['staging']}" in words and "merged by alice" in words
    assert "rm1" in words and "signature valid" in words
    link = re.search(r'href="(/history/staging/diff\?from=[0-9a-f]+&amp;to=[0-9a-f]+)"', page)
    assert link is not None
    diff = text_of(get(dashboard, link.group(1).replace("&amp;", "&")).text)
    assert "+ - image: registry.example.com/acme/web-app:v2.5.0" in diff
    api = get(dashboard, "/api/history/staging").json()
    assert api["entries"][0]["approvals"][0]["signature"] == "valid"


def test_history_refuses_revisions_that_are_not_on_main(dashboard: str) -> None:
    for query in ("from=--output=x&to=HEAD", "from=deadbeef&to=deadbeef"):
        assert get(dashboard, f"/history/dev/diff?{query}").status_code == 404
    assert get(dashboard, "/history/nowhere").status_code == 404


def test_agents_page_reads_configmaps_and_agent_status_urls(ui_world: World) -> None:
    from promote.reconcile import metrics
    from promote.ui import app

    dev_status = ui_world.cluster.get(
        ui_world.cluster.resource("v1", "ConfigMap"),
        ui_world.namespaces["dev"],
        "promote-status-dev",
    )
    port = free_port()
    # The agent's own /status server (what `promote agent --listen` runs), serving dev's status.
    server = metrics.serve(
        f"127.0.0.1:{port}",
        status=lambda: __import__("json").loads(dev_status["data"]["status.json"]),
        healthy=lambda: True,
        metrics=metrics.Metrics(),
    )
    try:
        settings = app.Settings(
            repo_dir=ui_world.repo.work,
            port=free_port(),
            kubeconfig=str(ui_world.kubeconfig),
            agent_urls={"dev": f"http://127.0.0.1:{port}"},
        )
        with serve(settings) as base:
            envs = get(base, "/api/agents").json()["environments"]
            words = text_of(get(base, "/agents").text)
    finally:
        server.shutdown()
    assert envs["dev"]["source"] == f"http://127.0.0.1:{port}/status"
    assert envs["staging"]["source"].startswith("ConfigMap ")
    for env in ("dev", "staging", "prod"):
        assert envs[env]["error"] is None and envs[env]["status"]["sync"] == "Synced"
    assert "Drift corrections 1; last: Deployment" in words
    assert "Last error none" in words


def crawl(base: str, start: list[str]) -> dict[str, httpx.Response]:
    """Every same-origin page reachable from ``start`` (links and htmx sources)."""
    seen: dict[str, httpx.Response] = {}
    queue = deque(start)
    while queue:
        path = queue.popleft()
        if path in seen:
            continue
        seen[path] = response = get(base, path)
        if "html" not in response.headers.get("content-type", ""):
            continue
        for ref in re.findall(r'(?:href|src|hx-get)="([^"]+)"', response.text):
            url = urlparse(urljoin(f"{base}{path}", ref.replace("&amp;", "&")))
            if url.netloc == urlparse(base).netloc:
                queue.append(url.path + (f"?{url.query}" if url.query else ""))
    return seen


def test_no_secret_value_on_any_page_or_api_response(ui_world: World, dashboard: str) -> None:
    # The agents did decrypt it: the canary is in the cluster.
    ns = ui_world.namespaces["dev"]
    live = ui_world.cluster.get(ui_world.cluster.resource("v1", "Secret"), ns, "db")
    assert base64.b64decode(live["data"]["password"]).decode() == CANARY
    envs = ("dev", "staging", "prod")
    apis = ["/api/matrix", "/api/agents", *(f"/api/history/{e}" for e in envs)]
    pages = crawl(dashboard, ["/", "/prs", "/agents", "/history", *apis])
    assert len(pages) > 15 and any("/diff" in p for p in pages)
    encoded = base64.b64encode(CANARY.encode()).decode()
    for path, response in pages.items():
        assert response.status_code in (200, 404), (path, response.status_code)
        assert CANARY not in response.text and encoded not in response.text, path


def test_security_headers_on_every_response_and_read_only(dashboard: str) -> None:
    for path in ("/", "/static/htmx.min.js", "/nope", "/api/matrix"):
        headers = get(dashboard, path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert httpx.post(f"{dashboard}/prs/1", timeout=10).status_code == 405
    assert "<script>" not in get(dashboard, "/").text  # no inline script anywhere
    # Another site's name for 127.0.0.1 (DNS rebinding) gets nothing.
    assert get(dashboard, "/", headers={"Host": "evil.example"}).status_code == 421


def test_token_required_when_configured_compared_and_kept_in_a_cookie(ui_world: World) -> None:
    from promote.errors import UsageError
    from promote.ui import app

    token = "t0ken-" + "x" * 20
    exposed = app.Settings(repo_dir=ui_world.repo.work, host="0.0.0.0")
    with pytest.raises(UsageError, match="--token-env"):
        app.check_exposure(exposed)
    settings = app.Settings(
        repo_dir=ui_world.repo.work, port=free_port(), token=token, refresh_s=30
    )
    with serve(settings) as base:
        assert get(base, "/api/matrix").status_code == 401
        assert (
            get(base, "/api/matrix", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        ok = get(base, "/api/matrix", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        browser = get(base, "/", headers={"Accept": "text/html"})
        assert browser.status_code == 303 and browser.headers["location"] == "/login"
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.post("/login", data={"token": "wrong"}).status_code == 401
            signed_in = c.post("/login", data={"token": token})
            assert signed_in.status_code == 303
            cookie = signed_in.headers["set-cookie"]
            assert token not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert c.get("/prs").status_code == 200
