"""Reviewing pull requests: approve (signed on the local forge, a review on a server forge),
check approvals against main's policy, and merge when it holds.

Policy and keys are read from main's tree (or, for the agent, a step's first parent), never
from the PR. What a PR changes is read from its head (``change.inspect``: scope, commits,
opener), never from its record or branch name; ``judgement`` is the one judgement the merge
and the reconcile agent share. What counts is decided by the pure ``approvals`` module;
this module gathers the inputs and calls the forge. It never plans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from promote.errors import ConfigError, ForgeError, PolicyBlocked, UsageError
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.kustomize import overlay
from promote.promotion import (
    approvals,
    breakglass,
    change,
    engine,
    judgement,
    people,
    plan,
    policies,
    provenance,
    rejections,
    supply,
)
from promote.secrets import gpg

if TYPE_CHECKING:
    from promote.forge.rest import ServerForge

KEYS_DIR = "keys/release-managers"

Status = approvals.SignatureStatus


def open_pr(s: engine.Session, number: int, verb: str) -> forge_base.PullRequest:
    pr = s.forge.get(number)
    if pr.state is forge_base.PRState.MERGED and pr.merge:
        raise ForgeError(
            f"PR #{number} is already merged ({pr.merge.sha[:12]}, {pr.merge.at:%Y-%m-%d %H:%M} "
            f"UTC); cannot {verb} it."
        )
    if pr.state is not forge_base.PRState.OPEN:
        raise ForgeError(f"PR #{number} is {pr.state}; cannot {verb} it. Open a new one.")
    return pr


def registry(s: engine.Session) -> people.Registry:
    """The registered people on main (a PR cannot bring its own key)."""
    return people.Registry(s.root, where=s.main)


def approver_person(reg: people.Registry, name: str, *, main: str) -> people.Person:
    """``name``'s sound registration on main, else a ConfigError naming the file(s)."""
    found = reg.sound(name)
    if found is not None:
        return found
    if name not in reg.problems:
        raise ConfigError(
            f"{KEYS_DIR}/{name}.asc does not exist on {main}; add the approver's public key "
            f"there (`gpg --armor --export ID > {KEYS_DIR}/{name}.asc`) and merge it first."
        )
    raise ConfigError(
        f"refusing to use {name}'s key on {main}: {reg.why_unusable(name)}.",
        hint='One key per person, one person per key: see README "Key rotation".',
    )


def approve(
    s: engine.Session,
    number: int,
    *,
    approver: str | None,
    comment: str = "",
    signer: gpg.Signer | None = None,
    now: datetime | None = None,
    seen: change.Inspection | None = None,
    break_glass: str | None = None,
) -> tuple[forge_base.PullRequest, forge_base.Approval]:
    """Record ``approver``'s signed approval of the PR's current head and computed scope
    (``seen``: the head's inspection, when the caller already showed it).

    ``approver`` only chooses the signing key: the signature decides who approved. On a
    server forge the approval is a review by the token's user (``approver``, when given,
    must be that user); nothing is signed: the forge authenticated the reviewer.
    """
    server = forge_factory.server_forge(s.forge)
    if server is not None:
        if break_glass:
            raise UsageError(
                "--break-glass: a break-glass approval is a signed document (local forge); "
                "forge reviews cannot carry one."
            )
        return _approve_on_server(s, server, number, approver=approver, comment=comment, now=now)
    if not approver:
        raise UsageError("say whose key signs: --as NAME (a name in approvals.approvers).")
    pr = open_pr(s, number, "approve")
    with registry(s) as reg:
        person = approver_person(reg, approver, main=s.main)
        found = seen
        if found is None or found.head_sha != pr.head_sha:
            found = change.inspect(
                s.repo, s.project, reg, pr, head_sha=pr.head_sha, base_sha=base_of(s, pr)
            )
    envs = found.scope.envs or (pr.env,)
    _check_approver(s, pr, approver, envs, approvals.exclusions(found.opener, found.writers()))
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    payload = forge_base.approval_payload(
        pr=number,
        env=pr.env,
        head_sha=pr.head_sha,
        approver=approver,
        at=at,
        comment=comment,
        scope=envs,
        break_glass=break_glass,
    )
    signature = (signer or gpg.Signer()).sign(
        payload.encode(), fingerprints=person.primaries, who=approver
    )
    approval = forge_base.Approval(
        approver, number, pr.env, pr.head_sha, at, comment, payload, signature,
        tuple(sorted(envs)), break_glass,
    )  # fmt: skip
    return pr, s.forge.approve(number, approval)


