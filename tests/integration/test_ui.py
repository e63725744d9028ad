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

from tests.helpers import run_cli
from tests.ui_world import CANARY, POLICY_FILE, World, free_port, serve

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
    assert web["environments"]["prod"]["prs"] == [
        {"number": ui_world.prs["prod"], "to": "v2.5.0", "rejected": None}
    ]
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


def test_matrix_shows_verification_trust_chain_holds_windows_and_rejections(
    ui_world: World, dashboard: str
) -> None:
    doc = get(dashboard, "/api/matrix").json()
    release = doc["release"]
    assert release["staging"]["verification"]["state"] == "Failed"
    assert "127.0.0.1" in release["staging"]["verification"]["reason"]  # the failing check
    unverified = release["prod"]["unverified"]
    assert unverified["commit"] == ui_world.unapproved and POLICY_FILE in unverified["files"]
    assert "INC-7: payments freeze" in release["prod"]["hold"]
    assert release["prod"]["windows"]["open"] is False
    assert release["prod"]["windows"]["nextOpening"]
    assert release["dev"]["windows"] is None and release["dev"]["hold"] is None
    api = next(r for r in doc["apps"] if r["app"] == "api")
    assert "api v1.8.0 was rejected by rm1" in api["environments"]["staging"]["rejected"]
    assert api["environments"]["prod"]["rejected"] is None  # prod runs v1.7.5
    assert "leaks connections" in api["environments"]["prod"]["prs"][0]["rejected"]
    words = text_of(get(dashboard, "/").text)
    assert "verification: Failed" in words
    assert f"trust chain: Unverified the agent refuses commit {ui_world.unapproved[:12]}" in words
    assert f"(changes {POLICY_FILE})" in words
    assert "on hold prod is on hold since" in words and "by rm2: INC-7" in words
    assert "merge window: closed outside every allow window; next opening" in words
    assert "rejected runs a rejected version: api v1.8.0" in words
    assert "rejected offers a rejected version" in words


def test_pr_page_shows_gates_scope_windows_rejections_and_holds(
    ui_world: World, dashboard: str
) -> None:
    n = ui_world.prs["prod"]
    words = text_of(get(dashboard, f"/prs/{n}").text)
    assert "Scope: what this change affects prod : because of overlays/prod/" in words
    assert "Policies on the head violated policy violation : prod:" in words
    assert "policy no-v2-5-0-in-prod" in words and "must not reach prod" in words
    assert "Merge window of prod closed outside every allow window; next opening" in words
    assert "Rejected versions rejected api v1.8.0 was rejected by rm1" in words
    assert "Hold on prod on hold prod is on hold since" in words
    assert "Approvals missing PR #" in words and "into prod needs 2 approval(s)" in words
    merged = text_of(get(dashboard, f"/prs/{ui_world.prs['staging']}").text)
    assert "counted at merge" in merged and "Before merge" not in merged


def test_pr_api_gives_what_promote_prs_and_show_print(ui_world: World, dashboard: str) -> None:
    cwd = ui_world.repo.work
    listed = run_cli("prs", "--state", "all", "-o", "json", cwd=cwd)
    assert listed.code == 0, listed.stderr
    api = get(dashboard, "/api/prs").json()
    assert api["pullRequests"] == listed.json()["pullRequests"]
    for n in ui_world.prs.values():
        shown = run_cli("show", str(n), "-o", "json", cwd=cwd)
        assert shown.code == 0, shown.stderr
        doc = get(dashboard, f"/api/prs/{n}").json()
        cli_doc = shown.json()
        for key in ("pullRequest", "head", "approvals", "policy", "gates"):
            assert doc[key] == cli_doc[key], key
    gates = get(dashboard, f"/api/prs/{ui_world.prs['prod']}").json()["gates"]
    assert gates["mergeable"] is False
    assert [w["env"] for w in gates["windows"] if not w["open"]] == ["prod"]
    assert any(f["policy"] == "no-v2-5-0-in-prod" and f["blocks"] for f in gates["policy"])
    assert gates["rejected"]["status"] == "blocked" and gates["holds"][0]["by"] == "rm2"
    assert get(dashboard, "/api/prs/999").status_code == 404


def test_history_marks_unapproved_changes_and_lists_rejections_and_holds(
    ui_world: World, dashboard: str
) -> None:
    api = get(dashboard, "/api/history/prod").json()
    unapproved = [e for e in api["entries"] if e["unapproved"]]
    assert unapproved[0]["commit"] == ui_world.unapproved  # newest first
    assert unapproved[0]["files"] == [POLICY_FILE]
    kinds = {r["kind"]: r for r in api["records"]}
    assert kinds["hold"]["by"] == "rm2" and kinds["hold"]["reason"] == "INC-7: payments freeze"
    assert kinds["reject"]["by"] == "rm1" and kinds["reject"]["reason"] == "leaks connections"
    staging = get(dashboard, "/api/history/staging").json()["records"]
    assert [r["kind"] for r in staging] == ["reject"]  # prod's hold is prod's
    cli = run_cli("history", "prod", "-o", "json", cwd=ui_world.repo.work)
    assert api["entries"] == cli.json()["entries"]  # what `promote history` prints
    staging_cli = run_cli("history", "staging", "-o", "json", cwd=ui_world.repo.work).json()
    staging_api = get(dashboard, "/api/history/staging").json()
    assert staging_api["rejections"] == staging_cli["rejections"]
    assert staging_api["rejections"][0]["version"] == "v1.8.0"  # staging ran api v1.8.0
    words = text_of(get(dashboard, "/history/prod").text)
    assert f"Reached prod without approval : changed {POLICY_FILE}" in words
    assert "rejected Reject api v1.8.0 · by rm1" in words and "Reason: leaks connections" in words
    assert "on hold Hold prod · by rm2" in words and "Reason: INC-7: payments freeze" in words


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
    api = get(dashboard, "/api/history/staging").json()
    merged = next(
        e for e in api["entries"] if e["pr"] and e["pr"]["number"] == ui_world.prs["staging"]
    )
    assert merged["approvals"][0]["signature"] == "valid"
    link = re.search(
        rf'href="(/history/staging/diff\?from=[0-9a-f]+&amp;to={merged["commit"]})"', page
    )
    assert link is not None
    diff = text_of(get(dashboard, link.group(1).replace("&amp;", "&")).text)
    assert "+ - image: registry.example.com/acme/web-app:v2.5.0" in diff


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
    for env in ("dev", "staging"):
        assert envs[env]["error"] is None and envs[env]["status"]["sync"] == "Synced"
    assert envs["prod"]["status"]["sync"] == "Unverified"  # a policy pushed without a PR
    assert "Trust chain Unverified refuses commit" in words
    assert "Verification Failed" in words
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
    apis = ["/api/matrix", "/api/agents", "/api/prs", *(f"/api/history/{e}" for e in envs)]
    apis += [f"/api/prs/{n}" for n in ui_world.prs.values()]
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
