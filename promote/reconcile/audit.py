"""``promote history ENV`` with the agent's judgement: which changes reached the environment
without approval (DESIGN.md §4, issue 13 item 7).

The history itself (what changed the environment's images, the PR, each approval verified now)
is ``promotion/history.py``'s. This module walks main's first-parent history with the agent's
verifier (``reconcile/verify.py``: the same rules, each step judged by its first parent's
policy and keys) from main's first commit, where trust starts as ``promote init`` pins it, and
marks every step that changed the environment's inputs: approved, restored (a revert to a
verified state, or accepted with ``promote trust``), or unapproved. A step that changed the
inputs without changing an image (a patch, a policy, a key) is listed too when it is not
approved. Reads Git (the clone's PR records, the remote's trust records when it can be
reached) and, on Gitea/GitHub, the forge's record of each merged PR; never the cluster.
"""

from __future__ import annotations

import dataclasses
import logging

from promote.errors import GitError
from promote.forge import local as local_forge
from promote.promotion import engine
from promote.promotion import history as history_mod
from promote.reconcile import factory, forgeproofs, proofs
from promote.reconcile.verify import Audited, Verifier

log = logging.getLogger(__name__)
Judged = history_mod.Judged


def history(s: engine.Session, env: str, *, limit: int | None = None) -> list[history_mod.Entry]:
    """``env``'s history, newest first, each change marked approved, restored or unapproved."""
    s.project.env(env)  # a clear error for an unknown environment, before any walk
    entries = history_mod.history(s, env)
    root = _first_commit(s)
    marks = {a.step.sha: a for a in _audit(s, env, root)}
    order = {sha: i for i, sha in enumerate(marks)}
    out = [_marked(e, marks.get(e.commit)) for e in entries]
    listed = {e.commit for e in entries}
    for sha, mark in marks.items():
        if mark.unapproved and sha not in listed:
            out.append(_unlisted(s, mark))
    out.sort(key=lambda e: order.get(e.commit, -1), reverse=True)
    return out[:limit] if limit else out


def _audit(s: engine.Session, env: str, root: str) -> list[Audited]:
    try:  # `promote trust` records live on the remote; an offline history goes without them
        s.repo.fetch(s.remote, [f"+{proofs.TRUST_PREFIX}*:{proofs.TRUST_PREFIX}*"])
    except GitError as exc:
        log.info("trust records not fetched (%s); reading the local copies", exc)
    # On Gitea/GitHub the approvals are the forge's reviews, read as the agent reads them.
    forge = forgeproofs.for_project(
        s.project.config, env, s.repo, url=s.remote, cache_root=factory.cache_root()
    )
    verifier = Verifier(
        s.repo, env=env, records=local_forge.tracked_records(s.remote), proof_source=forge
    )
    try:
        return verifier.audit(anchor=root, revision=s.sha)
    finally:
        verifier.close()


def _first_commit(s: engine.Session) -> str:
    out = s.repo.run_text(
        "rev-list", "--first-parent", "--max-parents=0", s.sha, what="git rev-list"
    )
    return out.split()[-1]


def _marked(entry: history_mod.Entry, mark: Audited | None) -> history_mod.Entry:
    if mark is None:
        return entry
    judged = Judged.UNAPPROVED if mark.unapproved else Judged.APPROVED
    if mark.restored:
        judged = Judged.RESTORED
    why = mark.step.proof or mark.step.refusal
    return dataclasses.replace(entry, judged=judged, why=why, files=mark.step.touched)


def _unlisted(s: engine.Session, mark: Audited) -> history_mod.Entry:
    """An unapproved step that changed no image (a patch, a policy, a key)."""
    info = s.repo.commit_info(mark.step.sha)
    return history_mod.Entry(
        commit=info.sha,
        parent=mark.step.parent,
        at=info.committed_at,
        kind="edit",
        source=None,
        source_revision=None,
        changes=(),
        pr=None,
        judged=Judged.UNAPPROVED,
        why=mark.step.refusal,
        files=mark.step.touched,
    )
