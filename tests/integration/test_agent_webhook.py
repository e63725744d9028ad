"""Push notifications: POST /hooks/git on the agent's real HTTP server wakes its loop.

Every agent here polls once an hour (``poll_s`` and ``interval_s`` 3600 s), so a pass that
follows a push within the test's deadline can only have been triggered by the notification.
Senders: the real Gitea's push webhook, a signed GitHub-format request, and the post-receive
hook ``promote hooks install`` writes into a bare remote.
"""

from __future__ import annotations

import json
import shlex
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from promote import config
from promote.cluster import client
from promote.kustomize import render
from promote.reconcile import factory, webhook
from promote.reconcile import loop as loop_mod
from promote.reconcile.agent import Agent
from tests.gitops import GitOpsRepo, git, make_repo
from tests.helpers import run_cli
from tests.integration.test_agent import wait_for

if TYPE_CHECKING:
    from tests.gitea_fixture import GiteaServer

pytestmark = pytest.mark.integration
SECRET = "webhook-canary-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def repo(tmp_path: Path, namespace: str) -> GitOpsRepo:
    return make_repo(tmp_path, namespace_map={"dev": namespace})


@pytest.fixture
def cluster(control_plane: Any) -> client.Cluster:
    return client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))


Start = Callable[..., tuple[Agent, loop_mod.AgentLoop, str]]


@pytest.fixture
def start(repo: GitOpsRepo, cluster: client.Cluster) -> Iterator[Start]:
    """Start an agent loop polling once an hour, serving on a free 127.0.0.1 port; returns
    (agent, loop, base URL) once its first pass is done."""
    loops: list[loop_mod.AgentLoop] = []

    def run(**ov: Any) -> tuple[Agent, loop_mod.AgentLoop, str]:
        project = config.load_project(repo.work)
        agent = factory.build_agent(project, "dev", factory.Overrides(**ov), cluster=cluster)
        listen = f"127.0.0.1:{_free_port()}"
        settings = loop_mod.LoopSettings(
            interval_s=3600,
            poll_s=3600,
            leader_election=False,
            listen=listen,
            webhook=webhook.WebhookSettings(rate_per_s=1.0, burst=5),
        )
        lp = loop_mod.AgentLoop(agent, settings)
        threading.Thread(target=lp.run, daemon=True).start()
        loops.append(lp)
        wait_for(lambda: lp.passes >= 1 and lp.last_report is not None, timeout=60)
        return agent, lp, f"http://{listen}"

    yield run
    for lp in loops:
        lp.stop()


def _push_payload(ref: str = "refs/heads/main", after: str = "0" * 40) -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": after}).encode()


def _github_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    sig = webhook.sign(secret.encode(), body)
    return {"X-Hub-Signature-256": f"sha256={sig}", "X-GitHub-Event": "push"}


