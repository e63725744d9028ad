"""Signed-tag pins: trust for an environment can start at a commit its approvers signed
(DESIGN.md §4 "Where trust starts"), besides ``--trust-from SHA``.

Each approver signs their own annotated tag ``promote/pin/ENV/NAME`` naming the pinned commit
(``promote pin ENV REV --as NAME``, or ``git tag -s -u KEY promote/pin/ENV/NAME REV`` and a
push). An agent with no ``--trust-from`` and no pin stored in its cluster starts at the commit
enough of them signed (``approvals.required``, at least one). The approvers and their keys are
those of the configuration the agent was started with (its checkout: the files that decide
whether the environment verifies at all), never the tagged commit's, which could name anyone.
Reading is the agent's; writing a tag is ``promote pin``'s. The counting is
``promotion/verification.py``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from promote import config
from promote.errors import UsageError
from promote.git import commitlog, history
from promote.git import repo as git_repo
from promote.promotion import engine, people, review, verification
from promote.secrets import gpg

log = logging.getLogger(__name__)


def read_pin(repo: git_repo.Repo, env: str, project: config.Project) -> tuple[str, str]:
    """(commit, "") where ``env``'s signed pin tags in ``repo`` start trust; ("", why) when
    none do ("" and "" when there are no such tags)."""
    tags = history.read_tags(repo, f"{verification.PIN_TAGS}{env}/")
    if not tags:
        return "", ""
    policy = project.env(env).config.approvals
    checked = []
    with people.Registry(project.root, where="the agent's configuration") as reg:
        for tag in tags:
            checked.append(_checked(reg, tag))
    return verification.pin_from_tags(policy, env, checked)


def _checked(reg: people.Registry, tag: commitlog.TagInfo) -> verification.PinTag:
    if tag.signature is None:
        why = "is not signed (sign it: `promote pin ENV REV --as NAME`, or `git tag -s`)"
        return verification.PinTag(tag.name, tag.target, None, why)
    signed = reg.who_signed(tag.payload, tag.signature.decode("ascii", "replace"))
    if signed.person is None or signed.key_state is not None:
        why = f"is not signed by a registered key in use ({signed.detail})"
        return verification.PinTag(tag.name, tag.target, None, why)
    return verification.PinTag(tag.name, tag.target, signed.person)


@dataclass(frozen=True, slots=True)
class Pinned:
    env: str
    revision: str
    tag: str  # promote/pin/ENV/NAME
    signer: str


def sign_pin(s: engine.Session, env: str, revision: str, *, approver: str) -> Pinned:
    """``approver``'s signed tag ``promote/pin/ENV/APPROVER`` naming ``revision`` (a commit
    of main), pushed to the remote, replacing their earlier one."""
    policy = s.project.env(env).config.approvals
    if approver not in policy.approvers:
        raise UsageError(
            f"--as {approver}: not an approver of {env} (environments/{env}.yaml "
            f"approvals.approvers: {', '.join(policy.approvers) or 'none'})."
        )
    sha = s.repo.try_resolve(revision)
    if sha is None or not s.repo.is_ancestor(sha, s.sha):
        raise UsageError(f"{revision!r} is not a commit of {s.main} on {s.remote}.")
    with people.Registry(s.root, where=s.main) as reg:
        person = review.approver_person(reg, approver, main=s.main)
    name = f"{verification.PIN_TAGS}{env}/{approver}"
    message = f"promote pin: trust for {env} starts at {sha}\n"
    # git would only say "gpg failed to sign the data": name the keyring and the key first
    key = gpg.Signer().secret_key_for(person.primaries, who=approver, action="sign the pin")
    tag = s.repo.tag_signed(name, sha, message=message, key=key)
    ref = f"refs/tags/{name}"
    old = s.repo.ls_remote(s.remote, ref).get(ref, git_repo.MUST_NOT_EXIST)
    s.repo.push(s.remote, [git_repo.RefUpdate(ref, tag, old)])
    log.info("%s: %s signed %s", env, approver, name)
    return Pinned(env, sha, name, approver)
