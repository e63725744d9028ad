"""``set-image``: CI's entry point, straight to main or as a pull request's plan.

The plan is :mod:`propose`'s, with the target's supply gates (digests pinned, signatures
verified); straight to main, the environment's gates run first and nothing is pushed when
any blocks (PolicyBlocked, exit 3), and an environment that requires approvals takes the push
only when promote signs it with one of its ``approvals.trustedSigners`` (DESIGN.md §4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from promote.errors import PolicyBlocked, UsageError
from promote.forge import base as forge_base
from promote.kustomize import overlay
from promote.policy import files
from promote.promotion import engine, plan, propose, rejections, supply
from promote.secrets import gpg


def _wanted_from_args(
    current: Sequence[overlay.Image], specs: Sequence[str], env: str
) -> list[overlay.Image]:
    by_name = {i.name: i for i in current}
    wanted = []
    for spec in specs:
        name, tag, digest = plan.parse_image_arg(spec)
        img = by_name.get(name)
        if img is None:
            raise UsageError(
                f"{spec!r}: {env}'s overlay has no image {name!r} (its images: "
                f"{', '.join(sorted(by_name)) or 'none'}); add the entry once by hand."
            )
        wanted.append(overlay.Image(name, img.new_name, tag, digest))
    return wanted


def plan_set_image(
    s: engine.Session, target: str, specs: Sequence[str], *, render_diff: bool = True
) -> plan.Plan:
    """set-image's plan at main, with ``target``'s supply gates: each tag pinned to its
    digest (gates.pinDigests) and each image's signature verified (gates.signedImages)."""
    env = s.project.env(target)
    current = s.read_overlay(env)[1]
    wanted = _wanted_from_args(current, specs, target)
    if env.config.gates.pin_digests:
        wanted = supply.pin_digests(wanted, current)

    def gates(changes: Sequence[plan.ImageChange]) -> list[plan.GateResult]:
        signed = env.config.gates.signed_images
        return supply.verify_signatures(s.root, changes) if signed else []

    return propose.plan_images(
        s, env, wanted, kind=forge_base.PRKind.SET_IMAGE, gates=gates, render_diff=render_diff
    )


def check_direct_push(s: engine.Session, target: str) -> None:
    """``set-image`` straight to main of an environment that requires approvals is allowed
    only when promote signs its commits (``$PROMOTE_SIGNING_KEY``) with a key among that
    environment's ``approvals.trustedSigners`` at main: the agents verify the signature."""
    policy = s.project.env(target).config.approvals
    if not policy.required:
        return
    key = (s.repo.signing_key or "").upper().removeprefix("0X")
    trusted: list[str] = []
    for entry in policy.trusted_signers:
        if entry.startswith("keys/"):
            trusted += gpg.key_fingerprints((s.root / entry).read_text(encoding="utf-8"))
        else:
            trusted.append(entry.upper().removeprefix("0X"))
    if len(key) >= 16 and any(fp.upper().endswith(key) for fp in trusted):
        return
    why = (
        f"{engine.SIGNING_KEY_ENV} ({key[-16:]}) is not among its approvals.trustedSigners"
        if key
        else f"{engine.SIGNING_KEY_ENV} is not set"
    )
    raise PolicyBlocked(
        f"{target} requires {policy.required} approval(s) and {why}; nothing pushed.",
        hint="Open a pull request (--pr), or sign promote's commits with a trusted signer's "
        f"key: {engine.SIGNING_KEY_ENV}=FINGERPRINT, its public key listed in "
        f"environments/{target}.yaml approvals.trustedSigners.",
    )


def push_images(
    s: engine.Session, target: str, specs: Sequence[str], *, title: str | None = None
) -> tuple[plan.Plan, str | None]:
    """``set-image`` straight to main; a lost push race re-reads main and tries again.

    The environment's gates run first, at main, as for a pull request: its policies (when the
    repository has any) and schemas on the render after the change, the rejected versions,
    and the supply gates (a tag pinned to its digest, a signature verified). Any problem is
    PolicyBlocked (exit 3) and nothing is pushed. A retry after a lost race applies the same
    checked image values to the new main.
    """
    check_direct_push(s, target)
    env = s.project.env(target)
    path = s.overlay_file(env)
    checked = plan_set_image(s, target, specs, render_diff=bool(files.load(s.root).bindings))
    if checked.blocked:
        raise PolicyBlocked(
            f"cannot set images in {target}: {len(checked.problems())} problem(s); nothing pushed.",
            problems=checked.problems(),
        )
    pinned = {c.name: c.new for c in checked.changes}
    parent = s.sha
    for attempt in range(engine.MAX_PUSH_ATTEMPTS):
        raw = s.repo.read_file(parent, path)
        current = overlay.parse_images((raw or b"").decode("utf-8"), path)
        wanted = [pinned.get(i.name, i) for i in _wanted_from_args(current, specs, target)]
        p = plan.Plan(
            kind=forge_base.PRKind.SET_IMAGE,
            source=None,
            target=target,
            revision=parent,
            source_revision=parent,
            overlay_file=path,
            changes=tuple(plan.image_changes(current, wanted)),
            approvals=env.config.approvals,
        )
        if p.empty:
            return p, None
        refused = rejections.gate(p.changes, s.rejections())
        if refused.blocks:
            raise PolicyBlocked(f"cannot set images in {target}: {refused.reason}; nothing pushed.")
        commit = propose.commit_plan(s, p, parent, title or plan.default_title(p))
        if commit is None:  # the values differ only in how YAML spells them
            return dataclasses.replace(p, changes=()), None
        moved = s.push_main(commit, parent, attempt)
        if moved is None:
            return p, commit
        parent = moved
    raise AssertionError("push_main gives up first")
