"""A world like the demo's for the dashboard's tests, and the dashboard served over it.

The example layout on a bare remote; a real age key per environment and a SOPS Secret in
each whose value is :data:`CANARY`; release managers rm1 and rm2 (real GnuPG keys). Story:
CI pushes web-app v2.5.0 to dev; PR #1 promotes it to staging, rm1 approves, it merges;
PR #2 promotes it to prod, opened by alice: rm1 approves, mallory (not an approver, no key)
too, so it waits for rm2. Each environment's agent runs passes against a real kube-apiserver
(decrypting the canary into the cluster) and dev's agent reverts a hand-made change, so the
status ConfigMaps hold sync, health and a drift correction. The dashboard then runs on a real
uvicorn server on 127.0.0.1 and a free port (``serve``).

Release control and the trust chain (issue 18's later parts): staging verifies each deploy
with an HTTP check that nothing answers, so its verification Fails; prod's only merge window
opens hours from now, so it is closed; prod is on hold and web-app v2.5.0 is rejected (both
records pushed to main); then someone pushes a policy straight to main, without a PR: it
denies web-app v2.5.0 in prod (PR #2's head violates it) and prod's agent refuses the commit:
Unverified, naming it and its file.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gitops import GitOpsRepo, git, make_deployments_available, make_repo
from tests.helpers import run_cli
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys: a fixture)
    gpg_keys,
    install_keys,
)

CANARY = "CANARY-ui-3f9a2c71-never-on-a-page"
POLICY_FILE = "policies/no-v2.5.0-in-prod.yaml"
POLICY = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-v2-5-0-in-prod}
spec:
  matchConstraints:
    namespaceSelector:
      matchExpressions:
      - {key: kubernetes.io/metadata.name, operator: In, values: [NAMESPACE]}
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], resources: [deployments], operations: [CREATE, UPDATE]}
  validations:
  - expression: "object.spec.template.spec.containers.all(c, !c.image.endsWith(':v2.5.0'))"
    message: web-app v2.5.0 must not reach prod
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-v2-5-0-in-prod}
spec:
  policyName: no-v2-5-0-in-prod
  validationActions: [Deny]
"""
ENVS = ("dev", "staging", "prod")
DEADLINE_S = 60.0


@dataclass
class World:
    repo: GitOpsRepo
    kubeconfig: Path
    namespaces: dict[str, str]
    age_keys: dict[str, Path]
    cluster: Any  # promote.cluster.client.Cluster
    prs: dict[str, int] = field(default_factory=dict)
    pin: str = ""  # the seeded commit the agents' verification starts at (--trust-from)
    unapproved: str = ""  # the policy commit pushed to main without a PR


