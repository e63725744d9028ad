"""The agent decrypts SOPS Secrets in memory, heals Secret drift, refuses tampered files."""

from __future__ import annotations

import base64
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.reconcile import factory, trust
from promote.reconcile import loop as loop_mod
from promote.reconcile import status as status_mod
from tests.gitops import GitOpsRepo, git, make_repo
from tests.helpers import run_cli

pytestmark = pytest.mark.integration
CANARY = "CANARY-agent-7d1f0c2e"


@pytest.fixture
def secret_repo(
    tmp_path: Path, namespace: str, secrets_home: Path, monkeypatch: pytest.MonkeyPatch
) -> GitOpsRepo:
    repo = make_repo(tmp_path, namespace_map={"dev": namespace})
    key_out = secrets_home / "dev.agekey"
    res = run_cli("keys", "init", "dev", "--out", str(key_out), cwd=repo.work)
    assert res.code == 0, res.stderr
    res = run_cli(
        "secrets", "set", "dev", "db", "password=-", "user=app", cwd=repo.work, input=CANARY
    )
    assert res.code == 0, res.stderr
    repo.commit_all("db secret")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_out))
    return repo


def _agent(repo: GitOpsRepo, cluster: client.Cluster) -> Any:
    project = config.load_project(repo.work)
    return factory.build_agent(project, "dev", factory.Overrides(), cluster=cluster)


def _tamper(repo: GitOpsRepo) -> None:
    """Swap one ciphertext byte of the password value."""
    path = repo.work / "overlays/dev/secrets/db.sops.yaml"
    text = path.read_text()
    match = re.search(r"(password: ENC\[AES256_GCM,data:)([A-Za-z0-9+/])", text)
    assert match
    swapped = "A" if match.group(2) != "A" else "B"
    path.write_text(text[: match.start(2)] + swapped + text[match.end(2) :])


def _secret(cluster: client.Cluster, ns: str) -> dict[str, Any] | None:
    return cluster.get(cluster.resource("v1", "Secret"), ns, "db")


