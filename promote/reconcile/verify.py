"""The agent's verification: walk main from the last verified revision V to the head R and
judge every first-parent step that changes the environment's inputs (DESIGN.md §4, §5.1).

Reads only the agent's mirror: one ``git log`` for the steps and their changed paths, each
step's FIRST PARENT for the policy and keys it is judged by (a configuration snapshot: the
parent's tree exported once and kept on disk while a later pass may need it, loaded only when
a step changed configuration or keys), PR and trust records for the evidence
(``reconcile/proofs.py``). The rules are ``promotion/verification.py``'s. Verdicts are kept per
(V, R, records), so a pass with nothing new costs a lookup.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from promote.errors import PromoteError
from promote.git import history
from promote.git import repo as git_repo
from promote.kustomize import folder
from promote.promotion import change, judgement, scope, verification
from promote.reconcile import proofs

log = logging.getLogger(__name__)

KEYS_ROOT = "keys/"
RECORDS = "refs/promote/"  # PR and trust records: a verdict is kept until they change
_MATCH_LIMIT = 50  # verified revisions compared when looking for a revert
VALID = judgement.Status.VALID
# Where approvals come from: given a step and its first parent's configuration, (proof,
# refusal). None: the local forge's signed PR records in Git; a server forge plugs in
# ``reconcile/forgeproofs.py``.
ProofSource = Callable[[history.StepInfo, proofs.Snapshot], tuple[str | None, str]]


@dataclass(slots=True)
class Cost:
    """What the last verification did (``bench/reconcile.py`` reports it)."""

    seconds: float = 0.0
    steps: int = 0
    merges: int = 0
    signatures: int = 0
    snapshots: int = 0
    cached: bool = False


@dataclass(frozen=True, slots=True)
class Audited:
    """One first-parent step that changed the environment's inputs, judged on its own."""

    step: verification.Step  # its proof, or why it has none
    restored: bool = False  # unproved, but its inputs equal a verified revision's (a revert)

    @property
    def unapproved(self) -> bool:
        return self.step.proof is None and not self.restored


