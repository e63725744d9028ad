"""What proves one step of main when pull requests live on Gitea or GitHub: the forge's record
of the PR that merged it, its reviews and a merge that hides nothing (DESIGN.md §4).

On the local forge approvals are GnuPG signatures in Git (``reconcile/proofs.py``). On a server
forge they are reviews, which only the forge can vouch for: the agent asks it, with a read-only
token (``forge/merges.py``), which PR merged each first-parent step, and judges that PR's head
exactly as ``promote merge`` does (``promotion/judgement.py`` under the step's FIRST PARENT:
scope from the change, every affected environment's policy, listed approvers by forge user,
the PR's author and every forge user who wrote or pushed one of its commits excluded unless
``allowSelfApproval``, approvals bound to the head SHA). Reviews submitted after the merge,
dismissed ones and those a later "changes requested" withdrew do not count.

The merge styles accepted, each checked in Git, never taken from the forge's word:

- a merge commit: two parents, the second is the PR's head, and its tree is exactly the plain
  (``git merge-tree``) merge of its parents;
- a fast-forward: main moved to the PR's head itself (a one-commit step; the earlier commits of
  a longer head would be steps no PR merged);
- a squash (or a one-commit rebase): one new commit whose tree is exactly the plain merge of
  the approved head onto its parent. Its head is fetched from ``refs/pull/N/head``.

Anything else (an octopus, a multi-commit rebase whose commits nobody reviewed, a merge whose
tree differs) proves nothing. Must not: trust a PR's body, branch name or the forge's claimed
merge style; call the forge for a step that changes none of the environment's inputs (the
walker asks only then).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from promote import config
from promote.errors import ForgeUnavailable, GitError, PromoteError
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.forge import merges, payload
from promote.git import history
from promote.git import repo as git_repo
from promote.reconcile import proofs

log = logging.getLogger(__name__)

FetchHead = Callable[[int], None]  # brings ``refs/pull/N/head`` into the mirror
# How long after a merge an incomplete record of who pushed is waited for (a retryable error:
# V stays deployed, no Unverified) before it refuses the step.
SETTLE = timedelta(minutes=10)


class ForgeProofs:
    """Proves steps of main from a server forge's records (one environment's agent)."""

    def __init__(
        self,
        repo: git_repo.Repo,
        lookup: merges.MergeLookup,
        *,
        env: str,
        main_branch: str,
        fetch_head: FetchHead | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        self.env = env
        self.lookup = lookup
        self._repo = repo
        self._main = main_branch
        self._fetch_head = fetch_head
        self._forge = lookup.forge.name or "the forge"

    def __call__(self, step: history.StepInfo, snap: proofs.Snapshot) -> tuple[str | None, str]:
        """(proof, refusal) for ``step``, judged by the policy and keys of ``snap`` (its
        first parent's configuration)."""
        found = self.lookup.merged_pull(step.sha)
        if found is None:
            return None, (
                f"no pull request on {self._forge} merged it (a direct push, or one of several "
                "commits rebased or fast-forwarded onto main)"
            )
        if found.base != self._main:
            return None, f"{self._forge} PR #{found.number} merged into {found.base!r}"
        if found.unrecorded:
            waited = self._clock() - found.merged_at
            if waited < SETTLE:  # the forge is still writing who pushed: ask again soon
                raise ForgeUnavailable(
                    f"{self._forge} has not yet recorded who pushed commit "
                    f"{found.unrecorded[0][:12]} of PR #{found.number} (merged "
                    f"{waited.total_seconds():.0f} s ago); {self.env} stays at its verified "
                    "revision and asks again."
                )
            return None, (
                f"{self._forge} PR #{found.number}: no push of commit {found.unrecorded[0][:12]} "
                "is recorded, so who pushed it is unknown"
            )
        style, problem = self._style(step, found)
        if problem:
            return None, f"{self._forge} PR #{found.number}: {problem}"
        return self._approved(step, snap, found, style)

    def _style(self, step: history.StepInfo, found: merges.MergedPull) -> tuple[str, str]:
        """How the step merged the PR's head, or why it is not a merge we accept."""
        head, parents = found.head_sha, step.parents
        if len(parents) == 2:
            if parents[1] != head:
                return "", f"its merge's second parent is not the PR's head {head[:12]}"
            tree, conflicts = self._repo.merge_tree(parents[0], parents[1])
            if conflicts or tree != step.tree:
                return "", "the merge's tree is not the plain merge of its parents"
            return "merge commit", ""
        if len(parents) != 1:
            return "", "an octopus merge"
        if step.sha == head:
            return "fast-forward", ""
        if not self._have(found):
            return "", f"its head {head[:12]} cannot be fetched (refs/pull/{found.number}/head)"
        tree, conflicts = self._repo.merge_tree(parents[0], head)
        if conflicts or tree != step.tree:
            return "", f"the squashed tree is not the plain merge of the head {head[:12]}"
        return "squash", ""

    def _have(self, found: merges.MergedPull) -> bool:
        if self._repo.try_resolve(found.head_sha) is not None:
            return True
        if self._fetch_head is None:
            return False
        try:
            self._fetch_head(found.number)
        except GitError as exc:
            log.warning("%s: cannot fetch PR #%s's head: %s", self.env, found.number, exc)
            return False
        return self._repo.try_resolve(found.head_sha) is not None

    def _approved(
        self,
        step: history.StepInfo,
        snap: proofs.Snapshot,
        found: merges.MergedPull,
        style: str,
    ) -> tuple[str | None, str]:
        head, n = found.head_sha, found.number
        pr = forge_base.PullRequest(
            number=n,
            title="",
            body="",
            env=payload.env_from_branch(found.branch) or "",  # shown only; scope decides
            source=None,
            kind=forge_base.PRKind.PROMOTION,
            branch=found.branch,
            base=found.base,
            head_sha=head,
            author=found.author,
            state=forge_base.PRState.MERGED,
            created_at=found.merged_at,
            url="",
        )
        before = [r for r in found.reviews if r.at <= found.merged_at]  # none after the merge
        approvals = payload.approvals_from_reviews(before, pr=n, env=pr.env)
        writers = {w: f"wrote or pushed a commit of PR #{n} ({self._forge})" for w in found.writers}
        base = self._repo.merge_base(step.parents[0], head) or step.parents[0]
        try:
            verdict = snap.tree.head_verdict(
                self._repo,
                pr,
                approvals,
                head_sha=head,
                base_sha=base,
                server=True,
                writers=writers,
            )
        except PromoteError as exc:  # the head's tree does not load: not approved
            return None, f"{self._forge} PR #{n}: {exc}"
        if not verdict.ok:
            problems = "; ".join(verdict.problems()[:3])
            detail = f" ({problems})" if problems else ""
            return None, f"{self._forge} PR #{n}: {verdict.summary()}{detail}"
        if self.env not in verdict.scope:
            affects = ", ".join(verdict.scope) or "no environment"
            return None, f"{self._forge} PR #{n}: its change affects {affects}, not {self.env}"
        counted = ", ".join(verdict.counted) or "-"
        return f"{self._forge} PR #{n} ({style}) approved by {counted}", ""


def for_project(
    cfg: config.ProjectConfig, env: str, repo: git_repo.Repo, *, url: str, cache_root: Path
) -> ForgeProofs | None:
    """The forge's proofs for ``env``'s agent, None on the local forge (signed records in
    Git). ``cfg`` is the operator's checkout's ``promote.yaml`` (where the agent starts, like
    its cluster connection), never a revision being verified: a pushed ``forge.url`` cannot
    send the agent to a server that says yes. The token is read from ``forge.tokenEnv``."""
    server = forge_factory.open_server_forge(cfg, repo)
    if server is None:
        return None
    where = hashlib.sha256(f"{server.web_url}/{server.repo}".encode()).hexdigest()[:16]
    lookup = merges.MergeLookup(server, cache_dir=cache_root / "forge" / where)

    def fetch_head(number: int) -> None:
        repo.fetch(url, [f"+refs/pull/{number}/head:refs/promote-forge/pull/{number}"])

    return ForgeProofs(repo, lookup, env=env, main_branch=cfg.main_branch, fetch_head=fetch_head)
