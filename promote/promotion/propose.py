"""Proposing changes: plan a promotion, rollback or set-image at main, and open or push it.

Plans are computed by the pure ``plan`` module from overlays read in an :mod:`engine` session;
this module renders before/after, commits the overlay edit in the object database and pushes
it, as a pull request branch or (set-image) straight to main. It never approves or merges.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from promote import config
from promote.errors import ConfigError, UsageError
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.git import repo as git_repo
from promote.kustomize import folder, overlay
from promote.promotion import (
    diff,
    engine,
    openers,
    plan,
    policies,
    rejections,
    supply,
    validate,
    windows,
)
from promote.secrets import gpg
from promote.secrets.authoring import parity


def plan_images(
    s: engine.Session,
    env: config.Environment,
    wanted: Sequence[overlay.Image],
    *,
    kind: forge_base.PRKind,
    source: config.Environment | None = None,
    source_revision: str | None = None,
    gates: Callable[[Sequence[plan.ImageChange]], list[plan.GateResult]] | None = None,
    apps: Sequence[str] = (),
    render_diff: bool = True,
    notes: Sequence[str] = (),
) -> plan.Plan:
    text, current = s.read_overlay(env)
    changes = plan.image_changes(current, wanted)
    base = plan.Plan(
        kind=kind,
        source=source.name if source else None,
        target=env.name,
        revision=s.sha,
        source_revision=source_revision or s.sha,
        overlay_file=s.overlay_file(env),
        changes=tuple(changes),
        approvals=env.config.approvals,
        apps=tuple(apps),
        notes=(*notes, *_notes(s, env.name, rollback=kind is forge_base.PRKind.ROLLBACK)),
    )
    if not changes:
        return base
    refused = rejections.gate(changes, s.rejections())
    after_text = plan.apply_changes(text, changes, base.overlay_file)
    supplied = [*(gates(changes) if gates else ())]
    base = dataclasses.replace(base, overlay_after=after_text, gates=(*supplied, refused))
    if not render_diff:
        return base
    s.kustomizer()  # find the binary once, before the threads need it
    with ThreadPoolExecutor(max_workers=3) as pool:
        checker_f = pool.submit(policies.prepare, s.root)  # CEL start-up beside kustomize
        target_f = pool.submit(s.render_variants, env.overlay_dir, [text, after_text])
        source_f = (
            pool.submit(s.render_variants, source.overlay_dir, [s.read_overlay(source)[0]])
            if source
            else None
        )
        before, after = target_f.result()
        source_objs = source_f.result()[0] if source_f else None
        checker = checker_f.result()
    ns = env.config.cluster.namespace
    result = None
    if source is not None and source_objs is not None:
        result = parity.check_parity(source.name, source_objs, env.name, after)
    checked = [*supplied, _well_formed_gate(env, after)]
    return dataclasses.replace(
        base,
        diff=tuple(diff.diff_objects(before, after, default_namespace=ns)),
        parity=result,
        gates=(*checked, refused),
        policy=tuple(checker.check(env.name, after, namespace=ns, before=before)),
        policy_bindings=checker.bindings,
    )


def _well_formed_gate(env: config.Environment, after: list[dict[str, Any]]) -> plan.GateResult:
    """The target's render after the change, against the Kubernetes schemas and size limits:
    an object the API server would refuse blocks the PR before anyone approves it."""
    findings = validate.check_well_formed(env, after)
    if not findings:
        return plan.GateResult("schema", plan.GateStatus.PASSED, "every object is well formed")
    shown = "; ".join(str(f) for f in findings[:5])
    more = f" (+{len(findings) - 5} more)" if len(findings) > 5 else ""
    return plan.GateResult("schema", plan.GateStatus.BLOCKED, shown + more)


def _notes(s: engine.Session, env: str, *, rollback: bool = False) -> tuple[str, ...]:
    """What applies to a change into ``env`` without blocking the plan: its hold, and its
    merge windows now (``promote merge`` enforces them; a rollback is exempt)."""
    held = s.hold(env)
    out = [f"{held.describe()} (auto-promotion paused; `promote resume {env}`)"] if held else []
    cfg = s.project.env(env).config.windows
    if cfg.any:
        now = windows.state(cfg, datetime.now(UTC))
        out.append(f"merge windows of {env}: {'open' if now.open else 'closed'}: {now.describe()}")
        if rollback:
            out.append(
                f"a rollback to an earlier state of {env} is exempt from its merge windows: it "
                "merges without break-glass, and the agent applies it inside a window when it "
                "verified that state"
            )
    if rollback and s.project.env(env).config.auto_promote:
        out.append(f"opening this rollback holds auto-promotion into {env} (`promote resume`)")
    return tuple(out)


def plan_promotion(
    s: engine.Session,
    target: str,
    *,
    source: str | None = None,
    apps: Sequence[str] = (),
    status_reader: plan.StatusReader = plan.no_status,
    now: datetime | None = None,
) -> plan.Plan:
    """What ``promote to TARGET`` would change, computed at the remote's main."""
    env = s.project.env(target)
    src_name = source or env.upstream
    if src_name is None:
        raise UsageError(
            f"{target} has no upstream (it is where new versions enter the pipeline); name the "
            f"source with --from ENV, or publish images with `promote set-image {target} ...`."
        )
    src = s.project.env(src_name)
    if src.name == env.name:
        raise UsageError(f"--from {src_name}: cannot promote {target} into itself.")
    for image in s.read_overlay(src)[1]:  # a value pushed with plain git never travels on
        overlay.check_image(image, s.overlay_file(src))
    wanted = plan.promotion_targets(
        s.read_overlay(src)[1],
        s.read_overlay(env)[1],
        source=src.name,
        source_apps=lambda: folder.list_apps(src.overlay_dir),
        apps=apps,
    )
    soak = env.config.gates.soak
    # The soak gate asks whether the source ran the versions its overlay names (a digest
    # pinned only now, for the target, is not in the source's status).
    as_source = {i.name: i for i in wanted}
    if env.config.gates.pin_digests:  # what the source ran is what the target gets
        wanted = supply.pin_digests(wanted, s.read_overlay(env)[1])

    def gates(changes: Sequence[plan.ImageChange]) -> list[plan.GateResult]:
        gate = plan.check_soak(
            soak,
            status_reader(src.name) if soak else None,
            [dataclasses.replace(c, new=as_source.get(c.name, c.new)) for c in changes],
            source=src.name,
            now=now or datetime.now(UTC),
        )
        signed = env.config.gates.signed_images
        return ([gate] if gate else []) + (
            supply.verify_signatures(s.root, changes) if signed else []
        )

    checked = src.config.verification is not None  # its agent publishes a verdict
    return plan_images(
        s,
        env,
        wanted,
        kind=forge_base.PRKind.PROMOTION,
        source=src,
        gates=gates,
        apps=apps,
        notes=[_verified_note(src.name, status_reader(src.name))] if checked else [],
    )