def test_signed_github_push_deploys_the_new_revision_at_once(
    repo: GitOpsRepo, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    _agent, lp, url = start()
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    rev = repo.commit_all("bump web-app")
    body = _push_payload(after=rev)
    r = httpx.post(f"{url}/hooks/git", content=body, headers=_github_headers(body))
    assert r.status_code == 202, r.text
    report = wait_for(
        lambda: lp.last_report if lp.last_report and lp.last_report.revision == rev else None,
        timeout=30,
    )
    assert report.error is None and lp.notifications == 1 and lp.passes == 2
    status = httpx.get(f"{url}/status").json()
    assert status["revision"] == rev and status["sync"] == "Synced"


def test_bad_notifications_are_refused_and_never_trigger_a_pass(
    repo: GitOpsRepo, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    _agent, lp, url = start()
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    repo.commit_all("bump web-app")
    hook = f"{url}/hooks/git"
    body = _push_payload()
    with httpx.Client(timeout=10) as c:
        assert c.post(hook, content=body, headers=_github_headers(body, "wrong")).status_code == 401
        assert c.post(hook, content=body, headers={"X-Gitea-Signature": "00" * 32}).status_code == (
            401
        )
        assert c.post(hook, content=body).status_code == 401  # no signature at all
        big = b"x" * (2 << 20)  # 2 MiB, over the 1 MiB limit, signed correctly all the same
        assert c.post(hook, content=big, headers=_github_headers(big)).status_code == 413
        other = _push_payload(ref="refs/heads/feature")
        r = c.post(hook, content=other, headers=_github_headers(other))
        assert r.status_code == 202 and "ignored" in r.text
        # A flood: the bucket (5 at once, then 1/s) refuses the rest; 50 requests, bounded.
        codes = [
            c.post(hook, content=body, headers=_github_headers(body, "wrong")).status_code
            for _ in range(50)
        ]
        assert 429 in codes and set(codes) <= {401, 429}, codes
        assert c.get(f"{url}/healthz").status_code == 200  # still serving
        exposed = c.get(f"{url}/metrics").text
        assert 'promote_webhook_requests_total{code="413"} 1.0' in exposed
        assert 'promote_webhook_requests_total{code="429"}' in exposed
    assert lp.notifications == 0 and lp.passes == 1
    assert lp.webhook.refused[401] >= 3 and lp.webhook.refused[413] == 1


def test_without_a_secret_the_endpoint_does_not_exist(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(webhook.SECRET_ENV, raising=False)
    _agent, lp, url = start()
    body = _push_payload()
    r = httpx.post(f"{url}/hooks/git", content=body, headers=_github_headers(body))
    assert r.status_code == 404
    assert lp.notifications == 0 and lp.passes == 1


def test_gitea_push_webhook_wakes_the_agent(
    repo: GitOpsRepo, start: Start, gitea: GiteaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    name = f"hooks-{uuid.uuid4().hex[:8]}"
    full = gitea.create_repo(name)
    remote = gitea.clone_url_for(gitea.admin, full)
    git(repo.work, "push", "-q", remote, "main")
    gitea.wait_for_branch("main", git(repo.work, "rev-parse", "HEAD").strip(), repo=full)
    _agent, lp, url = start(repo_url=remote)
    with gitea.api() as c:
        r = c.post(
            f"/repos/{full}/hooks",
            json={
                "type": "gitea",
                "active": True,
                "events": ["push"],
                "config": {"url": f"{url}/hooks/git", "content_type": "json", "secret": SECRET},
            },
        )
        assert r.status_code == 201, r.text
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    rev = repo.commit_all("bump web-app")
    git(repo.work, "push", "-q", remote, "main")
    report = wait_for(
        lambda: lp.last_report if lp.last_report and lp.last_report.revision == rev else None,
        timeout=30,
    )
    assert report.error is None and lp.notifications >= 1
    assert lp.webhook.accepted >= 1 and not lp.webhook.refused


def test_post_receive_hook_of_a_bare_remote_wakes_the_agent(
    repo: GitOpsRepo, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    _agent, lp, url = start()
    listen = url.removeprefix("http://")
    res = run_cli("hooks", "install", str(repo.remote), "--agent", listen)
    assert res.code == 0, res.stdout + res.stderr
    assert SECRET not in (repo.remote / "hooks" / "post-receive").read_text()
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    rev = repo.commit_all("bump web-app")  # pushes to the bare remote: its hook notifies
    report = wait_for(
        lambda: lp.last_report if lp.last_report and lp.last_report.revision == rev else None,
        timeout=30,
    )
    assert report.error is None and lp.notifications == 1


def test_hooks_install_refuses_a_foreign_hook_and_needs_the_secret(
    repo: GitOpsRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(webhook.SECRET_ENV, raising=False)
    res = run_cli("hooks", "install", str(repo.remote), "--agent", "127.0.0.1:1")
    assert res.code == 2 and webhook.SECRET_ENV in res.stderr
    hook = repo.remote / "hooks" / "post-receive"
    hook.write_text("#!/bin/sh\necho mine\n")
    res = run_cli(
        "hooks",
        "install",
        str(repo.remote),
        "--agent",
        "127.0.0.1:1",
        env={webhook.SECRET_ENV: SECRET},
    )
    assert res.code == 1 and "did not write" in res.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"


def _counting_kustomize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point agents built from now on at the real kustomize through a wrapper that counts its
    runs in the returned file (one line per ``kustomize build``)."""
    real = render.find_kustomize()
    count = tmp_path / "kustomize-runs"
    count.write_text("")
    wrapper = tmp_path / "kustomize-counting"
    wrapper.write_text(
        f"#!/bin/sh\necho run >> {shlex.quote(str(count))}\nshift\n"
        f'exec {" ".join(shlex.quote(a) for a in real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PROMOTE_KUSTOMIZE", str(wrapper))
    return count


def _push_branch(repo: GitOpsRepo, url: str, branch: str) -> str:
    """Commit the working tree's changes on ``branch`` (from main), push it and notify the
    agent as a forge would; main is left where it was. Returns the branch's head."""
    git(repo.work, "checkout", "-q", "-b", branch)
    git(repo.work, "commit", "-q", "-am", f"change on {branch}")
    head = git(repo.work, "rev-parse", "HEAD")
    git(repo.work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    git(repo.work, "checkout", "-q", "main")
    body = _push_payload(ref=f"refs/heads/{branch}", after=head)
    r = httpx.post(f"{url}/hooks/git", content=body, headers=_github_headers(body))
    assert r.status_code == 202 and "render ahead" in r.text, r.text
    return head


def _merge(repo: GitOpsRepo, url: str, head: str) -> None:
    """Fast-forward main to ``head`` on the remote and notify the agent."""
    git(repo.work, "merge", "-q", "--ff-only", head)
    git(repo.work, "push", "-q", "origin", "HEAD:main")
    body = _push_payload(after=head)
    r = httpx.post(f"{url}/hooks/git", content=body, headers=_github_headers(body))
    assert r.status_code == 202 and "pass scheduled" in r.text, r.text


def _image(cluster: client.Cluster, ns: str) -> str:
    dep = cluster.get(cluster.resource("apps/v1", "Deployment"), ns, "web-app")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_pushed_pr_head_is_rendered_ahead_and_its_merge_deploys_without_a_render(
    repo: GitOpsRepo,
    start: Start,
    cluster: client.Cluster,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    runs = _counting_kustomize(tmp_path, monkeypatch)
    agent, lp, url = start()
    assert len(runs.read_text().splitlines()) == 1  # the first pass
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    head = _push_branch(repo, url, "promote/dev/render-ahead")
    wait_for(lambda: lp.rendered_ahead == 1, timeout=60)
    # Rendered, not deployed: no pass ran and the cluster still runs the old version.
    assert lp.passes == 1 and _image(cluster, namespace).endswith(":v2.4.0")
    assert len(runs.read_text().splitlines()) == 2
    _merge(repo, url, head)
    report = wait_for(
        lambda: lp.last_report if lp.last_report and lp.last_report.revision == head else None,
        timeout=30,
    )
    assert report.error is None and _image(cluster, namespace).endswith(":v2.4.1")
    assert len(runs.read_text().splitlines()) == 2  # the merge's pass rendered nothing
    assert httpx.get(f"{url}/status").json()["sync"] == "Synced"
    # A change to another environment's overlay leaves dev's inputs as they were: the pass
    # for it renders nothing either; a change to dev's own overlay renders again.
    repo.edit("overlays/prod/kustomization.yaml", "newTag: v2.3.1", "newTag: v2.3.2")
    other = repo.commit_all("prod only")
    lp.notify()
    wait_for(lambda: lp.last_report and lp.last_report.revision == other, timeout=30)
    assert len(runs.read_text().splitlines()) == 2
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.1", "newTag: v2.4.2")
    mine = repo.commit_all("dev again")
    lp.notify()
    wait_for(lambda: lp.last_report and lp.last_report.revision == mine, timeout=30)
    assert len(runs.read_text().splitlines()) == 3
    assert agent.desired_state.renders.hits >= 2


def test_a_head_rendered_ahead_is_never_deployed_unverified(
    repo: GitOpsRepo,
    start: Start,
    cluster: client.Cluster,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent verifies (pinned at the first commit): an unapproved change pushed to a
    branch and then straight onto main is rendered ahead, and still never deployed."""
    monkeypatch.setenv(webhook.SECRET_ENV, SECRET)
    with (repo.work / "environments" / "dev.yaml").open("a") as f:
        f.write("approvals:\n  required: 1\n  approvers: [rm1, rm2]\n")
    pin = repo.commit_all("dev requires an approval")
    _agent, lp, url = start(trust_from=pin)
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    head = _push_branch(repo, url, "feature/unapproved")
    wait_for(lambda: lp.rendered_ahead == 1, timeout=60)
    _merge(repo, url, head)
    report = wait_for(
        lambda: lp.last_report if lp.last_report and lp.last_report.head == head else None,
        timeout=30,
    )
    assert report.revision == pin and report.verdict is not None
    assert not report.verdict.verified
    assert _image(cluster, namespace).endswith(":v2.4.0")
    assert httpx.get(f"{url}/status").json()["sync"] == "Unverified"
