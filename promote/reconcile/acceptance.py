"""``promote trust ENV R``: release managers accept a revision the agent refused (DESIGN.md §4).

An environment that requires approvals deploys a revision R that its agent could not verify
(a direct push, a change nobody approved) only after release managers accept it explicitly.
Each is first shown what they accept: the whole change from V, the environment's last
verified revision (read from its status ConfigMap, where the agent keeps it, or given), to R:
every file changed and the environment's rendered diff, Secret values redacted. Then they
sign a trust payload (``verification.trust_payload``) with their registered key; the
signatures are kept on the remote under ``refs/promote/trust/ENV/R`` (``trust.json``), where
the agent reads them (``reconcile/proofs.py``). The agent counts a signature only from an
approver of ENV's policy at V whose one registered key at V verifies it; so does this module,
to say how many more are needed. It never touches the cluster beyond reading the status.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from promote import config
from promote.errors import ConfigError, GitError, PushRejected, UsageError
from promote.git import archive
from promote.git import repo as git_repo
from promote.promotion import change, engine, judgement, people, review, verification
from promote.reconcile import factory, proofs
from promote.reconcile import status as status_mod
from promote.secrets import gpg

log = logging.getLogger(__name__)

_ATTEMPTS = 5  # pushes of the record before giving up (two release managers signing at once)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What one ``promote trust`` showed and signed, and where the acceptance stands."""

    env: str
    base: str  # V
    revision: str  # R
    changed: tuple[str, ...]  # every file V..R changes
    rendered: change.EnvDiff  # ENV's rendered diff V..R (Secret values redacted)
    approver: str
    counted: tuple[str, ...]  # approvers whose valid signature accepts R from V
    required: int  # ENV's policy at V (at least one)
    approvers: tuple[str, ...] = ()  # ENV's approvers at V

    @property
    def accepted(self) -> bool:
        return len(self.counted) >= self.required

    @property
    def waiting(self) -> tuple[str, ...]:
        """Approvers who could still sign."""
        return tuple(a for a in self.approvers if a not in self.counted)


def last_verified(s: engine.Session, env: str, ov: factory.Overrides) -> str:
    """V: the last verified revision ENV's agent keeps in its status ConfigMap."""
    found = s.project.env(env)
    cluster = factory.connect_env(found, ov)
    st = status_mod.read(cluster, env=env, namespace=found.config.cluster.namespace)
    verified = (st.trust or {}).get("verified") if st is not None else None
    if not isinstance(verified, str) or not verified:
        raise UsageError(
            f"{env}'s status holds no last verified revision (has its agent run with "
            "--trust-from?); name the revision release managers last trusted with --from REV."
        )
    return verified


def accept(
    s: engine.Session,
    env: str,
    revision: str,
    *,
    base: str,
    approver: str,
    signer: gpg.Signer | None = None,
    now: datetime | None = None,
    show: Callable[[Acceptance], None] | None = None,
) -> Acceptance:
    """Show (``show``, before signing) and sign ``approver``'s acceptance of ``revision`` for
    ``env`` from ``base`` (V); push it to the trust record and say who has accepted so far."""
    v, r = _on_main(s, base, "--from"), _on_main(s, revision, "REVISION")
    if v == r:
        raise UsageError(f"{r[:12]} is {env}'s last verified revision: nothing to accept.")
    if not s.repo.is_ancestor(v, r):
        raise UsageError(
            f"{r[:12]} does not descend from {v[:12]}, {env}'s last verified revision; the "
            "agent accepts only a revision after it."
        )
    tmp = archive.scratch_dir("promote-trust-")
    try:
        with judgement.PolicyTree(s.repo.export_tree(v, tmp / "v"), where=v[:12], rev=v) as tree:
            policy = _policy(tree, env, approver, v)
            person = review.approver_person(tree.registry, approver, main=v[:12])
            head_root = s.repo.export_tree(r, tmp / "r")
            shown = Acceptance(
                env=env,
                base=v,
                revision=r,
                changed=tuple(s.repo.changed_paths(v, r)),
                rendered=change.env_diff(tree.project, env, tree.root, head_root, s.kustomizer()),
                approver=approver,
                counted=(),
                required=max(policy.required, 1),
                approvers=tuple(policy.approvers),
            )
            if show is not None:
                show(shown)
            counted = _sign(s, tree, policy, shown, person, signer=signer, now=now)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return replace(shown, counted=counted)