def _check_approver(
    s: engine.Session,
    pr: forge_base.PullRequest,
    approver: str,
    envs: Sequence[str],
    excluded: Mapping[str, str],
) -> None:
    """Refuse an approval that could never count: not listed, or not independent."""
    policies = {e: s.project.env(e).config.approvals for e in envs}
    listed = [e for e, p in policies.items() if approver in p.approvers]
    if not listed:
        who = sorted({a for p in policies.values() for a in p.approvers})
        raise UsageError(
            f"--as {approver}: not an approver of {', '.join(envs)} (approvers: "
            f"{', '.join(who) or 'none'}; see environments/{envs[-1]}.yaml)."
        )
    barred = [e for e in listed if not policies[e].allow_self_approval]
    if approver in excluded and barred:
        raise PolicyBlocked(
            f"PR #{pr.number}: {approver} {excluded[approver]}, and {', '.join(barred)} does "
            "not allow self-approval (approvals.allowSelfApproval: false); ask another "
            "approver."
        )


def _approve_on_server(
    s: engine.Session,
    server: ServerForge,
    number: int,
    *,
    approver: str | None,
    comment: str,
    now: datetime | None,
) -> tuple[forge_base.PullRequest, forge_base.Approval]:
    me = server.whoami()
    if approver and approver != me:
        raise UsageError(
            f"--as {approver}: on {server.name} the token's user approves, and the token in "
            f"${s.project.config.forge.token_env} belongs to {me}. Drop --as (and "
            "$PROMOTE_USER), or run with the approver's own token."
        )
    pr = open_pr(s, number, "approve")
    policy = s.project.env(pr.env).config.approvals
    if me == pr.author and not policy.allow_self_approval:
        raise PolicyBlocked(
            f"PR #{number} was opened by {me}, and {pr.env} does not allow self-approval "
            "(approvals.allowSelfApproval: false); your own approval would not count. Ask "
            f"another approver ({', '.join(a for a in policy.approvers if a != me) or 'none'})."
        )
    if me not in policy.approvers:
        raise UsageError(
            f"{me} (the user of the token in ${s.project.config.forge.token_env}) is not an "
            f"approver of {pr.env} (approvers: {', '.join(policy.approvers) or 'none'}; see "
            f"environments/{pr.env}.yaml)."
        )
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    wanted = forge_base.Approval(me, number, pr.env, pr.head_sha, at, comment)
    return pr, s.forge.approve(number, wanted)


def check_approvals(
    s: engine.Session,
    found: Sequence[forge_base.Approval],
    *,
    rings: people.Registry | None = None,
) -> list[approvals.CheckedApproval]:
    """Verify each approval's signature now, against its approver's key on main.

    A server forge's reviews carry no signature: the forge authenticated each reviewer.
    ``rings`` keeps main's registry (and its keyring) for several calls (``history``).
    """
    if forge_factory.server_forge(s.forge) is not None:
        return [approvals.CheckedApproval(a, Status.FORGE) for a in found]
    if rings is not None:
        return judgement.verify_signatures(found, rings)
    with registry(s) as own:
        return judgement.verify_signatures(found, own)


def base_of(s: engine.Session, pr: forge_base.PullRequest) -> str:
    """Where the PR's change starts: the merge base of main and its head."""
    if s.repo.try_resolve(pr.head_sha) is None:  # a server forge's branch, not fetched yet
        s.repo.fetch(s.remote, [f"+refs/heads/{pr.branch}:refs/remotes/{s.remote}/{pr.branch}"])
    return s.repo.merge_base(s.sha, pr.head_sha) or s.sha


def inspect_pr(
    s: engine.Session, pr: forge_base.PullRequest, *, rendered: bool = False
) -> change.Inspection:
    """What ``pr``'s head changes relative to main (``rendered``: with each affected
    environment's rendered diff, Secret values redacted)."""
    with registry(s) as reg:
        return change.inspect(
            s.repo,
            s.project,
            reg,
            pr,
            head_sha=pr.head_sha,
            base_sha=base_of(s, pr),
            render_with=s.kustomizer() if rendered else None,
        )


def evaluate(
    s: engine.Session, pr: forge_base.PullRequest, seen: change.Inspection | None = None
) -> approvals.Verdict:
    """``pr``'s verdict under main's policy and keys (``seen``: its inspection, if made)."""
    server = forge_factory.server_forge(s.forge) is not None
    found = s.forge.approvals(pr.number)
    if seen is None:
        seen = inspect_pr(s, pr)
    return judgement.judge(
        s.project, pr, seen, check_approvals(s, found), head_sha=pr.head_sha, server=server
    )


def _reapply(s: engine.Session, pr: forge_base.PullRequest) -> forge_base.Resolver:
    """Resolve a conflict in the target overlay by applying the PR's image values to main's."""
    path = s.overlay_file(s.project.env(pr.env))

    def resolve(main_sha: str, conflicts: Sequence[str]) -> Mapping[str, bytes] | None:
        if list(conflicts) != [path] or not pr.images:  # secrets and keys PRs: no re-apply
            return None
        text = (s.repo.read_file(main_sha, path) or b"").decode("utf-8")
        current = {i.name: i for i in overlay.parse_images(text, path)}
        wanted = _wanted(pr, current)
        return {path: overlay.set_images(text, wanted, path).encode("utf-8")}

    return resolve