def _verified_note(source: str, found: plan.EnvStatus | None) -> str:
    """What the source's agent verified after deploy (``promote auto`` moves only that)."""
    if found is None:
        return f"verification after deploy in {source}: no status from its agent"
    if found.verified:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(found.verified.items()))
        return f"verified after deploy in {source}: {shown}"
    return f"verification after deploy in {source}: nothing verified for what it runs now"


def plan_rollback(s: engine.Session, target: str, revision: str) -> plan.Plan:
    """Restore ``target``'s images to what its overlay held at ``revision``."""
    env = s.project.env(target)
    path = s.overlay_file(env)
    raw = s.repo.read_file(revision, path)
    if raw is None:
        raise UsageError(f"{revision[:12]}: {path} does not exist at that revision.")
    then = overlay.parse_images(raw.decode("utf-8"), f"{path}@{revision[:12]}")
    names = {i.name for i in s.read_overlay(env)[1]}
    wanted = [i for i in then if i.name in names]
    for image in wanted:
        overlay.check_image(image, f"{path}@{revision[:12]}")
    return plan_images(s, env, wanted, kind=forge_base.PRKind.ROLLBACK, source_revision=revision)


# --- changing --------------------------------------------------------------------------------


def commit_plan(s: engine.Session, p: plan.Plan, parent: str, title: str) -> str | None:
    """A commit on ``parent`` with ``p``'s image values applied (None when nothing changes)."""
    raw = s.repo.read_file(parent, p.overlay_file)
    if raw is None:
        raise ConfigError(f"{p.overlay_file}: missing at {parent[:12]}.")
    text = raw.decode("utf-8")
    if parent == p.revision and p.overlay_after:
        new = p.overlay_after  # computed while planning, on this very revision
    else:
        new = plan.apply_changes(text, p.changes, p.overlay_file)
    if new == text:
        return None
    tree = s.repo.write_tree({p.overlay_file: new.encode("utf-8")}, base=parent)
    message = plan.commit_message(p, title)
    return s.repo.commit(tree, [parent], message, author=s.repo.identity())


