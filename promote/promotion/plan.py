"""What a promotion changes (pure): image changes, rendered diff, secrets, gates, policy.

The engine reads both overlays at the remote's main, renders them and hands the results here;
this module decides which images move (:func:`promotion_targets`, :func:`image_changes`),
edits the target's ``kustomization.yaml`` text (:func:`apply_changes`, byte-exact through
``overlay.set_images``), evaluates the soak gate and assembles the :class:`Plan`, its commit
message (with ``Promote-*`` trailers) and its Markdown PR body. No I/O, no Git, no subprocess.
Every diff in a plan is already redacted (``diff.py``), so a plan may be printed anywhere.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import yaml

from promote import config
from promote.errors import UsageError
from promote.forge.base import PRKind
from promote.kustomize import overlay, reference
from promote.policy.findings import Finding
from promote.promotion.diff import ObjectDiff
from promote.secrets.authoring.parity import ParityResult

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_BODY_DIFF = 60_000  # characters of rendered diff in a PR body; the rest is summarised


@dataclass(frozen=True, slots=True)
class ImageChange:
    app: str
    name: str  # the `images:` entry name
    old: overlay.Image | None  # the target's entry before (None: added)
    new: overlay.Image  # the target's entry after

    @property
    def old_version(self) -> str:
        return self.old.version if self.old else "(none)"

    @property
    def new_version(self) -> str:
        return self.new.version

    @property
    def trailer(self) -> str:
        return f"{self.name}={self.new.version}"


class GateStatus(enum.StrEnum):
    PASSED = "passed"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"  # no data to decide: blocks, with that reason


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    status: GateStatus
    reason: str

    @property
    def blocks(self) -> bool:
        return self.status is not GateStatus.PASSED


@dataclass(frozen=True, slots=True)
class EnvStatus:
    """What an environment's reconcile agent reports; the soak gate's input.

    ``images`` maps each ``images:`` entry name to the version (tag and/or ``@digest``, as
    ``overlay.Image.version`` spells it) running now; ``since`` is when the environment last
    became synced and healthy with those images (None: not currently).
    """

    env: str
    synced: bool
    healthy: bool
    images: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    revision: str | None = None
    # The images its agent verified after deploy (``verification:`` state Verified), by name;
    # None: nothing verified (no verification, still running, or failed). Auto-promotion's input.
    verified: Mapping[str, str] | None = None


class StatusReader(Protocol):
    """Where the soak gate reads an environment's agent status; the promotion side receives
    one (the agents' status ConfigMaps, a status file, a test's table) and never builds it."""

    def __call__(self, env: str) -> EnvStatus | None: ...


def no_status(env: str) -> EnvStatus | None:
    """The status reader until the reconcile agent publishes one: nothing is known."""
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    kind: PRKind
    source: str | None  # source environment (None for set-image)
    target: str
    revision: str  # the remote main SHA the plan was computed at
    source_revision: str  # where the new images come from (main, or the rollback revision)
    overlay_file: str  # the target's kustomization file, relative to the repository
    changes: tuple[ImageChange, ...]
    diff: tuple[ObjectDiff, ...] = ()
    parity: ParityResult | None = None
    gates: tuple[GateResult, ...] = ()
    approvals: config.ApprovalsConfig = field(default_factory=config.ApprovalsConfig)
    apps: tuple[str, ...] = ()
    overlay_after: str = field(default="", repr=False)  # the edited file, when computed
    policy: tuple[Finding, ...] = ()  # policies/ on the target's after-render
    policy_bindings: int = 0  # how many bindings were checked (0: no policies)
    notes: tuple[str, ...] = ()  # what applies but does not block: a hold, merge windows

    @property
    def empty(self) -> bool:
        return not self.changes

    def problems(self) -> list[str]:
        out = [f"{self.target}: {gap}" for gap in (self.parity.gaps if self.parity else ())]
        out += [f"gate {g.name}: {g.status}: {g.reason}" for g in self.gates if g.blocks]
        out += [f"policy: {f}" for f in self.policy if f.blocks]
        return out

    @property
    def blocked(self) -> bool:
        return bool(self.problems())


# --- which images move ---------------------------------------------------------------------


def promotion_targets(
    source_images: Sequence[overlay.Image],
    target_images: Sequence[overlay.Image],
    *,
    source: str,
    source_apps: Callable[[], Iterable[str]],
    apps: Sequence[str] = (),
) -> list[overlay.Image]:
    """The target entries a promotion wants: the source's tag and digest, the target's name.

    ``newName`` is not promoted (environments may pull from different registries); an entry
    the target lacks is added with the source's ``newName``. ``apps`` limits the promotion to
    those apps (an app is an image's last path segment, or its entry name); ``source_apps``
    lists every app of the source (its bases too) and is called only to judge an unknown name.
    """
    known = {i.app for i in source_images} | {i.name for i in source_images}
    unknown = [a for a in apps if a not in known]
    all_apps = set(source_apps()) if unknown else set()  # reading resources costs a parse
    unknown = [a for a in unknown if a not in all_apps]
    if unknown:
        raise UsageError(
            f"--app {', '.join(unknown)}: {source} has no such app (its apps: "
            f"{', '.join(sorted(all_apps | {i.app for i in source_images}))})."
        )
    current = {i.name: i for i in target_images}
    wanted = []
    for img in source_images:
        if apps and img.app not in apps and img.name not in apps:
            continue
        mine = current.get(img.name)
        new_name = mine.new_name if mine else img.new_name
        wanted.append(overlay.Image(img.name, new_name, img.new_tag, img.digest))
    return wanted


def image_changes(
    current: Sequence[overlay.Image], wanted: Sequence[overlay.Image]
) -> list[ImageChange]:
    """The entries of ``wanted`` that differ from ``current``, in ``wanted``'s order."""
    now = {i.name: i for i in current}
    return [
        ImageChange(app=w.app, name=w.name, old=now.get(w.name), new=w)
        for w in wanted
        if now.get(w.name) != w
    ]


def apply_changes(text: str, changes: Iterable[ImageChange], display: str) -> str:
    """The kustomization text with every change applied (only those `images:` values move)."""
    return overlay.set_images(text, [change.new for change in changes], display)


def parse_image_arg(arg: str) -> tuple[str, str | None, str | None]:
    """``NAME=TAG``, ``NAME@DIGEST`` or ``NAME=TAG@DIGEST`` -> (name, tag, digest).

    Each part must follow the OCI reference grammar (:mod:`reference`): anything else is a
    usage error naming the argument, before any Git work (issue 13, finding 7).
    """
    name, tag, digest = arg, None, None
    if "@" in name:
        name, digest = name.split("@", 1)
    if "=" in name:
        name, tag = name.split("=", 1)
    if not name or not (tag or digest) or (digest is not None and ":" not in digest):
        raise UsageError(
            f"{arg!r}: write NAME=TAG, NAME@sha256:DIGEST or NAME=TAG@sha256:DIGEST, where "
            "NAME is an `images:` entry of the overlay."
        )
    problem = (
        reference.name_problem(name)
        or (reference.tag_problem(tag) if tag else None)
        or (reference.digest_problem(digest) if digest else None)
    )
    if problem is not None:
        raise UsageError(f"{arg!r}: {problem}; nothing was changed.")
    return name, tag or None, digest


# --- gates -----------------------------------------------------------------------------------


def check_soak(
    soak: timedelta | None,
    status: EnvStatus | None,
    changes: Sequence[ImageChange],
    *,
    source: str,
    now: datetime,
) -> GateResult | None:
    """The soak gate: the source must have run exactly these images, synced and healthy,
    for at least ``soak``. Without a status from the source's agent it is unknown and blocks."""
    if soak is None:
        return None
    need = config.format_duration(soak)
    name = f"soak {need}"
    if status is None:
        return GateResult(
            name,
            GateStatus.UNKNOWN,
            f"no status from {source}'s reconcile agent, so it is unknown how long {source} "
            f"has run these images; the gate blocks until {source} reports {need} synced and "
            "healthy",
        )
    differ = [c.name for c in changes if status.images.get(c.name) != c.new_version]
    if differ:
        return GateResult(
            name,
            GateStatus.BLOCKED,
            f"{source} does not run the promoted version of {', '.join(differ)} yet",
        )
    if not (status.synced and status.healthy) or status.since is None:
        state = ("synced" if status.synced else "out of sync") + (
            ", healthy" if status.healthy else ", not healthy"
        )
        return GateResult(name, GateStatus.BLOCKED, f"{source} is {state}")
    ran = now - status.since
    if ran < soak:
        left = config.format_duration(timedelta(seconds=math.ceil((soak - ran).total_seconds())))
        return GateResult(
            name,
            GateStatus.BLOCKED,
            f"{source} has been healthy with these images for "
            f"{config.format_duration(timedelta(seconds=int(ran.total_seconds())))}; "
            f"{left} to go",
        )
    return GateResult(name, GateStatus.PASSED, f"{source} healthy with these images for {need}+")


# --- presenting ------------------------------------------------------------------------------


def default_title(plan: Plan) -> str:
    what = ", ".join(f"{c.name} {c.new_version}" for c in plan.changes[:3])
    if len(plan.changes) > 3:
        what += f" (+{len(plan.changes) - 3} more)"
    if plan.kind is PRKind.ROLLBACK:
        return f"Roll back {plan.target} to {plan.source_revision[:12]}: {what}"
    if plan.kind is PRKind.SET_IMAGE:
        return f"Set images in {plan.target}: {what}"
    return f"Promote {plan.source} -> {plan.target}: {what}"


def commit_message(plan: Plan, title: str) -> str:
    trailers = [f"Promote-Env: {plan.target}", f"Promote-Kind: {plan.kind}"]
    if plan.source:
        trailers.append(f"Promote-From: {plan.source}")
    trailers.append(f"Promote-Source-Revision: {plan.source_revision}")
    trailers.append(f"Promote-Images: {','.join(c.trailer for c in plan.changes)}")
    moved = [
        f"{c.name}={c.new.new_name}"
        for c in plan.changes
        if c.old is not None and c.new.new_name and c.new.new_name != c.old.new_name
    ]
    if moved:  # a rollback to a state that ran another registry (provenance.TRAILER_NAMES)
        trailers.append(f"Promote-Names: {','.join(moved)}")
    lines = [f"{c.name}: {c.old_version} -> {c.new_version}" for c in plan.changes]
    return f"{title}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(trailers) + "\n"


def _policy_text(a: config.ApprovalsConfig) -> str:
    if not a.required:
        return "No approvals required."
    self_ok = "allowed" if a.allow_self_approval else "not allowed"
    return (
        f"{a.required} signed approval(s) required from {', '.join(a.approvers)}; "
        f"self-approval {self_ok}; approvals are bound to the head commit."
    )


def to_markdown(plan: Plan) -> str:
    """The PR body. Built only from redacted data: it never contains a secret value."""
    src = f"{plan.source} at `{plan.source_revision[:12]}`" if plan.source else "the command line"
    if plan.kind is PRKind.ROLLBACK:
        src = f"{plan.target} as of `{plan.source_revision[:12]}` (rollback)"
    out = [
        f"## {default_title(plan)}",
        "",
        f"Images from {src}, planned on main `{plan.revision[:12]}`; "
        f"edits `{plan.overlay_file}` (`images:` only).",
        "",
        "### Image changes",
        "",
        f"| app | image | {plan.target} now | after |",
        "|---|---|---|---|",
    ]
    out += [f"| {c.app} | {c.name} | {c.old_version} | {c.new_version} |" for c in plan.changes]
    out += ["", "### Secrets", ""]
    if plan.parity is None:
        out.append("Not checked (no source environment).")
    elif plan.parity.ok:
        out.append(f"OK: every Secret and key that {plan.source} defines exists in {plan.target}.")
    else:
        out += [f"- MISSING: {gap}" for gap in plan.parity.gaps]
    out += ["", "### Gates", ""]
    out += [f"- {g.name}: **{g.status}**: {g.reason}" for g in plan.gates] or ["None."]
    out += ["", "### Policies", ""]
    if not plan.policy_bindings:
        out.append("No policies (`policies/` holds no ValidatingAdmissionPolicyBinding).")
    elif not plan.policy:
        out.append(f"OK: {plan.policy_bindings} binding(s) checked on {plan.target}; no findings.")
    out += [f"- {'**BLOCKS**' if f.blocks else 'note'}: {f}" for f in plan.policy]
    out += ["", "### Holds and merge windows", ""]
    out += [f"- {n}" for n in plan.notes] or [f"{plan.target}: no hold, no merge windows."]
    out += ["", "### Approval policy", "", _policy_text(plan.approvals), ""]
    out += [f"### Rendered changes in {plan.target} (Secret values redacted)", ""]
    used = 0
    for d in plan.diff:
        if used + len(d.text) > MAX_BODY_DIFF:
            out.append(f"... and {len(plan.diff) - plan.diff.index(d)} more changed objects.")
            break
        used += len(d.text)
        out += [
            f"<details><summary>{d.ref} ({d.action})</summary>",
            "",
            "```diff",
            d.text.rstrip("\n"),
            "```",
            "</details>",
        ]
    if not plan.diff:
        out.append("No rendered object changes.")
    return "\n".join(out) + "\n"


def to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "kind": str(plan.kind),
        "source": plan.source,
        "target": plan.target,
        "revision": plan.revision,
        "sourceRevision": plan.source_revision,
        "overlayFile": plan.overlay_file,
        "changes": [
            {"app": c.app, "image": c.name, "from": c.old_version, "to": c.new_version}
            for c in plan.changes
        ],
        "diff": [{"object": d.ref, "action": str(d.action), "text": d.text} for d in plan.diff],
        "secrets": None
        if plan.parity is None
        else {"ok": plan.parity.ok, "missing": [str(g) for g in plan.parity.gaps]},
        "gates": [
            {"name": g.name, "status": str(g.status), "reason": g.reason} for g in plan.gates
        ],
        "approvals": {
            "required": plan.approvals.required,
            "approvers": list(plan.approvals.approvers),
            "allowSelfApproval": plan.approvals.allow_self_approval,
        },
        "policy": {
            "bindings": plan.policy_bindings,
            "findings": [f.to_dict() for f in plan.policy],
        },
        "notes": list(plan.notes),
        "blocked": plan.blocked,
        "problems": plan.problems(),
    }