def _wanted(
    pr: forge_base.PullRequest, current: Mapping[str, overlay.Image]
) -> list[overlay.Image]:
    """The image entries ``pr`` sets (its record's ``name=version`` list), named as in
    ``current`` (the target's entries on main)."""
    wanted = []
    for item in pr.images:
        name, _, version = item.partition("=")
        tag, digest = provenance.split_version(version)
        mine = current.get(name)
        wanted.append(overlay.Image(name, mine.new_name if mine else None, tag, digest))
    return wanted


def pr_changes(s: engine.Session, pr: forge_base.PullRequest) -> list[plan.ImageChange]:
    """What ``pr`` would change in its target's images against main now."""
    current = s.read_overlay(s.project.env(pr.env))[1]
    return plan.image_changes(current, _wanted(pr, {i.name: i for i in current}))


def merge(
    s: engine.Session,
    number: int,
    *,
    by: str | None = None,
    now: datetime | None = None,
    break_glass: str | None = None,
) -> tuple[forge_base.PullRequest, forge_base.MergeResult, approvals.Verdict]:
    """Merge when the target's policy holds and its windows are open (exit 3 with what is
    missing otherwise); ``break_glass`` (a reason) opens closed windows when enough approvals
    are signed as break-glass with that reason. ``now``: the clock (tests inject one)."""
    pr = open_pr(s, number, "merge")
    verdict = evaluate(s, pr)
    server = forge_factory.server_forge(s.forge)
    if not verdict.ok:
        if verdict.refused:
            hint = (
                f"`promote show {number}` shows what failed verification: close the PR and "
                "promote again, or have each extra commit signed by a registered key."
            )
        elif server is not None:
            hint = (
                f"Each approver runs `promote approve {number}` with their own token in "
                f"${s.project.config.forge.token_env} (or approves the PR on {server.name})."
            )
        else:
            hint = f"Approve with `promote approve {number} --as NAME`."
        raise PolicyBlocked(verdict.summary(), problems=verdict.problems(), hint=hint)
    _recheck_gates(s, pr)
    refused = rejections.gate(pr_changes(s, pr), s.rejections())
    if refused.blocks:  # rejected after the PR was planned: it still moves nowhere
        raise PolicyBlocked(
            f"PR #{number}: {refused.reason}.",
            hint="Close the PR, or lift the rejection first (`promote unreject APP VERSION`).",
        )
    glass = breakglass.check(s, pr, verdict, now=now, reason=break_glass)
    merger = server.whoami() if server is not None else s.user(by)
    message = (
        f"Merge PR #{number}: {pr.title}\n\nPromote-PR: {number}\nPromote-Env: {pr.env}\n"
        f"Promote-Scope: {','.join(verdict.scope) or '-'}\n"
        f"Promote-Approved-By: {', '.join(verdict.counted) or '-'}\nPromote-Merged-By: {merger}\n"
    )
    if glass.broken:  # marked in history: the windows of these environments were closed
        message += (
            f"Promote-Break-Glass: {', '.join(glass.broken)}: {breakglass.one_line(break_glass)}\n"
        )
    result = s.forge.merge(
        number,
        head_sha=pr.head_sha,
        by=merger,
        approvals=verdict.counted,
        message=message,
        resolve=_reapply(s, pr),
    )
    breakglass.announce(s, number, glass, by=merger, reason=break_glass)
    return pr, result, verdict


def _recheck_gates(s: engine.Session, pr: forge_base.PullRequest) -> None:
    """The gates again on the head, as it would merge (not as it was planned): policies/ on
    every affected environment's render, then the supply gates (pins present, signatures
    verified in the registry now: one removed since `promote to` blocks here)."""
    number = pr.number
    denied = [f for f in policies.check_head(s, pr.head_sha) if f.blocks]
    if denied:
        raise PolicyBlocked(
            f"PR #{number}: {len(denied)} policy violation(s) on its head {pr.head_sha[:12]}.",
            problems=[str(f) for f in denied],
            hint="Fix the manifests (or the policy, through its own PR) and push again.",
        )
    unverified = supply.check_head(s, pr.head_sha)
    if unverified:
        raise PolicyBlocked(
            f"PR #{number}: {len(unverified)} supply-chain problem(s) on its head "
            f"{pr.head_sha[:12]}.",
            problems=unverified,
            hint="Sign the image with a key in keys/image-signers/ (cosign sign --key), or "
            "close the PR and promote a version that is signed.",
        )


def parse_pr(text: str) -> int:
    value = text.lstrip("#")
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{text!r} is not a PR number; write e.g. 7 or #7.")
    return int(value)
