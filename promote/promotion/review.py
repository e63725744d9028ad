"""Reviewing pull requests: approve (signed on the local forge, a review on a server forge),
check approvals against main's policy, and merge when it holds.

Approver keys are read from main's tree, never from the PR. What counts is decided by the pure
``approvals`` module; this module gathers the inputs and calls the forge. It never plans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from promote.errors import ConfigError, ForgeError, GpgError, PolicyBlocked, UsageError
from promote.forge import base as forge_base
from promote.forge import factory as forge_factory
from promote.kustomize import overlay
from promote.promotion import approvals, engine
from promote.secrets import gpg

if TYPE_CHECKING:
    from promote.forge.rest import ServerForge

KEYS_DIR = "keys/release-managers"

Status = approvals.SignatureStatus


def _open_pr(s: engine.Session, number: int, verb: str) -> forge_base.PullRequest:
    pr = s.forge.get(number)
    if pr.state is forge_base.PRState.MERGED and pr.merge:
        raise ForgeError(
            f"PR #{number} is already merged ({pr.merge.sha[:12]}, {pr.merge.at:%Y-%m-%d %H:%M} "
            f"UTC); cannot {verb} it."
        )
    if pr.state is not forge_base.PRState.OPEN:
        raise ForgeError(f"PR #{number} is {pr.state}; cannot {verb} it. Open a new one.")
    return pr


def approver_key(s: engine.Session, name: str) -> str:
    """The approver's public key as it is on main (a PR cannot bring its own key)."""
    path = s.root / KEYS_DIR / f"{name}.asc"
    if not approvals.valid_name(name) or not path.is_file():
        raise ConfigError(
            f"{KEYS_DIR}/{name}.asc does not exist on {s.main}; add the approver's public key "
            f"there (`gpg --armor --export ID > {KEYS_DIR}/{name}.asc`) and merge it first."
        )
    text = path.read_text(encoding="utf-8")
    if gpg.holds_private_key(text):
        raise ConfigError(
            f"{KEYS_DIR}/{name}.asc on {s.main} holds a PGP PRIVATE key block; refusing to use "
            f"it. Replace it with the public key only (`gpg --armor --export ID`), and rotate "
            "that key: anyone with the repository has its private half."
        )
    return text


def approve(
    s: engine.Session,
    number: int,
    *,
    approver: str | None,
    comment: str = "",
    signer: gpg.Signer | None = None,
    now: datetime | None = None,
) -> tuple[forge_base.PullRequest, forge_base.Approval]:
    """Record ``approver``'s signed approval of the PR's current head.

    On a server forge the approval is a review by the token's user (``approver``, when given,
    must be that user); nothing is signed: the forge authenticated the reviewer.
    """
    server = forge_factory.server_forge(s.forge)
    if server is not None:
        return _approve_on_server(s, server, number, approver=approver, comment=comment, now=now)
    if not approver:
        raise UsageError("say who approves: --as NAME (a name in approvals.approvers).")
    pr = _open_pr(s, number, "approve")
    policy = s.project.env(pr.env).config.approvals
    if approver not in policy.approvers:
        raise UsageError(
            f"--as {approver}: not an approver of {pr.env} (approvers: "
            f"{', '.join(policy.approvers) or 'none'}; see environments/{pr.env}.yaml)."
        )
    if approver == pr.author and not policy.allow_self_approval:
        raise PolicyBlocked(
            f"PR #{number} was opened by {approver}, and {pr.env} does not allow self-approval "
            "(approvals.allowSelfApproval: false); ask another approver."
        )
    key = approver_key(s, approver)
    fingerprints = gpg.key_fingerprints(key)
    if not fingerprints:
        raise ConfigError(f"{KEYS_DIR}/{approver}.asc holds no PGP public key; re-export it.")
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    payload = forge_base.approval_payload(
        pr=number, env=pr.env, head_sha=pr.head_sha, approver=approver, at=at, comment=comment
    )
    signature = (signer or gpg.Signer()).sign(
        payload.encode(), fingerprints=fingerprints, who=approver
    )
    approval = forge_base.Approval(
        approver, number, pr.env, pr.head_sha, at, comment, payload, signature
    )
    return pr, s.forge.approve(number, approval)


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
    pr = _open_pr(s, number, "approve")
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
    rings: KeyRings | None = None,
) -> list[approvals.CheckedApproval]:
    """Verify each approval's signature now, against its approver's key on main.

    A server forge's reviews carry no signature: the forge authenticated each reviewer.
    ``rings`` keeps the approvers' throw-away keyrings for several calls (``history``);
    without it they are made for this call and removed after it.
    """
    if forge_factory.server_forge(s.forge) is not None:
        return [approvals.CheckedApproval(a, Status.FORGE) for a in found]
    if rings is not None:
        return _verify_signatures(found, rings)
    with key_rings(s) as own:
        return _verify_signatures(found, own)


def key_rings(s: engine.Session) -> KeyRings:
    """The approvers' keyrings from ``keys/release-managers/`` on main."""
    return KeyRings(s.root / KEYS_DIR, where=f"{KEYS_DIR}/ on {s.main}")