def test_secret_decrypted_in_memory_applied_and_healed(
    secret_repo: GitOpsRepo,
    control_plane: Any,
    namespace: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    agent = _agent(secret_repo, cluster)
    lp = loop_mod.AgentLoop(
        agent, loop_mod.LoopSettings(interval_s=3600, poll_s=0.5, leader_election=False)
    )
    threading.Thread(target=lp.run, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not (lp.passes and agent.healing_enabled) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lp.last_report is not None and lp.last_report.error is None, lp.last_report
        live = _secret(cluster, namespace)
        assert live is not None
        assert base64.b64decode(live["data"]["password"]).decode() == CANARY
        assert "sops" not in live
        # Someone edits the Secret's value in the cluster: reverted by the watch.
        cluster.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/secrets/db",
            body={"data": {"password": base64.b64encode(b"hacked").decode()}},
            content_type="application/merge-patch+json",
        )
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if base64.b64decode(_secret(cluster, namespace)["data"]["password"]) == CANARY.encode():
                break
            time.sleep(0.02)
        else:
            raise AssertionError("Secret drift not reverted within 2 s")
        corr = agent.status.last_correction
        assert corr is not None and corr.object == f"Secret {namespace}/db"
    finally:
        lp.stop()
    time.sleep(0.5)
    # The canary reached the cluster only: not the status, events, logs or output.
    st = status_mod.read(cluster, env="dev", namespace=namespace)
    events = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")
    out, err = capfd.readouterr()
    for text in (
        str(st),
        str(events),
        out,
        err,
        caplog.text,
        base64.b64encode(CANARY.encode()).decode() and str(agent.status.to_dict()),
    ):
        assert CANARY not in text
    for path in Path(secret_repo.work).rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.mark.usefixtures("decrypt_backend")
def test_tampered_sops_file_fails_at_decrypt_and_applies_nothing(
    secret_repo: GitOpsRepo, control_plane: Any, namespace: str
) -> None:
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    agent = _agent(secret_repo, cluster)
    assert agent.run_pass().error is None
    before = _secret(cluster, namespace)
    _tamper(secret_repo)  # and bump an image at once
    secret_repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.5.0")
    secret_repo.commit_all("tampered")
    report = agent.run_pass()
    agent.cache.stop()
    assert report.error is not None and report.error.stage == "decrypt"
    assert report.applied == []
    web = cluster.get(cluster.resource("apps/v1", "Deployment"), namespace, "web-app")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.4.0")
    assert _secret(cluster, namespace)["data"] == before["data"]
    st = status_mod.read(cluster, env="dev", namespace=namespace)
    assert st is not None and st.sync == "Failed" and st.last_error["stage"] == "decrypt"
    assert "db" in st.last_error["message"]


class _Counting:
    """The agent's resolver, counting what it is asked to resolve."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    def resolve(self, objects: list[dict[str, Any]], *, env: str) -> list[dict[str, Any]]:
        self.calls += 1
        return self.real.resolve(objects, env=env)  # type: ignore[no-any-return]


def test_decryption_started_beside_validation_keeps_the_order_of_the_stages(
    secret_repo: GitOpsRepo, control_plane: Any, namespace: str
) -> None:
    """A new render's Secrets are decrypted while it is validated (DesiredState._render);
    what a pass reports and applies is as if one stage followed the other: an invalid render
    fails at validate even when its Secrets would not decrypt, a tampered file then fails at
    decrypt, and a revision whose cluster settings this connection does not serve stops at
    verify with nothing decrypted."""
    cluster = client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))
    agent = _agent(secret_repo, cluster)
    try:
        assert agent.run_pass().error is None
        before = _secret(cluster, namespace)
        _tamper(secret_repo)
        kz = "overlays/dev/kustomization.yaml"
        secret_repo.edit(kz, "newTag: v2.4.0", "newTag: v2.5.0")
        secret_repo.edit(
            kz, "path: /spec/replicas\n      value: 1", 'path: /spec/replicas\n      value: "three"'
        )
        secret_repo.commit_all("tampered and invalid")
        report = agent.run_pass()
        assert report.error is not None and report.error.stage == "validate", report.error
        assert "replicas" in str(report.error.cause) and report.applied == []

        secret_repo.edit(kz, 'value: "three"', "value: 1")
        secret_repo.commit_all("valid again, still tampered")
        report = agent.run_pass()
        assert report.error is not None and report.error.stage == "decrypt", report.error
        assert "db" in str(report.error.cause) and report.applied == []
        assert _secret(cluster, namespace)["data"] == before["data"]

        path = secret_repo.work / "overlays/dev/secrets/db.sops.yaml"
        restored = git(secret_repo.work, "show", "HEAD~2:overlays/dev/secrets/db.sops.yaml")
        path.write_text(restored + "\n")
        secret_repo.commit_all("restored")
        report = agent.run_pass()
        assert report.error is None, report.error
        web = cluster.get(cluster.resource("apps/v1", "Deployment"), namespace, "web-app")
        assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.5.0")
        live = _secret(cluster, namespace)
        assert live is not None and base64.b64decode(live["data"]["password"]) == CANARY.encode()

        # Another namespace in a new revision: stopped at verify, nothing decrypted.
        counting = _Counting(factory.resolver_at_revision(
            config.load_project(secret_repo.work), config.load_project(secret_repo.work).env("dev")
        ))  # fmt: skip
        agent.desired_state.resolver = counting
        agent.desired_state.connection = trust.Connection(namespace, None, "the checkout")
        moved = f"{namespace}-moved"
        secret_repo.edit("environments/dev.yaml", f"namespace: {namespace}", f"namespace: {moved}")
        secret_repo.commit_all("dev moves")
        report = agent.run_pass()
        assert report.error is not None and report.error.stage == "verify", report.error
        assert counting.calls == 0 and report.applied == []
    finally:
        agent.cache.stop()
        agent.desired_state.close()
