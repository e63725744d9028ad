"""Automatic rollback after a failed verification (DESIGN.md §6, issue 16 item 2).

When the verification of new images fails, the agent (through the environment's Git remote,
with the forge main names) does, once per failed revision:

1. records each version the failed revision brought, against the last Verified revision, as
   rejected (``releases.reject``: a record on main, outside the render inputs, so no agent
   goes Unverified and no approval is needed; it names the reason, the time and the evidence);
2. opens a rollback PR that restores the environment's ``images:`` to the last Verified
   revision's (``propose.plan_rollback``, the plan ``promote rollback`` makes), unless an open
   one already proposes exactly that; its body is the plan, a comment says why;
3. with ``rollback: auto``, merges it. An environment that requires approvals is merged
   only when the PR head's inputs equal the Verified revision's, which is what lets every
   agent verify the merge without approvals (the trust chain's "inputs equal a verified
   revision's" rule); otherwise the PR waits for approvals like any other, and says why.

Every step first looks at what Git already holds (the record, an open PR with the same
images, main already back at the verified images), so a restarted agent, or another replica
that became leader, repeats nothing. Must not: apply anything to the cluster, or decide what
counts as approval.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from promote import config
from promote.forge import base as forge_base
from promote.git import history
from promote.git import repo as git_repo
from promote.kustomize import folder, overlay
from promote.promotion import engine, plan, propose, releases, scope
from promote.secrets import gpg

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    env: str
    revision: str  # the revision whose images failed verification
    images: dict[str, str]  # those images (what "once per failed version" is keyed by)
    verified: str  # the last revision whose images were Verified: what the rollback restores
    reason: str  # the verdict's reason (the failing check)
    evidence: str  # where to look: the revision, the Event, the Job


@dataclass(frozen=True, slots=True)
class Outcome:
    rejected: tuple[str, ...]  # "APP VERSION" recorded (now or before)
    pr: int | None  # the rollback PR (opened now or found open), None when none was needed
    merged: bool
    message: str  # one sentence for the status and the Event

    def to_dict(self, failure: Failure, at: str) -> dict[str, object]:
        return {
            "failed": failure.revision,
            "images": dict(failure.images),
            "verified": failure.verified,
            "rejected": list(self.rejected),
            "pr": self.pr,
            "merged": self.merged,
            "message": self.message,
            "at": at,
        }


def work_repo(source: git_repo.Repo, url: str, cache_root: Path, *, env: str, rev: str) -> Path:
    """A fresh clone-like folder for the rollback's sessions: an empty repository whose
    remote is ``url``, holding the files of ``rev`` (the project's remote name, main branch
    and forge come from them, as they do for a user's checkout; only ciphertext)."""
    work = cache_root / "rollback" / env
    shutil.rmtree(work, ignore_errors=True)
    source.export_tree(rev, work)
    repo = git_repo.Repo(work, work / ".git")
    repo.run_text("init", "-q", "-b", "main", str(work), what=f"git init {work}")
    cfg = config.load_project(work).config
    for key, value in (
        (f"remote.{cfg.remote}.url", url),
        ("user.name", f"promote-agent ({env})"),
        ("user.email", f"promote-agent+{env}@localhost"),
    ):
        repo.run_text("config", key, value, what=f"git config {key}")
    return work


def failed_versions(s: engine.Session, failure: Failure) -> list[overlay.Image]:
    """The images entries the failed revision has that the Verified one had otherwise."""
    path = s.overlay_file(s.project.env(failure.env))
    then, now = (
        overlay.parse_images((s.repo.read_file(rev, path) or b"").decode("utf-8"), path)
        for rev in (failure.verified, failure.revision)
    )
    return [c.new for c in plan.image_changes(then, now)]


def roll_back(work: Path, failure: Failure, *, mode: config.RollbackMode, now: datetime) -> Outcome:
    """Reject the failed versions, open (or find) the rollback PR, merge it when ``auto``."""
    who = f"promote-agent/{failure.env}"
    with engine.session(work) as s:
        bad = failed_versions(s, failure)
    rejected = []
    for image in bad:
        why = f"verification failed in {failure.env}: {failure.reason}"
        releases.reject(
            work, image.app, image.version, reason=why, now=now, evidence=failure.evidence, who=who
        )
        rejected.append(f"{image.app} {image.version}")
    with engine.session(work) as s:
        p = propose.plan_rollback(s, failure.env, failure.verified)
        if p.empty:
            msg = f"main already holds the verified images of {failure.verified[:12]}"
            return Outcome(tuple(rejected), None, False, msg)
        if p.blocked:
            why = "; ".join(p.problems()[:3])
            return Outcome(
                tuple(rejected), None, False, f"no rollback PR: the plan is blocked: {why}"
            )
        pr = propose.open_duplicate(s, p) or _open(s, p, failure, who, ", ".join(rejected))
        if mode != "auto":
            return Outcome(tuple(rejected), pr.number, False, f"rollback PR #{pr.number} opened")
        refused = _auto_refused(s, failure, pr)
        if refused:
            return Outcome(tuple(rejected), pr.number, False, f"PR #{pr.number} {refused}")
        s.forge.merge(
            pr.number,
            head_sha=pr.head_sha,
            by=who,
            approvals=[],
            message=(
                f"Merge PR #{pr.number}: {pr.title}\n\nPromote-PR: {pr.number}\n"
                f"Promote-Env: {failure.env}\nPromote-Scope: {failure.env}\n"
                f"Promote-Approved-By: -\nPromote-Merged-By: {who}\n"
                f"Promote-Rollback: automatic (rollback: auto)\n"
            ),
        )
        return Outcome(tuple(rejected), pr.number, True, f"rollback PR #{pr.number} merged")


def _open(
    s: engine.Session, p: plan.Plan, failure: Failure, who: str, versions: str
) -> forge_base.PullRequest:
    title = f"Roll back {failure.env} to {failure.verified[:12]}: verification of {versions} failed"
    # Signed as opened by the registered key in the agent's keyring (GNUPGHOME), or the one
    # $PROMOTE_USER names: an environment that requires approvals takes no unsigned PR.
    opener = os.environ.get("PROMOTE_USER") or None
    pr = propose.open_pull_request(
        s, p, title=title, author=who, opener=opener, signer=gpg.Signer()
    )
    s.forge.comment(
        pr.number,
        author=who,
        text=(
            f"Verification failed in {failure.env} at {failure.revision[:12]}: "
            f"{failure.reason}\n\nEvidence: {failure.evidence}\n\nThis PR restores the images "
            f"of {failure.verified[:12]}, the last verified revision."
        ),
    )
    log.info("%s: opened rollback PR #%d", failure.env, pr.number)
    return pr


def _auto_refused(s: engine.Session, failure: Failure, pr: forge_base.PullRequest) -> str:
    """Why ``rollback: auto`` may not merge ``pr`` itself, or empty: an environment that
    requires approvals accepts it only when its inputs equal the Verified revision's."""
    env = s.project.env(failure.env)
    if not env.config.approvals.required:
        return ""
    layout = folder.layout(s.project)
    head, verified = (history.tree_blobs(s.repo, r) for r in (pr.head_sha, failure.verified))
    if scope.inputs_equal(failure.env, layout, head, verified):
        return ""
    return (
        "not merged automatically: other inputs of the environment changed since "
        f"{failure.verified[:12]}, so it needs {env.config.approvals.required} approval(s)"
    )
