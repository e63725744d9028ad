"""The one judgement of a pull request's head: is it approved under a trusted tree's policy?

``promote merge`` asks it with main as the trusted tree; the reconcile agent asks it for each
first-parent step with the step's first parent (``reconcile/proofs.py``). Both get the same
answer from the same code: the scope is what ``base..head`` changes (``change.inspect``, never
the PR's record or branch name), every affected environment's policy must hold, the opener is
the registered key verifying the PR's opened signature, whoever signed a commit of it may not
approve unless ``allowSelfApproval``, and a commit that is neither promote's own nor signed by
a registered key refuses the head outright. What counts is the pure ``approvals`` module's
decision; this module gathers its inputs.

The work splits in two so that many heads can be judged under one tree cheaply:
:class:`PolicyTree` (the project, the registered people and their keyring, the layout: loaded
once per tree) and :meth:`PolicyTree.head_verdict` (one head's inspection and signatures).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from promote import config
from promote.forge import base as forge_base
from promote.git import repo as git_repo
from promote.kustomize import folder
from promote.promotion import approvals, change, people, scope

Status = approvals.SignatureStatus


class PolicyTree:
    """A trusted tree exported at ``root``: its policy, its registered people, its layout.

    A context manager (the registry holds a throw-away keyring). The tree's files must stay
    on disk while it is used. ``rev``, the commit exported: a head whose layout is that
    commit's (``change.layout_unchanged``) is then judged without exporting it.
    """

    def __init__(self, root: Path, *, where: str = "main", rev: str | None = None) -> None:
        self.root = root
        self.where = where
        self.rev = rev
        self.project = config.load_project(root)
        self.layout: scope.Layout = folder.layout(self.project)
        self.registry = people.Registry(root, where=where)
        self._texts: change.TextCache = {}  # kustomizations read for layout_unchanged

    def head_verdict(
        self,
        repo: git_repo.Repo,
        pr: forge_base.PullRequest,
        found: Sequence[forge_base.Approval],
        *,
        head_sha: str,
        base_sha: str,
        server: bool = False,
        writers: Mapping[str, str] | None = None,
    ) -> approvals.Verdict:
        """Whether ``head_sha`` of ``pr`` is approved under this tree (see the module).
        ``writers``: people the forge says wrote a commit of it (excluded like signers)."""
        # gpg checks the opener's and approvers' signatures while git answers the rest.
        signed = [(a.payload.encode(), a.signature) for a in found if a.payload and a.signature]
        if pr.opened is not None and pr.opened.signature:
            signed.append((pr.opened.payload.encode(), pr.opened.signature))
        gpg_work = threading.Thread(target=self.registry.prefetch, args=(signed,), daemon=True)
        gpg_work.start()
        try:
            same = self.rev is not None and change.layout_unchanged(
                repo, self.rev, head_sha, texts=self._texts
            )
            seen = change.inspect(
                repo,
                self.project,
                self.registry,
                pr,
                head_sha=head_sha,
                base_sha=base_sha,
                trusted_layout=self.layout,
                same_layout=same,
            )
        finally:
            gpg_work.join()
        checked = verify_signatures(found, self.registry)
        return judge(
            self.project, pr, seen, checked, head_sha=head_sha, server=server, writers=writers
        )

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> PolicyTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def head_verdict(
    repo: git_repo.Repo,
    policy_root: Path,
    pr: forge_base.PullRequest,
    found: Sequence[forge_base.Approval],
    *,
    head_sha: str,
    base_sha: str,
    server: bool = False,
    where: str = "main",
) -> approvals.Verdict:
    """Whether ``head_sha`` of ``pr`` is approved under the policy and keys of the tree at
    ``policy_root`` (an exported trusted tree: main, or an agent step's first parent).
    ``server``: the approvals are a forge's reviews and the PR's author is the forge's user.
    To judge several heads under one tree, keep a :class:`PolicyTree`."""
    with PolicyTree(policy_root, where=where) as tree:
        return tree.head_verdict(
            repo, pr, found, head_sha=head_sha, base_sha=base_sha, server=server
        )


def verify_signatures(
    found: Sequence[forge_base.Approval], reg: people.Registry
) -> list[approvals.CheckedApproval]:
    """Each approval's signature checked against its approver's registered key (and nothing
    else). A server forge's review (no payload, no signature) is vouched for by the forge."""
    out = []
    for a in found:
        if a.payload is None and a.signature is None:
            out.append(approvals.CheckedApproval(a, Status.FORGE))
        elif not a.signature or not a.payload:
            out.append(approvals.CheckedApproval(a, Status.UNSIGNED))
        else:
            status, detail = reg.check_approval(a.approver, a.payload, a.signature)
            out.append(approvals.CheckedApproval(a, status, detail))
    return out


def judge(
    project: config.Project,
    pr: forge_base.PullRequest,
    seen: change.Inspection,
    checked: Sequence[approvals.CheckedApproval],
    *,
    head_sha: str,
    server: bool = False,
    writers: Mapping[str, str] | None = None,
) -> approvals.Verdict:
    """The policy of every environment ``seen.scope`` affects, applied to ``checked``;
    ``writers``: commit writers the forge names, excluded beside the registered signers."""
    policies = {e: project.env(e).config.approvals for e in seen.scope.envs}
    needs = any(p.required for p in policies.values())
    refused: list[tuple[str, str]] = []
    opener = seen.opener
    if server:
        opener = pr.author  # the forge's user opened it (the forge authenticated them)
    else:
        refused += seen.unverified()
        if opener is None and needs:
            refused.append(("opener", f"{seen.opener_problem}; open it again with `promote to`"))
    return approvals.evaluate(
        policies,
        pr=pr.number,
        head_sha=head_sha,
        approvals=checked,
        excluded=approvals.exclusions(opener, {**seen.writers(), **(writers or {})}),
        refused=refused,
        declared_env=pr.env,
    )