class Verifier:
    """Verifies revisions of one environment against one mirror; kept for the agent's life.
    ``records``: where the PR records are in this repository (the agent's mirror keeps the
    remote's names; a user's clone keeps them under ``refs/promote-remote/REMOTE/prs/``)."""

    def __init__(
        self,
        repo: git_repo.Repo,
        *,
        env: str,
        work_dir: Path | None = None,
        records: str = proofs.PR_PREFIX,
        proof_source: ProofSource | None = None,
    ) -> None:
        self.env = env
        self._source = proof_source
        self._repo = repo
        self._work_dir = work_dir
        self.evidence = proofs.Evidence(repo, prefix=records)
        self._trees: Path | None = None  # exported policy trees, one folder per snapshot
        self._snaps: dict[str, proofs.Snapshot | str] = {}
        self._blobs: dict[str, dict[str, str]] = {}
        self._texts: change.TextCache = {}  # kustomizations read: a step's is its child's parent's
        self._verdicts: dict[tuple[str, str, str], verification.Verdict] = {}
        self._carried: dict[str, tuple[str, str]] = {}  # this walk: sha -> (proof, its head)
        self.cost = Cost()

    def close(self) -> None:
        self.evidence.close()
        self._forget(set())
        if self._trees is not None:
            shutil.rmtree(self._trees, ignore_errors=True)
            self._trees = None

    def check(self, *, anchor: str, verified: Sequence[str], revision: str) -> verification.Verdict:
        """The verdict on ``revision`` from ``anchor`` (V, or the pin), knowing ``verified``."""
        started = time.monotonic()
        refs = self._repo.refs(RECORDS)
        key = (anchor, revision, hashlib.sha256(repr(sorted(refs.items())).encode()).hexdigest())
        found = self._verdicts.get(key)
        if found is not None:
            self.cost = Cost(time.monotonic() - started, cached=True)
            return found
        signatures = self._signatures()
        self.cost = Cost()
        known = list(dict.fromkeys([anchor, *verified]))
        verdict = self._check(anchor, known, revision, refs)
        self.cost.seconds = time.monotonic() - started
        self.cost.signatures = self._signatures() - signatures
        if verdict.verified or self._source is None:  # a forge's "no PR merged it" may
            self._verdicts[key] = verdict  # be a moment early: a refusal is asked again
        self._forget({anchor, revision, *known[-_MATCH_LIMIT:]})
        log.info("%s (%.3fs, %d steps)", verdict.summary(), self.cost.seconds, self.cost.steps)
        return verdict

    def _check(
        self, anchor: str, known: list[str], revision: str, refs: Mapping[str, str]
    ) -> verification.Verdict:
        if revision == anchor:
            return verification.Verdict(self.env, revision, anchor, True, None, via="unchanged")
        self.evidence.reload_records(refs if self.evidence.prefix.startswith(RECORDS) else None)
        # TrustGate asks is_ancestor(V, head) before it asks here; the walk itself says when
        # the anchor is not where main's first parents lead (then, and only then, why).
        steps = history.first_parent_steps(self._repo, anchor, revision)
        if not steps or steps[0].parents[:1] != (anchor,):
            if not self._repo.is_ancestor(anchor, revision):
                return _refused(self.env, revision, anchor, f"{anchor[:12]} is not an ancestor")
            return _refused(self.env, revision, anchor, f"{anchor[:12]} is not on main's line")
        chain = verification.start(self.env, anchor)
        before = self.snapshot(anchor)
        self._carried = {}
        for i, step in enumerate(steps):
            changes = proofs.changes_configuration(self._repo, step, self._texts)
            after = self.snapshot(step.sha) if changes else self._snaps.setdefault(step.sha, before)
            chain = self._advance(chain, step, before, after, known, ahead=(steps, i + 1))
            if chain.trusted and self._carried.get(step.sha, ("", step.sha))[1] == step.sha:
                known.append(step.sha)  # never a PR's inner commit: only its head was approved
            before = after
        self.cost.steps = len(steps)
        self.cost.merges = sum(len(s.parents) > 1 for s in steps)
        verdict = verification.conclude(chain, revision, anchor)
        if not verdict.verified and self._trusted_by_record(revision, known):
            return verification.Verdict(
                self.env, revision, anchor, True, None, chain.proofs, via="trust record"
            )
        return verdict

    def audit(self, *, anchor: str, revision: str) -> list[Audited]:
        """Every first-parent step ``anchor..revision`` that changed the environment's inputs,
        oldest first, each judged on its own (``promote history``): an approved step after
        an unapproved one is still approved, though the agent would not have deployed it."""
        self.evidence.reload_records()
        chain = verification.start(self.env, anchor)
        known = [anchor]
        before = self.snapshot(anchor)
        out = []
        self._carried = {}
        steps = history.first_parent_steps(self._repo, anchor, revision)
        for i, step in enumerate(steps):
            changes = proofs.changes_configuration(self._repo, step, self._texts)
            after = self.snapshot(step.sha) if changes else self._snaps.setdefault(step.sha, before)
            judged: list[verification.Step] = []
            chain = self._advance(
                chain, step, before, after, known, seen=judged, ahead=(steps, i + 1)
            )
            if chain.trusted:
                known.append(step.sha)
            if judged[0].touched:
                restored = judged[0].proof is None and step.sha in chain.recovered
                out.append(Audited(judged[0], restored))
            before = after
        return out

    def _advance(
        self,
        chain: verification.Chain,
        step: history.StepInfo,
        before: proofs.Snapshot | str,
        after: proofs.Snapshot | str,
        known: list[str],
        *,
        seen: list[verification.Step] | None = None,
        ahead: tuple[Sequence[history.StepInfo], int] = ((), 0),
    ) -> verification.Chain:
        """``chain`` after ``step``; ``seen`` (an audit) collects the step, proved even when
        the chain is already broken; ``ahead``: the walk's steps and where the next one is."""
        if isinstance(before, str) or isinstance(after, str):
            touched = tuple(sorted(step.changed))  # a side that does not load: all of it counts
        else:
            layout = before.layout.merged(after.layout)
            touched = verification.touched_inputs(self.env, step.changed, layout)
        proof, refusal = None, ""
        if touched and (chain.trusted or seen is not None):
            proof, refusal = self._prove(step, before, ahead)
        judged = verification.Step(step.sha, step.parents[0], touched, proof, refusal)
        if seen is not None:
            seen.append(judged)
        return verification.advance(
            chain, judged, matches_verified=lambda: self._matches(step.sha, known)
        )

    # --- proving one step -------------------------------------------------------------------

    def _prove(
        self,
        step: history.StepInfo,
        snap: proofs.Snapshot | str,
        ahead: tuple[Sequence[history.StepInfo], int] = ((), 0),
    ) -> tuple[str | None, str]:
        parent = step.parents[0]
        if step.sha in self._carried:
            return self._carried[step.sha][0], ""
        if isinstance(snap, str):
            return None, f"the configuration at its parent {parent[:12]} does not load: {snap}"
        policy = snap.policies.get(self.env)
        if policy is not None and policy.required == 0:
            return f"{self.env} required no approvals at {parent[:12]}", ""
        if self._source is not None:
            proof, refusal = self._source(step, snap)
        elif len(step.parents) == 1:
            proof, refusal = self._head_approved(step.sha, parent, snap, base=parent)
            if proof is None:
                proof = self._approved_later(step, ahead, snap) or proof
        elif len(step.parents) == 2:
            proof, refusal = self._head_approved(step.parents[1], parent, snap)
            if proof is not None and not proofs.merge_is_plain(
                self._repo, self.evidence, step.tree, step.parents, snap
            ):
                proof, refusal = None, "the merge's tree is not the plain merge of its parents"
        else:
            proof, refusal = None, "an octopus merge"
        if proof is None and policy is not None and policy.trusted_signers:
            signed = self._trusted_signer(step.sha, parent, policy.trusted_signers)
            proof = signed or proof
        return proof, refusal

    def _approved_later(
        self,
        step: history.StepInfo,
        ahead: tuple[Sequence[history.StepInfo], int],
        snap: proofs.Snapshot,
    ) -> str | None:
        """An approved PR head of several commits that main was fast-forwarded to: ``step`` is
        its first commit when a later step of this walk, reached through single-parent steps,
        is a head approved under the policy at ``step``'s parent (the approval's scope then
        covers every commit since that parent). Those steps are proved by it; main stopped at
        an inner commit is never verified, as the head is not in that walk."""
        steps, start = ahead
        run = [step.sha]
        for later in steps[start:]:
            if len(later.parents) != 1:
                return None
            run.append(later.sha)
            if not self.evidence.records_for(later.sha):
                continue
            proof, _ = self._head_approved(later.sha, step.parents[0], snap, base=step.parents[0])
            if proof is not None:
                proof = f"{proof} (main fast-forwarded to its head {later.sha[:12]})"
                self._carried.update((sha, (proof, later.sha)) for sha in run)
                return proof
        return None

    def _head_approved(
        self, head: str, parent: str, snap: proofs.Snapshot, *, base: str | None = None
    ) -> tuple[str | None, str]:
        return proofs.head_approved(
            self._repo, self.evidence, env=self.env, parent=parent, snap=snap, head=head, base=base
        )

    def _trusted_signer(self, sha: str, parent: str, signers: Sequence[str]) -> str | None:
        signed = self._repo.signed_payload(sha)
        if signed is None:
            return None
        signature, data = signed
        for entry in signers:
            if entry.startswith(KEYS_ROOT):
                files = [entry]
            else:
                files = [p for p in self._blobs_at(parent) if p.startswith(KEYS_ROOT)]
            for path in files:
                key = self.evidence.key_file(parent, path)
                if key is None:
                    continue
                result = self.evidence.verify(key, data, signature.decode("ascii", "replace"))
                wanted = entry.upper().removeprefix("0X")
                if result.valid and (entry.startswith(KEYS_ROOT) or result.fingerprint == wanted):
                    return f"signed by trusted signer {entry} ({result.fingerprint[-16:]})"
        return None

    # --- recovering: a revert, a rollback, or a `promote trust` record ------------------------

    def _matches(self, sha: str, known: list[str]) -> bool:
        if self._trusted_by_record(sha, known):
            return True
        snap = self.snapshot(sha)
        if isinstance(snap, str):
            return False
        mine = self._blobs_at(sha)
        for other in reversed(known[-_MATCH_LIMIT:]):
            theirs = self.snapshot(other)
            layout = snap.layout if isinstance(theirs, str) else snap.layout.merged(theirs.layout)
            if scope.inputs_equal(self.env, layout, mine, self._blobs_at(other)):
                return True
        return False

    def _trusted_by_record(self, revision: str, known: Sequence[str]) -> bool:
        """Whether enough approvers of the policy at a verified base accepted ``revision``
        with a signed ``promote trust`` (each signature checked against the base's keys)."""
        signed = self.evidence.trust_signatures(self.env, revision)
        for base in {s.base for s in signed if s.base in known}:
            snap = self.snapshot(base)
            policy = None if isinstance(snap, str) else snap.policies.get(self.env)
            if policy is None or isinstance(snap, str):
                continue
            reg = snap.tree.registry
            checked = [
                (doc, reg.check_approval(doc.approver, doc.payload, doc.signature)[0] is VALID)
                for doc in signed
            ]
            counted = verification.trust_counted(
                policy, checked, env=self.env, revision=revision, bases=[base]
            )
            if len(counted) >= max(policy.required, 1):
                return True
        return False

    # --- reading commits --------------------------------------------------------------------

    def snapshot(self, rev: str) -> proofs.Snapshot | str:
        """The configuration at ``rev`` (layout, policies), or why it does not load."""
        if rev not in self._snaps:
            self.cost.snapshots += 1
            self._snaps[rev] = self._load(rev)
        return self._snaps[rev]

    def _load(self, rev: str) -> proofs.Snapshot | str:
        if self._trees is None:
            self._trees = Path(tempfile.mkdtemp(prefix="promote-verify-", dir=self._work_dir))
            weakref.finalize(self, shutil.rmtree, self._trees, True)
        root = self._trees / rev
        try:
            exported = self._repo.export_tree(rev, root)
            tree = judgement.PolicyTree(exported, where=rev[:12], rev=rev)
            files = {
                n: tree.project.relpath(folder.kustomization_path(e.overlay_dir))
                for n, e in tree.project.environments.items()
            }
        except PromoteError as exc:
            shutil.rmtree(root, ignore_errors=True)
            return str(exc)
        return proofs.Snapshot(tree, files)

    def _forget(self, keep: set[str]) -> None:
        """Drop the snapshots of revisions outside ``keep`` (their trees leave the disk)."""
        kept = {rev: snap for rev, snap in self._snaps.items() if rev in keep}
        alive = {id(s) for s in kept.values()}
        for snap in {id(s): s for s in self._snaps.values()}.values():
            if isinstance(snap, proofs.Snapshot) and id(snap) not in alive:
                snap.tree.close()
                shutil.rmtree(snap.tree.root, ignore_errors=True)
        self._snaps = kept

    def _signatures(self) -> int:
        trees = {id(s): s for s in self._snaps.values() if isinstance(s, proofs.Snapshot)}
        in_trees = sum(s.tree.registry.verifications for s in trees.values())
        return self.evidence.signatures_checked + in_trees

    def _blobs_at(self, rev: str) -> dict[str, str]:
        if rev not in self._blobs:
            self._blobs[rev] = history.tree_blobs(self._repo, rev)
        return self._blobs[rev]


def _refused(env: str, revision: str, base: str, why: str) -> verification.Verdict:
    offence = verification.Offence(revision, (), f"{why} of {revision[:12]} on main")
    return verification.Verdict(env, revision, base, False, offence)
