"""Whether an environment may deploy a revision: the agent's trust chain (pure; DESIGN.md §4).

The agent walks main's first-parent steps from its last verified revision V to the head R and
hands each step here as data (:class:`Step`: the environment's input files it changed, and how
it is proved, if at all); :func:`advance` folds them into a :class:`Chain`. R is verified when
every step that changed the environment's inputs is proved (an approved head, fast-forwarded
or merged without hidden changes, or a commit signed by a trusted signer) or when the inputs
at a commit equal those of a revision already verified (a revert, a rollback): trust, once
broken, returns only that way or through a signed ``promote trust``.

What a step is judged by comes from its first parent (the policy and keys in force before it),
never from the step itself; the walker (``reconcile/verify.py``) reads them there. Nothing here
does I/O: the one question that needs Git (are the inputs at this commit those of a verified
revision?) is asked through a callable the walker passes in, only when the answer matters.

Also here: the documents release managers sign for ``promote trust`` (:func:`trust_payload`).
Whether a PR's head is approved is ``promotion/judgement.py``'s, the judgement ``promote
merge`` uses too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from promote.config import ApprovalsConfig
from promote.promotion import scope

TRUST_TYPE = "promote.trust/v1"


@dataclass(frozen=True, slots=True)
class Step:
    """One first-parent step of main: ``parent`` -> ``sha``."""

    sha: str
    parent: str
    touched: tuple[str, ...]  # the environment's input paths this step changed ("" = none)
    proof: str | None = None  # how it is verified ("PR #4 approved by rm1, rm2"), or None
    refusal: str = ""  # why it is not, when ``proof`` is None


@dataclass(frozen=True, slots=True)
class Offence:
    """The first step that changed the environment's inputs without being verified."""

    commit: str
    files: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        shown = ", ".join(self.files[:5]) + (f" (+{len(self.files) - 5})" if self.files[5:] else "")
        return f"commit {self.commit[:12]} changes {shown} without approval: {self.reason}"


@dataclass(frozen=True, slots=True)
class Chain:
    """The walk so far: is the commit reached trusted, and since when is it not."""

    env: str
    verified: str  # the last trusted commit reached (V while nothing new is trusted)
    trusted: bool = True
    offence: Offence | None = None  # set while ``trusted`` is false
    proofs: tuple[tuple[str, str], ...] = ()  # (commit, proof) of steps that changed inputs
    steps: int = 0  # steps walked
    touching: int = 0  # steps that changed the environment's inputs
    recovered: tuple[str, ...] = field(default_factory=tuple)  # commits trusted by equality


def start(env: str, anchor: str) -> Chain:
    """A chain at ``anchor``: the pin, or the last verified revision."""
    return Chain(env=env, verified=anchor)


def touched_inputs(env: str, changed: Iterable[str], layout: scope.Layout) -> tuple[str, ...]:
    """The paths of ``changed`` that are ``env``'s inputs under ``layout`` (both sides' layouts
    merged): files its render reads, and every governance file."""
    return tuple(sorted(p for p in set(changed) if env in scope.affected([p], layout).envs))


def advance(chain: Chain, step: Step, *, matches_verified: Callable[[], bool]) -> Chain:
    """The chain after ``step``. ``matches_verified()`` answers whether the environment's
    inputs at ``step.sha`` equal those of a verified revision; asked only when it decides."""
    walked = replace(chain, steps=chain.steps + 1, touching=chain.touching + bool(step.touched))
    if chain.trusted and not step.touched:
        return replace(walked, verified=step.sha)
    if chain.trusted and step.proof is not None:
        proofs = (*chain.proofs, (step.sha, step.proof))
        return replace(walked, verified=step.sha, proofs=proofs)
    if matches_verified():  # a revert or rollback to a verified state
        return replace(
            walked,
            verified=step.sha,
            trusted=True,
            offence=None,
            recovered=(*chain.recovered, step.sha),
        )
    if not chain.trusted:
        return walked  # still untrusted: the first offence stays the one named
    offence = Offence(step.sha, step.touched, step.refusal or "no approval found")
    return replace(walked, trusted=False, offence=offence)


@dataclass(frozen=True, slots=True)
class Verdict:
    env: str
    revision: str  # R
    base: str  # V the walk started from
    verified: bool
    offence: Offence | None
    proofs: tuple[tuple[str, str], ...] = ()
    steps: int = 0
    touching: int = 0
    via: str = ""  # "chain", "unchanged", "trust record", "pin"
    reached: str = ""  # the last trusted commit the walk reached (R when verified)

    def summary(self) -> str:
        if self.verified:
            how = f" ({self.via})" if self.via else ""
            return f"{self.env}: {self.revision[:12]} verified from {self.base[:12]}{how}"
        why = self.offence.describe() if self.offence else "not verified"
        return f"{self.env}: {self.revision[:12]} is Unverified: {why}"