def _policy(tree: judgement.PolicyTree, env: str, approver: str, v: str) -> config.ApprovalsConfig:
    """ENV's approvals policy at V, if ``approver`` is one of its approvers."""
    if env not in tree.project.environments:
        raise UsageError(f"{env} is not an environment at {v[:12]}.")
    policy = tree.project.env(env).config.approvals
    if approver not in policy.approvers:
        raise UsageError(
            f"--as {approver}: not an approver of {env} at {v[:12]} (approvers: "
            f"{', '.join(policy.approvers) or 'none'}; environments/{env}.yaml)."
        )
    return policy


def _sign(
    s: engine.Session,
    tree: judgement.PolicyTree,
    policy: config.ApprovalsConfig,
    shown: Acceptance,
    person: people.Person,
    *,
    signer: gpg.Signer | None,
    now: datetime | None,
) -> tuple[str, ...]:
    """Sign ``shown``, push it to the trust record; the approvers counted so far."""
    env, r, v, approver = shown.env, shown.revision, shown.base, shown.approver
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    payload = verification.trust_payload(env=env, revision=r, base=v, approver=approver, at=at)
    signature = (signer or gpg.Signer()).sign(
        payload.encode(), fingerprints=person.primaries, who=approver
    )
    signed = _record(s, env, r, {"payload": payload, "signature": signature})
    checked = [
        (doc, tree.registry.check_approval(doc.approver, doc.payload, doc.signature)[0]
         is judgement.Status.VALID)
        for doc in signed
    ]  # fmt: skip
    return verification.trust_counted(policy, checked, env=env, revision=r, bases=[v])


def _on_main(s: engine.Session, rev: str, what: str) -> str:
    found = s.repo.try_resolve(rev)
    if found is None:
        raise UsageError(f"{what} {rev}: no such revision (fetched from {s.remote}).")
    if not s.repo.is_ancestor(found, s.sha):
        raise UsageError(f"{what} {rev}: {found[:12]} is not on {s.main}; name a commit of it.")
    return found


def _record(
    s: engine.Session, env: str, revision: str, entry: dict[str, str]
) -> list[verification.TrustSignature]:
    """Append ``entry`` to ``refs/promote/trust/ENV/R`` on the remote (compare-and-swap, retried
    when another release manager signed at the same moment); every signature it then holds."""
    ref = f"{proofs.TRUST_PREFIX}{env}/{revision}"
    for _ in range(_ATTEMPTS):
        old = s.repo.ls_remote(s.remote, ref).get(ref)
        doc: dict[str, list[dict[str, str]]] = {"signatures": []}
        if old is not None:
            s.repo.fetch(s.remote, [f"+{ref}:{ref}"])
            try:
                doc = json.loads(s.repo.read_file(old, proofs.TRUST_FILE) or b"{}")
            except ValueError as exc:
                raise ConfigError(f"{ref} on {s.remote} does not read ({exc}).") from exc
        doc.setdefault("signatures", []).append(entry)
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        tree = s.repo.write_tree({proofs.TRUST_FILE: text.encode()})
        who = json.loads(entry["payload"]).get("approver", "?")
        commit = s.repo.commit(
            tree,
            [old] if old else [],
            f"trust {env} {revision[:12]}: signed by {who}",
            author=s.repo.identity(),
            record=True,
        )
        expect = old if old is not None else git_repo.MUST_NOT_EXIST
        try:
            s.repo.push(s.remote, [git_repo.RefUpdate(ref, commit, expect)])
        except PushRejected:
            log.debug("%s moved while signing; reading it again", ref)
            continue
        s.repo.set_ref(ref, commit)
        return [
            parsed
            for e in doc["signatures"]
            if (parsed := verification.parse_trust(str(e.get("payload", "")),
                                                   str(e.get("signature", ""))))
        ]  # fmt: skip
    raise GitError(f"{ref} kept moving on {s.remote}; run `promote trust` again.")
