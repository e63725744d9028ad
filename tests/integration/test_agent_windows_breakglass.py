"""The prod agent (trust chain on) and merge windows (issue 16 item 4) on a real
kube-apiserver with real GnuPG keys: an approved promotion merged inside prod's 2030 window
waits while the agent's (injected) clock is outside it and is applied inside it; a
break-glass merge (each approval signed as break-glass with the reason) is applied at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from promote import config
from promote.cluster import client
from promote.promotion import engine, plan, propose, review, setimage
from promote.reconcile import factory
from promote.reconcile.agent import Agent
from promote.secrets import gpg
from tests.gitops import GitOpsRepo
from tests.integration.test_agent_trust import _image, cluster, repo  # noqa: F401
from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_windows import WINDOWS

pytestmark = pytest.mark.integration
CLOSED = datetime(2029, 6, 1, 12, 0, tzinfo=UTC)
OPEN = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)


@pytest.fixture
def windowed_prod(repo: GitOpsRepo, cluster: client.Cluster) -> Iterator[Agent]:  # noqa: F811
    prod = repo.work / "environments/prod.yaml"
    prod.write_text(prod.read_text() + WINDOWS)
    pin = repo.commit_all("prod merges only in the 2030 window")
    agent = factory.build_agent(
        config.load_project(repo.work), "prod", factory.Overrides(trust_from=pin), cluster=cluster
    )
    agent.clock = lambda: CLOSED
    first = agent.run_pass()  # nothing deployed yet: the pin is applied
    assert first.error is None and first.revision == pin, first.error
    yield agent
    agent.cache.stop()


def _approved(repo: GitOpsRepo, keys: Keys, p: plan.Plan, glass: str | None = None) -> int:  # noqa: F811
    signer = gpg.Signer(gnupghome=str(keys.home))
    with engine.session(repo.work) as s:
        pr = propose.open_pull_request(s, p, opener="dev1", signer=signer)
    for name in ("rm1", "rm2"):
        with engine.session(repo.work) as s:
            review.approve(s, pr.number, approver=name, signer=signer, break_glass=glass)
    return pr.number


def test_an_approved_merge_waits_for_the_window_and_a_break_glass_merge_does_not(
    repo: GitOpsRepo,  # noqa: F811
    windowed_prod: Agent,
    cluster: client.Cluster,  # noqa: F811
    namespace: str,
    gpg_keys: Keys,  # noqa: F811
) -> None:
    agent = windowed_prod
    pin = agent.status.revision
    with engine.session(repo.work) as s:
        number = _approved(repo, gpg_keys, propose.plan_promotion(s, "prod"))
    with engine.session(repo.work) as s:
        _, merged, _ = review.merge(s, number, by="rm2", now=OPEN)  # merged inside the window

    report = agent.run_pass()  # the agent's clock: outside it
    assert report.error is None and report.revision == pin and report.head == merged.sha
    assert report.verdict is not None and report.verdict.verified  # approved, only waiting
    assert agent.status.sync == "OutOfWindow" and agent.status.window is not None
    assert agent.status.window["nextOpening"] == "2030-01-01T00:00:00Z"
    assert _image(cluster, namespace).endswith(":v2.3.1")

    agent.clock = lambda: OPEN
    assert agent.run_pass().revision == merged.sha
    assert _image(cluster, namespace).endswith(":v2.3.2")

    agent.clock = lambda: CLOSED
    reason = "INC-7: checkout down"
    with engine.session(repo.work) as s:
        hotfix = setimage.plan_set_image(s, "prod", ["web-app=v2.3.3"])
        number = _approved(repo, gpg_keys, hotfix, glass=reason)
    with engine.session(repo.work) as s:
        _, glass, _ = review.merge(s, number, by="rm2", now=CLOSED, break_glass=reason)
    report = agent.run_pass()
    assert report.error is None and report.revision == glass.sha, agent.status.window
    assert report.admission is not None and reason in report.admission.why
    assert _image(cluster, namespace).endswith(":v2.3.3") and agent.status.window is None