def conclude(chain: Chain, revision: str, base: str) -> Verdict:
    """The verdict on ``revision`` once the walk reached it."""
    ok = chain.trusted and chain.verified == revision
    return Verdict(
        env=chain.env,
        revision=revision,
        base=base,
        verified=ok,
        offence=None if ok else chain.offence,
        proofs=chain.proofs,
        steps=chain.steps,
        touching=chain.touching,
        via="chain" if ok else "",
        reached=chain.verified,
    )


# --- `promote trust`: release managers accept a revision explicitly -----------------------------


@dataclass(frozen=True, slots=True)
class TrustSignature:
    """One release manager's signed acceptance of ``revision`` for ``env`` (from ``base``)."""

    approver: str
    env: str
    revision: str
    base: str
    at: datetime
    payload: str
    signature: str


def trust_payload(*, env: str, revision: str, base: str, approver: str, at: datetime) -> str:
    """The canonical JSON a release manager signs to accept ``revision`` (after seeing the
    rendered diff from ``base``, the environment's last verified revision)."""
    doc = {
        "type": TRUST_TYPE,
        "env": env,
        "revision": revision,
        "base": base,
        "approver": approver,
        "at": at.astimezone(UTC).isoformat(timespec="seconds"),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def parse_trust(payload: str, signature: str) -> TrustSignature | None:
    """The signed fields of a trust payload, or None when it is not one."""
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict) or doc.get("type") != TRUST_TYPE:
            return None
        return TrustSignature(
            approver=str(doc["approver"]),
            env=str(doc["env"]),
            revision=str(doc["revision"]),
            base=str(doc["base"]),
            at=datetime.fromisoformat(str(doc["at"])),
            payload=payload,
            signature=signature,
        )
    except (ValueError, KeyError, TypeError):
        return None


def trust_counted(
    policy: ApprovalsConfig,
    signed: Sequence[tuple[TrustSignature, bool]],
    *,
    env: str,
    revision: str,
    bases: Iterable[str],
) -> tuple[str, ...]:
    """Approvers whose valid signature accepts ``revision`` for ``env`` from one of ``bases``
    (verified revisions); each listed approver counts once."""
    known = set(bases)
    out: list[str] = []
    for doc, valid in signed:
        if (
            valid
            and doc.env == env
            and doc.revision == revision
            and doc.base in known
            and doc.approver in policy.approvers
            and doc.approver not in out
        ):
            out.append(doc.approver)
    return tuple(out)


# --- signed-tag pins: where an agent's trust starts, signed by the environment's approvers ------

PIN_TAGS = "promote/pin/"  # refs/tags/promote/pin/ENV/NAME: NAME's signed tag of the pin


@dataclass(frozen=True, slots=True)
class PinTag:
    """One tag ``promote/pin/ENV/NAME`` as checked: the commit it names and whose registered
    key signed it (``signer`` None, with ``problem`` saying why, when nobody's)."""

    name: str
    target: str
    signer: str | None
    problem: str = ""


def pin_from_tags(policy: ApprovalsConfig, env: str, tags: Sequence[PinTag]) -> tuple[str, str]:
    """(commit, "") when enough approvers of ``policy`` (``required``, at least one) each
    signed their own tag naming that commit; else ("", why), naming every tag refused."""
    counted: dict[str, list[str]] = {}
    problems = []
    for tag in tags:
        owner = tag.name.rsplit("/", 1)[-1]
        if tag.signer is None:
            problems.append(f"{tag.name} {tag.problem}")
        elif tag.signer != owner:
            problems.append(f"{tag.name} is signed with {tag.signer}'s key, not {owner}'s")
        elif owner not in policy.approvers:
            problems.append(f"{tag.name}: {owner} is not an approver of {env}")
        elif owner not in counted.setdefault(tag.target, []):
            counted[tag.target].append(owner)
    need = max(policy.required, 1)
    ready = sorted(sha for sha, names in counted.items() if len(names) >= need)
    if len(ready) == 1:
        return ready[0], ""
    if ready:
        shown = ", ".join(sha[:12] for sha in ready)
        problems.append(f"the tags name {len(ready)} different commits ({shown})")
    for sha, names in counted.items():
        if len(names) < need:
            problems.append(
                f"{sha[:12]} is signed by {len(names)} of the {need} approvers {env} requires "
                f"({', '.join(names)})"
            )
    return "", "; ".join(problems)
