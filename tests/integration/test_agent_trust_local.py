"""The trust chain on the local forge, the remaining items of issue 13: a fast-forward of main
to an approved head of several commits, promote's own signed commits, signed-tag pins, and
cluster settings read from a verified revision. Real kube-apiserver, real bare Git remote,
real GnuPG."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from typing import Any

import pytest

from promote import config
from promote.cluster import client
from promote.promotion import engine, propose, review
from promote.reconcile import factory
from promote.reconcile import status as status_mod
from promote.reconcile.agent import Agent
from promote.secrets import gpg
from tests.gitops import GitOpsRepo, git
from tests.helpers import run_cli
from tests.integration.test_agent_trust import (  # noqa: F401  (fixtures)
    PROD_KZ,
    _approved_prod_pr,
    _image,
    _sign_approval,
    cluster,
    prod_agent,
    repo,
)
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    Keys,
    gpg_keys,
)

pytestmark = pytest.mark.integration


def _signed_commit(ops: GitOpsRepo, keys: Keys, who: str, message: str) -> str:
    git(ops.work, "add", "-A")
    subprocess.run(
        ["git", "commit", "-q", f"-S{keys.fingerprints[who]}", "-m", message], cwd=ops.work,
        env={**os.environ, "GNUPGHOME": str(keys.home)}, check=True, capture_output=True,
    )  # fmt: skip
    return git(ops.work, "rev-parse", "HEAD")


def test_main_fast_forwarded_to_an_approved_head_of_several_commits_is_deployed(
    repo: GitOpsRepo,  # noqa: F811
    prod_agent: Agent,  # noqa: F811
    cluster: client.Cluster,  # noqa: F811
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    """Approvals bind the head: main pushed by hand to exactly that head (a fast-forward over
    the PR's commits) is verified; main at one of the PR's earlier commits is not."""
    signer = gpg.Signer(gnupghome=str(gpg_keys.home))
    with engine.session(repo.work) as s:
        pr = propose.open_pull_request(
            s, propose.plan_promotion(s, "prod"), opener="dev1", signer=signer
        )
    git(repo.work, "fetch", "-q", "origin")
    git(repo.work, "checkout", "-q", "-B", "work", pr.head_sha)
    repo.edit(PROD_KZ, "value: warn", "value: debug")
    head = _signed_commit(repo, gpg_keys, "dev1", "and quieter logs")  # a registered developer
    git(repo.work, "push", "-q", "origin", f"HEAD:refs/heads/{pr.branch}")
    for name in ("rm1", "rm2"):
        _sign_approval(repo, gpg_keys, pr.number, name)
    before = _image(cluster, namespace)

    git(repo.work, "push", "-q", "origin", f"{pr.head_sha}:main")  # the PR's first commit only
    partial = prod_agent.run_pass()
    assert partial.head == pr.head_sha and partial.verdict is not None
    assert not partial.verdict.verified and _image(cluster, namespace) == before

    git(repo.work, "push", "-q", "origin", f"{head}:main")  # the approved head, fast-forward
    report = prod_agent.run_pass()
    assert report.error is None, report.error
    assert report.verdict is not None and report.verdict.verified, report.verdict.summary()
    assert report.revision == head and _image(cluster, namespace).endswith(":v2.3.2")
    assert any(f"PR #{pr.number}" in p for _, p in report.verdict.proofs)
    # `promote history` judges the same way: neither of the PR's commits is unapproved.
    assert prod_agent.trust is not None
    audited = prod_agent.trust.verifier.audit(anchor=report.verdict.base, revision=head)
    assert [a.step.sha for a in audited] == [pr.head_sha, head]
    assert not any(a.unapproved for a in audited), audited


def _trust_ci_signer(ops: GitOpsRepo, keys: Keys) -> str:
    """prod trusts the CI bot's key (rm3's here, filed as keys/ci/ci.asc)."""
    (ops.work / "keys/ci").mkdir()
    (ops.work / "keys/ci/ci.asc").write_text(keys.public["rm3"])
    ops.edit("environments/prod.yaml", "  allowSelfApproval: false\n",
             "  allowSelfApproval: false\n  trustedSigners: [keys/ci/ci.asc]\n")  # fmt: skip
    return ops.commit_all("ci may sign prod changes")


def test_set_image_pushed_signed_by_a_trusted_signer_deploys_and_unsigned_does_not(
    repo: GitOpsRepo,  # noqa: F811
    cluster: client.Cluster,  # noqa: F811
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    """CI's `promote set-image prod` signed with $PROMOTE_SIGNING_KEY (a key prod's
    approvals.trustedSigners lists) is pushed and verified by the prod agent; without the key,
    or with an untrusted one, set-image refuses; an unsigned push by hand stays Unverified."""
    pin = _trust_ci_signer(repo, gpg_keys)
    agent = factory.build_agent(
        config.load_project(repo.work), "prod", factory.Overrides(trust_from=pin), cluster=cluster
    )
    home = {"GNUPGHOME": str(gpg_keys.home)}
    try:
        assert agent.run_pass().revision == pin
        unsigned = run_cli("set-image", "prod", "web-app=v5.5.5", "-C", str(repo.work), env=home)
        assert unsigned.code == 3 and "PROMOTE_SIGNING_KEY is not set" in unsigned.stderr
        untrusted = run_cli(
            "set-image", "prod", "web-app=v5.5.5", "-C", str(repo.work),
            env={**home, "PROMOTE_SIGNING_KEY": gpg_keys.fingerprints["mallory"]},
        )  # fmt: skip
        assert untrusted.code == 3 and "not among its approvals.trustedSigners" in untrusted.stderr
        assert git(repo.work, "ls-remote", "origin", "main").split()[0] == pin  # nothing pushed

        signed = run_cli(
            "set-image", "prod", "web-app=v5.5.5", "-C", str(repo.work), "-o", "json",
            env={**home, "PROMOTE_SIGNING_KEY": gpg_keys.fingerprints["rm3"]},
        )  # fmt: skip
        assert signed.code == 0, signed.stderr
        commit = json.loads(signed.stdout)["commit"]
        shown = git(repo.work, "--git-dir", str(repo.remote), "cat-file", "commit", commit)
        assert "-----BEGIN PGP SIGNATURE-----" in shown
        report = agent.run_pass()
        assert report.verdict is not None and report.verdict.verified, report.verdict.summary()
        assert report.revision == commit and _image(cluster, namespace).endswith(":v5.5.5")
        assert any("trusted signer keys/ci/ci.asc" in p for _, p in report.verdict.proofs)

        git(repo.work, "fetch", "-q", "origin")
        git(repo.work, "reset", "-q", "--hard", "origin/main")
        repo.edit(PROD_KZ, "newTag: v5.5.5", "newTag: v5.5.6")
        pushed = repo.commit_all("the same change, unsigned")
        refused = agent.run_pass()
        assert refused.verdict is not None and not refused.verdict.verified
        assert refused.verdict.offence is not None and refused.verdict.offence.commit == pushed
        assert refused.revision == commit and _image(cluster, namespace).endswith(":v5.5.5")
    finally:
        agent.cache.stop()


def _tag(ops: GitOpsRepo, keys: Keys, name: str, rev: str, *, signer: str | None) -> None:
    """A tag pushed by hand: ``signer``'s signed annotated tag, or an unsigned annotated one."""
    how = ["-s", "-u", keys.fingerprints[signer]] if signer else ["-a"]
    subprocess.run(
        ["git", "-c", "gpg.format=openpgp", "tag", "-f", *how, "-m", "pin", name, rev],
        cwd=ops.work, env={**os.environ, "GNUPGHOME": str(keys.home)}, check=True,
        capture_output=True,
    )  # fmt: skip
    git(ops.work, "push", "-q", "-f", "origin", f"refs/tags/{name}")