def open_duplicate(s: engine.Session, p: plan.Plan) -> forge_base.PullRequest | None:
    """An open PR into ``p.target`` that already proposes exactly ``p``'s image versions.

    Opening a second one would split the release managers' approvals between two PRs that
    merge the same change; the CLI points at the first instead. (Two commands racing can
    still both open one: this is a courtesy check, not a lock.)
    """
    return same_images(s, p, forge_base.PRState.OPEN)


def same_images(
    s: engine.Session, p: plan.Plan, state: forge_base.PRState
) -> forge_base.PullRequest | None:
    """A PR in ``state`` into ``p.target`` whose image versions are exactly ``p``'s."""
    wanted = {c.trailer for c in p.changes}
    for pr in s.forge.list(env=p.target, state=state):
        if set(pr.images) == wanted:
            return pr
    return None


def open_pull_request(
    s: engine.Session,
    p: plan.Plan,
    *,
    title: str | None = None,
    author: str | None = None,
    opener: str | None = None,
    signer: gpg.Signer | None = None,
) -> forge_base.PullRequest:
    """Branch ``promote/<env>/<id>`` from main, commit the edit, push, open the PR.

    On the local forge the PR is signed with the opener's registered key (``opener``, i.e.
    ``--as``, else the one registered person whose secret key ``signer``'s keyring holds):
    that signature, not ``author``, says who opened it.
    """
    title = title or plan.default_title(p)
    sign, name = None, None
    if forge_factory.server_forge(s.forge) is None:
        sign, name = _opened_signer(s, p, opener=opener, signer=signer or gpg.Signer())
    commit = commit_plan(s, p, p.revision, title)
    if commit is None:
        raise UsageError(f"{p.target}: nothing to change; the overlay already has these images.")
    branch = f"promote/{p.target}/{os.urandom(4).hex()}"
    if not s.forge.pushes_branch:
        s.repo.push(
            s.remote,
            [git_repo.RefUpdate(f"refs/heads/{branch}", commit, git_repo.MUST_NOT_EXIST)],
        )
    return s.forge.open(
        forge_base.PullRequestDraft(
            title=title,
            body=plan.to_markdown(p),
            env=p.target,
            source=p.source,
            kind=p.kind,
            branch=branch,
            base=s.main,
            head_sha=commit,
            author=name or s.user(author),
            author_identity=str(s.repo.identity()),
            source_revision=p.source_revision,
            images=tuple(c.trailer for c in p.changes),
            sign=sign(commit) if sign else None,
        )
    )


def _opened_signer(
    s: engine.Session, p: plan.Plan, *, opener: str | None, signer: gpg.Signer
) -> tuple[Callable[[str], Callable[[int], forge_base.Opened]] | None, str | None]:
    """(a maker of the opened signature for a head commit, the opener's name), or (None,
    None) when the user holds no registered key and the target needs no approvals."""
    sign, name, _ = openers.opened_signer(
        s,
        env=p.target,
        scope=[p.target],
        base_sha=p.revision,
        policies={p.target: p.approvals},
        opener=opener,
        signer=signer,
    )
    return sign, name
