"""The agent verifies steps merged on Gitea (issue 13 item 5): a prod agent against the real
kube-apiserver and a real Gitea, reading the forge's reviews with a READ-ONLY token
(``read:repository``, ``read:issue``, ``read:user``). Only a change whose PR Gitea merged
after listed approvers approved its head, with a merge that hides nothing, reaches prod; anything
else leaves prod at its last verified revision, reported Unverified."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from promote import config
from promote.cluster import client
from promote.reconcile import factory
from promote.reconcile import status as status_mod
from promote.reconcile.agent import Agent
from tests.helpers import copy_example, run_cli

if TYPE_CHECKING:
    from tests.gitea_fixture import GiteaServer

pytestmark = pytest.mark.integration
PROD_KZ = "overlays/prod/kustomization.yaml"


@dataclass
class Site:
    """One Gitea repository holding the example layout (prod in the test's namespace)."""

    gitea: GiteaServer
    repo: str
    tmp: Path

    def api(self, user: str) -> httpx.Client:
        return self.gitea.api(user)

    def clone(self, user: str, branch: str = "main") -> Path:
        wt = self.tmp / f"{user}-{uuid.uuid4().hex[:6]}"
        url = self.gitea.clone_url_for(user, self.repo)
        self.gitea.git(self.tmp, "clone", "-q", "-b", branch, url, str(wt))
        self.gitea.git(wt, "config", "user.name", user)
        self.gitea.git(wt, "config", "user.email", f"{user}@example.com")
        return wt

    def commit_tag(self, wt: Path, tag: str, message: str) -> str:
        kz = wt / PROD_KZ
        text = kz.read_text()
        old = text.split("newTag:", 1)[1].split()[0]
        kz.write_text(text.replace(f"newTag: {old}", f"newTag: {tag}", 1))
        self.gitea.git(wt, "commit", "-qam", message)
        return self.gitea.git(wt, "rev-parse", "HEAD").strip()

    def push(self, wt: Path, branch: str) -> str:
        self.gitea.git(wt, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        sha = self.gitea.git(wt, "rev-parse", "HEAD").strip()
        self.gitea.wait_for_branch(branch, sha, repo=self.repo)
        return sha

    def open_pr(self, tag: str, *, user: str = "dev1") -> tuple[int, str, Path]:
        """``user`` pushes a branch changing prod's tag and opens a PR: (number, head, clone)."""
        wt = self.clone(user)
        branch = f"promote/prod/{uuid.uuid4().hex[:8]}"
        self.commit_tag(wt, tag, f"prod: web-app {tag}")
        head = self.push(wt, branch)
        with self.api(user) as c:
            r = c.post(
                f"/repos/{self.repo}/pulls",
                json={"base": "main", "head": branch, "title": f"prod {tag}"},
            )
            assert r.status_code == 201, r.text
        return int(r.json()["number"]), head, wt

    def approve(self, number: int, head: str, user: str) -> None:
        with self.api(user) as c:
            r = c.post(
                f"/repos/{self.repo}/pulls/{number}/reviews",
                json={"event": "APPROVED", "commit_id": head},
            )
            assert r.status_code == 200, r.text

    def wait_head(self, number: int, head: str) -> None:
        """Gitea moves a PR's head asynchronously after a push to its branch."""
        deadline = time.monotonic() + 30
        with self.api("rm1") as c:
            while c.get(f"/repos/{self.repo}/pulls/{number}").json()["head"]["sha"] != head:
                assert time.monotonic() < deadline, f"PR #{number} never showed {head[:12]}"
                time.sleep(0.1)
            # ... and its page shows the push (a timeline event naming the pusher), as a
            # reviewer sees it before approving.
            while head not in c.get(f"/repos/{self.repo}/issues/{number}/timeline").text:
                assert time.monotonic() < deadline, f"PR #{number}: push of {head[:12]}?"
                time.sleep(0.1)

    def merge(self, number: int, *, style: str = "merge", user: str = "dev1") -> str:
        """Merge on Gitea (as a user clicks the button); returns main's new tip."""
        with self.api(user) as c:
            deadline = time.monotonic() + 30
            while True:  # 405 "try again later" while Gitea computes mergeability
                r = c.post(f"/repos/{self.repo}/pulls/{number}/merge", json={"Do": style})
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text
            pr = c.get(f"/repos/{self.repo}/pulls/{number}").json()
        return str(pr["merge_commit_sha"])

    def read_only_token(self) -> str:
        """A token of rm1's with only the scopes the agent needs."""
        u = self.gitea.rm1
        r = httpx.post(
            f"{self.gitea.api_url}/users/{u.name}/tokens",
            auth=(u.name, u.password),
            json={
                "name": f"agent-{uuid.uuid4().hex[:6]}",
                "scopes": ["read:repository", "read:issue", "read:user"],
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["sha1"])


@pytest.fixture
def site(gitea: GiteaServer, tmp_path: Path, namespace: str) -> Site:
    repo = gitea.create_repo(f"trust-{uuid.uuid4().hex[:8]}")
    work = copy_example(tmp_path / "layout")
    (work / "promote.yaml").write_text(
        "mainBranch: main\nremote: origin\n"
        f"forge: {{type: gitea, url: '{gitea.url}', repo: {repo}, tokenEnv: GITEA_TOKEN}}\n"
    )
    for rel in ("environments/prod.yaml", PROD_KZ):
        path = work / rel
        path.write_text(
            path.read_text().replace("namespace: production", f"namespace: {namespace}")
        )
    env = work / "environments/prod.yaml"
    env.write_text(env.read_text().replace("required: 2", "required: 1"))
    gitea.push_tree(work, repo=repo)
    return Site(gitea, repo, tmp_path)


@pytest.fixture
def cluster(control_plane: Any) -> client.Cluster:
    return client.Cluster(client.connect(kubeconfig=str(control_plane.kubeconfig)))


@pytest.fixture
def agent(
    site: Site, cluster: client.Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Agent]:
    """The prod agent: trust pinned at main's first commit, a read-only Gitea token."""
    monkeypatch.setenv("GITEA_TOKEN", site.read_only_token())
    monkeypatch.setenv("PROMOTE_AGENT_CACHE", str(tmp_path / "agent-cache"))
    checkout = site.clone("rm1")
    pin = site.gitea.git(checkout, "rev-parse", "HEAD").strip()
    ov = factory.Overrides(trust_from=pin, repo_url=f"{site.gitea.url}/{site.repo}.git")
    built = factory.build_agent(config.load_project(checkout), "prod", ov, cluster=cluster)
    first = built.run_pass()
    assert first.error is None and first.revision == pin, first.error
    yield built
    built.cache.stop()


def _settled_pass(agent: Agent) -> Any:
    """One agent pass once Gitea has recorded who pushed each commit: until then the verify
    stage fails with a retryable error and prod stays at V (the loop would back off)."""
    deadline = time.monotonic() + 30
    while True:
        report = agent.run_pass()
        if report.error is None or "has not yet recorded who pushed" not in str(report.error):
            return report
        assert time.monotonic() < deadline, report.error
        time.sleep(0.2)


def _image(cluster: client.Cluster, ns: str) -> str:
    dep = cluster.get(cluster.resource("apps/v1", "Deployment"), ns, "web-app")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def _unverified(cluster: client.Cluster, ns: str) -> dict[str, Any]:
    st = status_mod.read(cluster, env="prod", namespace=ns)
    assert st is not None and st.sync == "Unverified" and st.unverified is not None
    return dict(st.unverified)


def test_pr_approved_and_merged_on_gitea_is_deployed(
    site: Site, agent: Agent, cluster: client.Cluster, namespace: str
) -> None:
    token = os.environ["GITEA_TOKEN"]  # the agent's read-only token reads history too
    number, head, _ = site.open_pr("v3.0.0")
    site.approve(number, head, "rm1")
    merged = site.merge(number)
    report = _settled_pass(agent)
    assert report.error is None and report.revision == merged, report.error
    assert report.verdict is not None and report.verdict.verified
    assert (
        f"Gitea PR #{number} (merge commit) approved by rm1" in dict(report.verdict.proofs)[merged]
    )
    assert _image(cluster, namespace).endswith(":v3.0.0")

    # A squash merge is a step too: its tree is the approved head merged onto main.
    number, head, _ = site.open_pr("v3.1.0")
    site.approve(number, head, "rm2")
    squashed = site.merge(number, style="squash")
    report = _settled_pass(agent)
    assert report.error is None and report.revision == squashed, report.error
    assert report.verdict is not None
    assert "(squash) approved by rm2" in dict(report.verdict.proofs)[squashed]
    assert _image(cluster, namespace).endswith(":v3.1.0") and report.verdict.verified

    # `promote history` judges the same way, from the forge's reviews.
    clone = site.clone("dev1")
    res = run_cli("history", "prod", "-o", "json", "-C", str(clone), env={"GITEA_TOKEN": token})
    assert res.code == 0, res.stderr
    judged = {e["commit"]: (e["judged"], e["why"]) for e in res.json()["entries"]}
    assert judged[merged] == ("approved", "Gitea PR #1 (merge commit) approved by rm1")
    assert judged[squashed][0] == "approved"

    # A fast-forward: main moves to the approved one-commit head itself.
    number, head, _ = site.open_pr("v3.2.0")
    site.approve(number, head, "rm1")
    assert site.merge(number, style="fast-forward-only") == head
    report = _settled_pass(agent)
    assert report.error is None and report.revision == head, report.error
    assert report.verdict is not None
    assert "(fast-forward) approved by rm1" in dict(report.verdict.proofs)[head]
    assert _image(cluster, namespace).endswith(":v3.2.0")


def test_direct_push_to_main_on_gitea_is_unverified(
    site: Site, agent: Agent, cluster: client.Cluster, namespace: str
) -> None:
    before = _image(cluster, namespace)
    wt = site.clone("rm1")  # even a release manager's push is no approval
    site.commit_tag(wt, "v6.6.6-evil", "hotfix")
    pushed = site.push(wt, "main")
    report = _settled_pass(agent)
    assert report.error is None and report.head == pushed and report.revision != pushed
    assert _image(cluster, namespace) == before
    refused = _unverified(cluster, namespace)
    assert refused["commit"] == pushed and refused["files"] == [PROD_KZ]
    assert "no pull request on Gitea merged it (a direct push" in refused["reason"]
    assert 'promote_unverified_revision{env="prod"} 1.0' in agent.metrics.exposition().decode()

    # Recovery: a revert (pushed directly too) brings prod's inputs back to a verified state.
    site.gitea.git(wt, "revert", "--no-edit", pushed)
    reverted = site.push(wt, "main")
    healed = _settled_pass(agent)
    assert healed.error is None and healed.revision == reverted, healed.error
    assert _image(cluster, namespace) == before
    st = status_mod.read(cluster, env="prod", namespace=namespace)
    assert st is not None and st.sync != "Unverified" and st.unverified is None


def _by_non_approver(site: Site) -> str:
    number, head, _ = site.open_pr("v4.0.0")
    site.approve(number, head, "promote-admin")  # an admin, but not a listed approver
    return site.merge(number)


def _by_commit_writer(site: Site) -> str:
    number, _, _ = site.open_pr("v4.0.1")
    branch = _branch(site, number)
    wt = site.clone("rm1", branch)  # rm1 slips a change of their own into dev1's PR ...
    site.commit_tag(wt, "v4.0.2", "a little extra")
    head = site.push(wt, branch)
    site.wait_head(number, head)
    site.approve(number, head, "rm1")  # ... and approves it: Gitea allows, prod does not
    return site.merge(number)


def _by_disguised_pusher(site: Site) -> str:
    """rm1 pushes a commit under an address Gitea knows nobody by, and approves it: Gitea's
    timeline still names rm1 as its pusher."""
    number, _, _ = site.open_pr("v4.0.3")
    branch = _branch(site, number)
    wt = site.clone("rm1", branch)
    site.gitea.git(wt, "config", "user.email", "nobody@elsewhere.example")
    site.commit_tag(wt, "v4.0.4", "a little extra")
    head = site.push(wt, branch)
    site.wait_head(number, head)
    site.approve(number, head, "rm1")
    return site.merge(number)


def _rebased_commits(site: Site) -> str:
    """A two-commit PR, approved, merged with Gitea's "rebase": main gains two rewritten
    commits, neither of them a head anyone reviewed."""
    number, _, wt = site.open_pr("v4.3.0")
    site.commit_tag(wt, "v4.3.1", "second commit")
    head = site.push(wt, _branch(site, number))
    site.wait_head(number, head)
    site.approve(number, head, "rm1")
    other = site.clone("rm2")  # main moves meanwhile (a dev-only change): the rebase rewrites
    (other / "overlays/dev/kustomization.yaml").write_text(
        (other / "overlays/dev/kustomization.yaml").read_text() + "# dev note\n"
    )
    site.gitea.git(other, "commit", "-qam", "dev note")
    site.push(other, "main")
    site.merge(number, style="rebase")
    with site.api("rm1") as c:
        commits = c.get(f"/repos/{site.repo}/commits", params={"sha": "main", "limit": 2}).json()
    return str(commits[1]["sha"])  # the first rewritten commit: the step refused


def _on_older_head(site: Site) -> str:
    number, head, wt = site.open_pr("v4.1.0")
    site.approve(number, head, "rm1")
    site.commit_tag(wt, "v4.1.1", "after the review")
    moved = site.push(wt, _branch(site, number))
    site.wait_head(number, moved)
    return site.merge(number)  # no branch protection: Gitea merges the unreviewed head


def _with_changed_merge_tree(site: Site) -> str:
    """The PR is approved, but the merge commit pushed to main (and marked as the PR's
    merge on Gitea) carries one more change than the plain merge of its parents."""
    number, head, _ = site.open_pr("v4.2.0")
    site.approve(number, head, "rm1")
    wt = site.clone("dev1")
    site.gitea.git(wt, "fetch", "-q", "origin", _branch(site, number))
    site.gitea.git(wt, "merge", "-q", "--no-ff", "--no-commit", "FETCH_HEAD")
    kz = wt / PROD_KZ
    kz.write_text(kz.read_text().replace("value: 3", "value: 30", 1))
    site.gitea.git(wt, "commit", "-qam", f"Merge pull request #{number}")
    merged = site.push(wt, "main")
    with site.api("promote-admin") as c:
        r = c.patch(f"/repos/{site.repo}", json={"allow_manual_merge": True})
        assert r.status_code == 200, r.text
        r = c.post(
            f"/repos/{site.repo}/pulls/{number}/merge",
            json={"Do": "manually-merged", "MergeCommitID": merged},
        )
        assert r.status_code == 200, r.text
        assert c.get(f"/repos/{site.repo}/pulls/{number}").json()["merge_commit_sha"] == merged
    return merged


def _branch(site: Site, number: int) -> str:
    with site.api("rm1") as c:
        return str(c.get(f"/repos/{site.repo}/pulls/{number}").json()["head"]["ref"])


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (_by_non_approver, "promote-admin: not counted: not a listed approver of prod"),
        (_by_commit_writer, "rm1: not counted: wrote or pushed a commit of PR"),
        (_by_disguised_pusher, "rm1: not counted: wrote or pushed a commit of PR"),
        (_on_older_head, "rm1: not counted: stale"),
        (_rebased_commits, "or one of several commits rebased or fast-forwarded onto main"),
        (_with_changed_merge_tree, "the merge's tree is not the plain merge of its parents"),
    ],
    ids=[
        "non-approver",
        "commit-writer",
        "disguised-pusher",
        "older-head",
        "multi-commit-rebase",
        "changed-tree",
    ],
)
def test_merged_on_gitea_without_a_sound_approval_is_unverified(
    site: Site, agent: Agent, cluster: client.Cluster, namespace: str, attack: Any, reason: str
) -> None:
    before = _image(cluster, namespace)
    refused_commit = attack(site)
    report = _settled_pass(agent)
    assert report.error is None and report.revision != report.head
    assert _image(cluster, namespace) == before
    refused = _unverified(cluster, namespace)
    assert refused["commit"] == refused_commit and PROD_KZ in refused["files"]
    assert reason in refused["reason"], refused["reason"]