def test_trust_starts_at_a_commit_prod_approvers_signed_tags_of(
    repo: GitOpsRepo,  # noqa: F811
    cluster: client.Cluster,  # noqa: F811
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    """No --trust-from: the prod agent starts at the commit enough of prod's approvers (2)
    signed `promote/pin/prod/NAME` tags of; an unsigned tag, a tag signed with another
    person's key, or too few signatures start nothing, with the reason."""
    pin = git(repo.work, "rev-parse", "HEAD")
    agent = factory.build_agent(
        config.load_project(repo.work), "prod", factory.Overrides(), cluster=cluster
    )
    home = {"GNUPGHOME": str(gpg_keys.home)}

    def refused(*words: str) -> None:
        report = agent.run_pass()
        assert report.error is not None and report.error.stage == "verify"
        assert report.applied == [] and report.verdict is None
        message = str(report.error.cause)
        assert all(w in message for w in words), message

    try:
        refused("no trusted revision", "--trust-from")  # no tags at all
        _tag(repo, gpg_keys, "promote/pin/prod/rm1", pin, signer=None)
        refused("promote/pin/prod/rm1 is not signed")
        _tag(repo, gpg_keys, "promote/pin/prod/rm1", pin, signer="mallory")
        refused("promote/pin/prod/rm1 is not signed by a registered key")
        _tag(repo, gpg_keys, "promote/pin/prod/rm1", pin, signer="rm2")
        refused("promote/pin/prod/rm1 is signed with rm2's key, not rm1's")

        by_dev = run_cli("pin", "prod", pin, "--as", "dev1", "-C", str(repo.work), env=home)
        assert by_dev.code == 2 and "not an approver of prod" in by_dev.stderr
        first = run_cli("pin", "prod", pin, "--as", "rm1", "-C", str(repo.work), env=home)
        assert first.code == 0, first.stderr
        refused(f"{pin[:12]} is signed by 1 of the 2 approvers prod requires (rm1)")
        second = run_cli(
            "pin", "prod", pin, "--as", "rm2", "-C", str(repo.work), "-o", "json", env=home
        )
        assert second.code == 0 and json.loads(second.stdout)["tag"] == "promote/pin/prod/rm2"
        report = agent.run_pass()
        assert report.error is None and report.revision == pin, report.error
        st = status_mod.read(cluster, env="prod", namespace=namespace)
        assert st is not None and st.trust is not None and st.trust["pin"] == pin
    finally:
        agent.cache.stop()


def _exists(api: client.Cluster, ns: str) -> bool:
    return api.get(api.resource("v1", "Namespace"), None, ns) is not None


def test_sync_and_diff_use_prod_cluster_settings_of_a_verified_revision_only(
    repo: GitOpsRepo,  # noqa: F811
    prod_agent: Agent,  # noqa: F811
    cluster: client.Cluster,  # noqa: F811
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
    control_plane: Any,
) -> None:
    """An unapproved commit on main moving prod to another namespace is not followed by
    `promote sync prod`/`diff prod`, even from a checkout holding it; once release managers
    accept it, both follow it, even from a checkout that does not hold it yet."""
    pin = git(repo.work, "rev-parse", "HEAD")
    moved = f"{namespace}-moved"
    repo.edit("environments/prod.yaml", f"namespace: {namespace}", f"namespace: {moved}")
    repo.edit(PROD_KZ, f"namespace: {namespace}", f"namespace: {moved}")
    pushed = repo.commit_all("prod moves to another namespace, unapproved")
    flags = ("--trust-from", pin, "--kubeconfig", str(control_plane.kubeconfig))
    flags += ("-C", str(repo.work))
    home = {"GNUPGHOME": str(gpg_keys.home)}
    try:
        for command in ("diff", "sync"):
            res = run_cli(command, "prod", *flags)
            assert res.code == 3, f"{command}: exit {res.code}\n{res.stdout}\n{res.stderr}"
            assert f"commit {pushed[:12]} changes" in res.stderr, res.stderr
        assert not _exists(cluster, moved)  # nothing read from or written to the new namespace
        st = status_mod.read(cluster, env="prod", namespace=namespace)
        assert st is not None and st.revision == pin

        for name in ("rm1", "rm2"):  # release managers accept the move
            res = run_cli("trust", "prod", pushed, "--as", name, "--from", pin,
                          "-C", str(repo.work), env=home)  # fmt: skip
            assert res.code == 0, res.stderr
        # The running agent, connected to the old namespace, stops there and says why.
        stopped = prod_agent.run_pass()
        assert stopped.error is not None and stopped.error.stage == "verify"
        assert f"cluster.namespace '{moved}'" in str(stopped.error.cause)
        assert stopped.applied == [] and not _exists(cluster, moved)
        git(repo.work, "reset", "-q", "--hard", pin)  # a checkout without the change
        synced = run_cli("sync", "prod", *flags)
        assert synced.code == 0, synced.stderr
        assert _image(cluster, moved)  # deployed into the verified namespace
        st = status_mod.read(cluster, env="prod", namespace=moved)
        assert st is not None and st.revision == pushed
        diffed = run_cli("diff", "prod", *flags)
        assert diffed.code == 0 and f"in sync with {pushed[:12]}" in diffed.stdout, diffed.stderr
    finally:
        with contextlib.suppress(Exception):
            cluster.request("DELETE", f"/api/v1/namespaces/{moved}")


def test_promotes_own_pr_commits_and_merges_are_signed_with_the_signing_key(
    repo: GitOpsRepo,  # noqa: F811
    prod_agent: Agent,  # noqa: F811
    gpg_keys: Keys,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PROMOTE_SIGNING_KEY set, the PR commit `promote to` writes and the merge commit
    `promote merge` writes are signed with that key (git's own signing); the agent still
    verifies the merge by its approvals."""
    monkeypatch.setenv("GNUPGHOME", str(gpg_keys.home))
    monkeypatch.setenv("PROMOTE_SIGNING_KEY", gpg_keys.fingerprints["rm3"])
    pr = _approved_prod_pr(repo, gpg_keys)
    repo.edit("overlays/dev/kustomization.yaml", "newTag: v2.4.0", "newTag: v2.4.1")
    repo.commit_all("dev moves on: the PR merges with a merge commit")
    with engine.session(repo.work) as s:
        _, merged, _ = review.merge(s, pr.number, by="rm2")
    assert merged.method == "merge-commit"
    for sha in (pr.head_sha, merged.sha):
        raw = git(repo.work, "--git-dir", str(repo.remote), "cat-file", "commit", sha)
        assert "-----BEGIN PGP SIGNATURE-----" in raw, sha
        shown = subprocess.run(
            ["git", "--git-dir", str(repo.remote), "log", "-1", "--format=%G? %GF", sha],
            env={**os.environ, "GNUPGHOME": str(gpg_keys.home)}, capture_output=True, text=True,
            check=True,
        ).stdout.split()  # fmt: skip
        assert shown == ["G", gpg_keys.fingerprints["rm3"]] or shown[1:] == [
            gpg_keys.fingerprints["rm3"]
        ], shown
    report = prod_agent.run_pass()
    assert report.verdict is not None and report.verdict.verified, report.verdict.summary()
    assert report.revision == merged.sha