def wait_for(check: Any, what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check()`` until it returns something truthy (tests wait on conditions)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")


def _secrets(repo: GitOpsRepo, tmp: Path) -> dict[str, Path]:
    env = {"HOME": str(tmp / "home"), "XDG_CONFIG_HOME": str(tmp / "home/.config")}
    keys = {}
    for name in ENVS:
        keys[name] = tmp / f"{name}.agekey"
        res = run_cli("keys", "init", name, "--out", str(keys[name]), cwd=repo.work, env=env)
        assert res.code == 0, res.stderr
        res = run_cli(
            "secrets", "set", name, "db", "password=-", "user=app", "--no-pr",
            cwd=repo.work, env=env, input=CANARY,
        )  # fmt: skip
        assert res.code == 0, res.stderr
    return keys


def _story(w: World, keys: Any) -> None:
    from promote.promotion import engine, propose, review, setimage
    from promote.secrets import gpg

    signer = gpg.Signer(gnupghome=str(keys.home))
    with engine.session(w.repo.work) as s:
        setimage.push_images(s, "dev", ["web-app=v2.5.0"])
    with engine.session(w.repo.work) as s:
        p = propose.plan_promotion(s, "staging")
        assert not p.blocked, p.problems()
        w.prs["staging"] = propose.open_pull_request(s, p, opener="dev1", signer=signer).number
    with engine.session(w.repo.work) as s:
        review.approve(s, w.prs["staging"], approver="rm1", signer=signer)
    with engine.session(w.repo.work) as s:
        review.merge(s, w.prs["staging"], by="alice")
    with engine.session(w.repo.work) as s:
        p = propose.plan_promotion(s, "prod", status_reader=_soaked(s))
        assert not p.blocked, p.problems()
        w.prs["prod"] = propose.open_pull_request(s, p, opener="dev1", signer=signer).number
    with engine.session(w.repo.work) as s:
        review.approve(s, w.prs["prod"], approver="rm1", signer=signer)
        _unlisted_approval(s, w.prs["prod"], keys, signer)


def _soaked(s: Any) -> Any:
    """staging's agent reports what its overlay sets, healthy for a day: prod's soak gate
    (10m in the example) passes; this world is about the dashboard, not soaking."""
    from promote.promotion import plan

    def read(env: str) -> plan.EnvStatus:
        images = {i.name: i.version for i in s.read_overlay(s.project.env(env))[1]}
        return plan.EnvStatus(env, True, True, images, datetime.now(UTC) - timedelta(days=1))

    return read


def _unlisted_approval(s: Any, number: int, keys: Any, signer: Any) -> None:
    """mallory (no key on main, not an approver) records an approval through the forge."""
    from promote.forge import base as forge_base

    pr = s.forge.get(number)
    at = datetime.now(UTC).replace(microsecond=0)
    payload = forge_base.approval_payload(
        pr=number, env=pr.env, head_sha=pr.head_sha, approver="mallory", at=at
    )
    sig = signer.sign(payload.encode(), fingerprints=[keys.fingerprints["mallory"]], who="mallory")
    approval = forge_base.Approval("mallory", number, pr.env, pr.head_sha, at, "", payload, sig)
    s.forge.approve(number, approval)


def _agent(w: World, env: str) -> Any:
    from promote import config
    from promote.reconcile import factory
    from promote.secrets import files, resolve

    project = config.load_project(w.repo.work)
    e = project.env(env)
    resolver = resolve.Resolver.for_environment(
        e,
        environ={"SOPS_AGE_KEY_FILE": str(w.age_keys[env])},
        sources=lambda: files.sources(project, e),
    )
    ov = factory.Overrides(kubeconfig=str(w.kubeconfig), trust_from=w.pin)
    return factory.build_agent(project, env, ov, cluster=w.cluster, resolver=resolver)


def _frozen(at: datetime) -> Any:
    return lambda: at


def _run_agents(w: World) -> None:
    from promote.reconcile import loop as loop_mod

    for env in ENVS:
        agent = _agent(w, env)
        report = agent.run_pass()
        assert report.error is None, report.error
        make_deployments_available(w.cluster, w.namespaces[env], ("web-app", "api"))
        assert agent.run_pass().error is None
        if env == "staging":  # an hour later: healthy long enough, and the check fails
            agent.clock = _frozen(datetime.now(UTC) + timedelta(hours=1))
            agent.verify_deploy()
            agent.write_status()
            assert (agent.status.verification or {}).get("state") == "Failed", agent.status
        agent.cache.stop()
    # dev's agent runs its loop; someone scales web-app by hand; the agent reverts it.
    agent = _agent(w, "dev")
    lp = loop_mod.AgentLoop(
        agent, loop_mod.LoopSettings(interval_s=3600, poll_s=0.5, leader_election=False)
    )
    thread = threading.Thread(target=lp.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: lp.passes and agent.healing_enabled, "dev's agent to start healing")
        ns = w.namespaces["dev"]
        w.cluster.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{ns}/deployments/web-app",
            body={"spec": {"replicas": 5}},
            content_type="application/merge-patch+json",
        )
        wait_for(lambda: agent.status.corrections > 0, "dev's agent to revert the drift")
    finally:
        lp.stop()
        thread.join(timeout=30)


