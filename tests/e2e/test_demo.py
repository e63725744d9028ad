"""`promote demo` as `make demo` runs it: every step's outcome read from its JSON summary.

The demo starts real servers (kube-apiserver + etcd, controllers, scheduler and kwok nodes,
OpenBao, an OCI registry) and three agents; these tests
check that each step did what the narration says and that nothing is left running or on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result, run_cli

pytestmark = pytest.mark.e2e

STORY = [
    "prerequisites", "openbao", "registry", "people", "repository", "age-keys", "secrets",
    "publish", "cluster", "agents", "ci-publish", "dev-sync", "promote-staging", "approve-staging",
    "merge-staging", "staging-sync", "promote-prod", "approve-prod-rm1", "merge-prod-refused",
    "approve-prod-rm2", "merge-prod", "prod-sync", "prod-pinned", "drift", "status", "bad-version",
    "rollback-pr", "rejected-refused", "rollback", "history", "teardown",
]  # fmt: skip
SERVERS = {
    "agent-dev", "agent-staging", "agent-prod", "openbao", "registry", "etcd", "kube-apiserver",
    "kube-controller-manager", "kube-scheduler", "kwok",
}  # fmt: skip
DEMO_TIMEOUT_S = 540  # the demo takes 1-2 minutes on 2 busy cores; its own waits are bounded


def _summary(res: Result) -> dict[str, Any]:
    try:
        return dict(json.loads(res.stdout))
    except ValueError:
        pytest.fail(f"no JSON on stdout (exit {res.code}); stderr ends:\n{res.stderr[-3000:]}")


def _running(pid: int) -> bool:
    """Alive and not a zombie (PID 1 in a container may never reap the servers' zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.mark.timeout(DEMO_TIMEOUT_S + 60)
def test_demo_tells_the_whole_story_and_leaves_nothing_running(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    res = run_cli("demo", "--dir", str(directory), "-o", "json", timeout=DEMO_TIMEOUT_S)
    doc = _summary(res)
    failed = [s for s in doc.get("steps", []) if not s["ok"]]
    assert res.code == 0 and doc["status"] == "ok", (
        f"exit {res.code}; failed: {failed}\nnarration ends:\n{res.stderr[-4000:]}"
    )
    assert [s["name"] for s in doc["steps"]] == STORY
    for step in doc["steps"]:
        assert step["ok"] is True and step["detail"], step
        assert isinstance(step["duration"], float | int) and step["duration"] >= 0
    steps = {s["name"]: s["detail"] for s in doc["steps"]}

    assert (
        "the db Secrets and prod's payments-api (read from OpenBao) hold the values"
        in (steps["agents"])
    )
    for env in ("dev", "staging"):
        assert "Deployment image registry.example.com/acme/web-app:v2.4.1" in steps[f"{env}-sync"]
    # prod's gates: the demo's registry, the tag pinned to its digest, the signature verified.
    assert "pushed and signed acme/web-app:v2.4.1, acme/api:v1.8.0" in steps["registry"]
    assert "private half encrypted and removed after signing" in steps["registry"]
    assert "/acme/web-app:v2.4.1@sha256:" in steps["prod-sync"]
    assert steps["prod-pinned"].startswith("prod pins web-app v2.4.1@sha256:")
    assert "PRIVATE KEY" not in res.stdout + res.stderr
    assert steps["promote-staging"].startswith("PR #1 into staging")
    assert steps["promote-prod"].startswith("PR #2 into prod")
    # The merge with one approval really exited 3, said what was missing and left main alone.
    refused = steps["merge-prod-refused"]
    assert refused.startswith("exit 3, main unchanged") and "rm2" in refused
    assert "merged" in steps["merge-prod"]
    assert steps["drift"].startswith("replicas 10 -> 3 in") and "DriftReverted" in steps["drift"]
    assert "web-app v2.4.1 Synced and Healthy in dev, staging and prod" in steps["status"]
    # A bad release: Degraded at its progress deadline, so dev's verification fails; the dev
    # agent rejects the version on main and opens a rollback PR; staging refuses it (exit 3);
    # the rollback merged, dev runs the verified version again.
    bad = steps["bad-version"]
    assert "dev verification Failed: Degraded before verified" in bad
    assert 'Deployment "web-app" exceeded its progress deadline' in bad
    assert steps["rollback-pr"].startswith("releases/rejected/web-app/v2.5.0.yaml on main; ")
    assert "restores web-app v2.4.1" in steps["rollback-pr"]
    refused = steps["rejected-refused"]
    assert refused.startswith("exit 3, no PR opened: ")
    assert "web-app v2.5.0 was rejected by promote-agent/dev" in refused
    assert "verification failed in dev" in refused
    # ... and verifies it: the failed rollout's leftover condition does not fail it again.
    assert steps["rollback"].endswith(
        "dev registry.example.com/acme/web-app:v2.4.1, verification Verified: Healthy for 3s"
    )
    assert "approved by rm1 and rm2 (verified)" in steps["history"]
    assert "AGE-SECRET-KEY" not in res.stdout + res.stderr

    # Nothing left behind: no server, no agent, no directory.
    assert doc["kept"] is False and doc["explore"] == []
    assert set(doc["pids"]) == SERVERS
    still = {name: pid for name, pid in doc["pids"].items() if _running(pid)}
    assert not still, f"still running after the demo: {still}"
    assert not directory.exists()


def test_demo_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me\n")
    res = run_cli("demo", "--dir", str(tmp_path), "-o", "json")
    doc = _summary(res)
    assert res.code == 1 and doc["status"] == "error"
    assert "not empty" in doc["errors"][0]["message"]
    assert (tmp_path / "precious.txt").read_text() == "keep me\n"
    assert os.listdir(tmp_path) == ["precious.txt"]


def test_demo_stop_without_a_kept_demo_says_so(tmp_path: Path) -> None:
    res = run_cli("demo", "--stop", "--dir", str(tmp_path))
    assert res.code == 1
    assert "no kept demo to stop there" in res.stderr
    usage = run_cli("demo", "--stop")
    assert usage.code == 2 and "--stop needs --dir" in usage.stderr


def test_demo_stops_at_the_first_step_that_misbehaves_and_cleans_up(tmp_path: Path) -> None:
    # A kustomize that always fails: `promote validate` (step "publish") cannot render.
    directory = tmp_path / "demo"
    res = run_cli("demo", "--dir", str(directory), "-o", "json",
                  env={"PROMOTE_KUSTOMIZE": "/bin/false"}, timeout=DEMO_TIMEOUT_S)  # fmt: skip
    doc = _summary(res)
    assert res.code == 1 and doc["status"] == "error"
    failed = [s for s in doc["steps"] if not s["ok"]]
    assert [s["name"] for s in failed] == ["publish"], doc["steps"]
    assert "`dev1$ promote validate` exited 3, expected 0" in failed[0]["detail"]
    assert doc["errors"][0]["message"].startswith("step publish failed: ")
    assert doc["steps"][-1]["name"] == "teardown" and doc["steps"][-1]["ok"]
    assert not any(_running(pid) for pid in doc["pids"].values())
    assert not directory.exists()