class KeyRings:
    """One throw-away keyring per approver (``keys_dir/NAME.asc`` only), made when first
    needed; a context manager that removes them."""

    def __init__(self, keys_dir: Path, *, where: str) -> None:
        self._dir, self._where = keys_dir, where
        self._rings: dict[str, gpg.KeyRing | str] = {}  # a ring, or why there is none

    def get(self, approver: str) -> gpg.KeyRing | str:
        if approver not in self._rings:
            self._rings[approver] = _key_ring(self._dir, approver, self._where)
        return self._rings[approver]

    def __enter__(self) -> KeyRings:
        return self

    def __exit__(self, *exc: object) -> None:
        for ring in self._rings.values():
            if not isinstance(ring, str):
                ring.close()
        self._rings.clear()


def evaluate(s: engine.Session, pr: forge_base.PullRequest) -> approvals.Verdict:
    checked = check_approvals(s, s.forge.approvals(pr.number))
    return approvals.evaluate(
        s.project.env(pr.env).config.approvals,
        pr=pr.number,
        env=pr.env,
        author=pr.author,
        head_sha=pr.head_sha,
        approvals=checked,
    )


def _reapply(s: engine.Session, pr: forge_base.PullRequest) -> forge_base.Resolver:
    """Resolve a conflict in the target overlay by applying the PR's image values to main's."""
    path = s.overlay_file(s.project.env(pr.env))

    def resolve(main_sha: str, conflicts: Sequence[str]) -> Mapping[str, bytes] | None:
        if list(conflicts) != [path]:
            return None
        text = (s.repo.read_file(main_sha, path) or b"").decode("utf-8")
        current = {i.name: i for i in overlay.parse_images(text, path)}
        wanted = []
        for item in pr.images:
            name, _, version = item.partition("=")
            tag, digest = _split_version(version)
            mine = current.get(name)
            wanted.append(overlay.Image(name, mine.new_name if mine else None, tag, digest))
        return {path: overlay.set_images(text, wanted, path).encode("utf-8")}

    return resolve


def _split_version(version: str) -> tuple[str | None, str | None]:
    if "@" in version:
        tag, digest = version.split("@", 1)
        return tag or None, digest
    if ":" in version:  # a digest alone (sha256:...); tags cannot contain ':'
        return None, version
    return version, None


def merge(
    s: engine.Session, number: int, *, by: str | None = None
) -> tuple[forge_base.PullRequest, forge_base.MergeResult, approvals.Verdict]:
    """Merge when the target's policy holds (exit 3 with what is missing otherwise)."""
    pr = _open_pr(s, number, "merge")
    verdict = evaluate(s, pr)
    server = forge_factory.server_forge(s.forge)
    if not verdict.ok:
        if verdict.refused:
            hint = f"Close PR #{number} and promote again; find out who wrote its record."
        elif server is not None:
            hint = (
                f"Each approver runs `promote approve {number}` with their own token in "
                f"${s.project.config.forge.token_env} (or approves the PR on {server.name})."
            )
        else:
            hint = f"Approve with `promote approve {number} --as NAME`."
        raise PolicyBlocked(verdict.summary(), problems=verdict.problems(), hint=hint)
    merger = server.whoami() if server is not None else s.user(by)
    message = (
        f"Merge PR #{number}: {pr.title}\n\nPromote-PR: {number}\nPromote-Env: {pr.env}\n"
        f"Promote-Approved-By: {', '.join(verdict.counted) or '-'}\nPromote-Merged-By: {merger}\n"
    )
    result = s.forge.merge(
        number,
        head_sha=pr.head_sha,
        by=merger,
        approvals=verdict.counted,
        message=message,
        resolve=_reapply(s, pr),
    )
    return pr, result, verdict


def parse_pr(text: str) -> int:
    value = text.lstrip("#")
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{text!r} is not a PR number; write e.g. 7 or #7.")
    return int(value)


def _verify_signatures(
    found: Sequence[forge_base.Approval], rings: KeyRings
) -> list[approvals.CheckedApproval]:
    """Check each approval's signature against its approver's key file (and nothing else).

    A server forge's review (no payload, no signature) is vouched for by the forge.
    """
    out = []
    for a in found:
        if a.payload is None and a.signature is None:
            out.append(approvals.CheckedApproval(a, Status.FORGE))
            continue
        if not a.signature or not a.payload:
            out.append(approvals.CheckedApproval(a, Status.UNSIGNED))
            continue
        ring = rings.get(a.approver)
        if isinstance(ring, str):
            out.append(approvals.CheckedApproval(a, Status.NO_KEY, ring))
            continue
        result = ring.verify(a.payload.encode(), a.signature)
        if result.valid:
            out.append(approvals.CheckedApproval(a, Status.VALID, result.fingerprint))
        elif result.key_state is gpg.KeyState.EXPIRED:
            out.append(approvals.CheckedApproval(a, Status.KEY_EXPIRED, result.fingerprint))
        elif result.key_state is gpg.KeyState.REVOKED:
            out.append(approvals.CheckedApproval(a, Status.KEY_REVOKED, result.fingerprint))
        elif result.other_key:
            out.append(approvals.CheckedApproval(a, Status.WRONG_KEY, result.detail))
        else:
            out.append(approvals.CheckedApproval(a, Status.BAD, result.detail))
    return out


def _key_ring(keys_dir: Path, approver: str, where: str) -> gpg.KeyRing | str:
    path = keys_dir / f"{approver}.asc"
    if not approvals.valid_name(approver) or not path.is_file():
        return f"no {approver}.asc in {where} to verify it"
    try:
        return gpg.KeyRing(path.read_text(encoding="utf-8"))
    except GpgError as exc:
        return f"{approver}.asc in {where}: {exc}"