def build(tmp: Path, control_plane: Any, keys: Any) -> World:
    from promote.cluster import client

    suffix = uuid.uuid4().hex[:6]
    namespaces = {env: f"ui-{env}-{suffix}" for env in ENVS}
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    for ns in namespaces.values():
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    repo = make_repo(tmp, namespace_map=namespaces)
    install_keys(repo.work, keys, ("rm1", "rm2", "dev1"))  # dev1 opens the PRs, signed
    _release_settings(repo)
    age_keys = _secrets(repo, tmp)
    pin = repo.commit_all("release managers' keys and the db Secret in every environment")
    w = World(repo, control_plane.kubeconfig, namespaces, age_keys, cluster, pin=pin)
    _story(w, keys)
    _run_agents(w)
    _release_control(w)
    return w


def _release_settings(repo: GitOpsRepo) -> None:
    """staging verifies each deploy against a port nothing listens on; prod's one merge
    window opens (daily, for an hour) three hours from now."""
    check = f"http://127.0.0.1:{free_port()}/ready"
    repo.edit(
        "environments/staging.yaml",
        "sync:\n",
        f"verification:\n  healthyFor: 1m\n  http:\n    url: {check}\n    timeout: 2s\nsync:\n",
    )
    opens = (datetime.now(UTC) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    repo.edit(
        "environments/prod.yaml",
        "sync:\n",
        "windows:\n  allow:\n  - rrule: FREQ=DAILY\n"
        f"    start: {opens:%Y-%m-%dT%H:%M:%S}\n    duration: 1h\n    timeZone: UTC\nsync:\n",
    )


def _release_control(w: World) -> None:
    """A hold, a rejection, and a policy pushed to main without approval (see the module)."""
    from promote.promotion import releases
    from promote.reconcile import status as status_mod

    now = datetime.now(UTC).replace(microsecond=0)
    releases.hold(w.repo.work, "prod", reason="INC-7: payments freeze", now=now, who="rm2")
    releases.reject(w.repo.work, "api", "v1.8.0", reason="leaks connections", now=now, who="rm1")
    git(w.repo.work, "pull", "-q", "--rebase", "origin", "main")
    (w.repo.work / "policies").mkdir(exist_ok=True)
    (w.repo.work / POLICY_FILE).write_text(POLICY.replace("NAMESPACE", w.namespaces["prod"]))
    w.unapproved = w.repo.commit_all("policies: no web-app v2.5.0 in prod (pushed, no PR)")
    agent = _agent(w, "prod")
    try:
        agent.run_pass()
        assert agent.status.sync == status_mod.SyncState.UNVERIFIED, agent.status.sync
    finally:
        agent.cache.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(settings: Any) -> Iterator[str]:
    """The dashboard on a real uvicorn server in a thread; yields its base URL."""
    import uvicorn

    from promote.ui import app

    server = uvicorn.Server(
        uvicorn.Config(
            app.create_app(settings),
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{settings.host}:{settings.port}"

    def up() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        return False

    try:
        wait_for(up, f"the dashboard at {base}", 30)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --- fixtures (registered in tests/conftest.py's pytest_plugins) -------------------------------


@pytest.fixture(scope="session")
def ui_world(
    tmp_path_factory: pytest.TempPathFactory,
    control_plane: Any,
    gpg_keys: Any,  # noqa: F811
) -> World:
    return build(tmp_path_factory.mktemp("ui-world"), control_plane, gpg_keys)


@pytest.fixture(scope="session")
def dashboard(ui_world: World) -> Iterator[str]:
    """The dashboard over the world, reading the status ConfigMaps; its base URL."""
    from promote.ui import app

    settings = app.Settings(
        repo_dir=ui_world.repo.work,
        port=free_port(),
        kubeconfig=str(ui_world.kubeconfig),
        refresh_s=0.5,
        poll_s=1.0,
    )
    with serve(settings) as base:
        yield base
