"""What proves one step of main, read from Git: PR approvals, a clean merge, a trusted signer,
a ``promote trust`` record (the agent's evidence; DESIGN.md §4).

Everything is read from the agent's mirror of the remote: PR records (``refs/promote/prs/*``),
trust records (``refs/promote/trust/ENV/REV``) and, for each step, the policy and keys of its
FIRST PARENT (:class:`Snapshot`), never of the commit being judged. Signatures are checked
against one key file at a time (a throw-away keyring per key file, kept per file content), so
only the named person's key verifies their signature. The decision itself is
``promotion/verification.py``'s; this module gathers its inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from promote import config
from promote.errors import GitError, GpgError, PromoteError
from promote.forge import base as forge_base
from promote.forge import records
from promote.git import repo as git_repo
from promote.kustomize import overlay
from promote.promotion import approvals, scope, verification
from promote.secrets import gpg

log = logging.getLogger(__name__)

APPROVERS_DIR = "keys/release-managers"
TRUST_PREFIX = "refs/promote/trust/"
TRUST_FILE = "trust.json"
Status = approvals.SignatureStatus


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A commit's configuration as far as verification needs it."""

    layout: scope.Layout
    policies: Mapping[str, config.ApprovalsConfig]
    overlay_files: Mapping[str, str]  # env -> its kustomization file (repository path)


@dataclass(frozen=True, slots=True)
class PRRecord:
    number: int
    env: str
    author: str
    images: tuple[str, ...]
    approvals: tuple[forge_base.Approval, ...]
    heads: frozenset[str] = field(default_factory=frozenset)  # every head an approval names


class Evidence:
    """The records and keys of one mirror, read once and kept between passes."""

    def __init__(self, repo: git_repo.Repo) -> None:
        self._repo = repo
        self._records: dict[str, PRRecord | None] = {}  # record commit -> record
        self._by_head: dict[str, list[PRRecord]] = {}
        self._rings: dict[str, gpg.KeyRing | str] = {}  # sha256 of a key file -> ring
        self._sigs: dict[tuple[str, str, str], gpg.Verification] = {}
        self.signatures_checked = 0

    def close(self) -> None:
        for ring in self._rings.values():
            if not isinstance(ring, str):
                ring.close()
        self._rings.clear()

    # --- PR records ---------------------------------------------------------------------------

    def reload_records(self) -> None:
        """Index the PR records by the heads their approvals name (new records only)."""
        for _, sha in sorted(self._repo.refs(records.PR_PREFIX).items()):
            if sha in self._records:
                continue
            self._records[sha] = found = self._read_record(sha)
            for head in found.heads if found else ():
                self._by_head.setdefault(head, []).append(found)  # type: ignore[arg-type]

    def _read_record(self, sha: str) -> PRRecord | None:
        try:
            doc = json.loads(self._repo.read_file(sha, records.RECORD) or b"{}")
            found = tuple(forge_base.approval_from_record(a) for a in doc.get("approvals", ()))
            return PRRecord(
                number=int(doc["number"]),
                env=str(doc["env"]),
                author=str(doc.get("author", "")),
                images=tuple(doc.get("images", ())),
                approvals=found,
                heads=frozenset(a.head_sha for a in found if a.head_sha),
            )
        except (GitError, ValueError, KeyError, TypeError) as exc:
            log.warning("PR record %s does not read: %s", sha[:12], exc)
            return None

    def records_for(self, head: str) -> list[PRRecord]:
        return self._by_head.get(head, [])

    # --- signatures ---------------------------------------------------------------------------

    def key_file(self, rev: str, path: str) -> bytes | None:
        return self._repo.read_file(rev, path)

    def ring(self, key: bytes) -> gpg.KeyRing | str:
        digest = hashlib.sha256(key).hexdigest()
        if digest not in self._rings:
            try:
                self._rings[digest] = gpg.KeyRing(key.decode("utf-8", "replace"))
            except GpgError as exc:
                self._rings[digest] = str(exc)
        return self._rings[digest]

    def verify(self, key: bytes, payload: bytes, signature: str) -> gpg.Verification:
        """``signature`` over ``payload`` by the key file ``key`` (results kept)."""
        stamp = (
            hashlib.sha256(key).hexdigest(),
            hashlib.sha256(payload).hexdigest(),
            signature,
        )
        if stamp not in self._sigs:
            ring = self.ring(key)
            if isinstance(ring, str):
                return gpg.Verification(False, "", ring)
            self.signatures_checked += 1
            self._sigs[stamp] = ring.verify(payload, signature)
        return self._sigs[stamp]

    def check_approvals(
        self, rev: str, found: Sequence[forge_base.Approval]
    ) -> list[approvals.CheckedApproval]:
        """Each approval's signature against its approver's key file at ``rev``."""
        out = []
        for a in found:
            if not a.signature or not a.payload:
                out.append(approvals.CheckedApproval(a, Status.UNSIGNED))
                continue
            key = (
                self.key_file(rev, f"{APPROVERS_DIR}/{a.approver}.asc")
                if approvals.valid_name(a.approver)
                else None
            )
            if key is None:
                where = f"{APPROVERS_DIR}/ at {rev[:12]}"
                out.append(approvals.CheckedApproval(a, Status.NO_KEY, f"no key in {where}"))
                continue
            result = self.verify(key, a.payload.encode(), a.signature)
            status = (
                Status.VALID
                if result.valid
                else Status.WRONG_KEY
                if result.other_key
                else Status.BAD
            )
            out.append(approvals.CheckedApproval(a, status, result.fingerprint or result.detail))
        return out

    # --- trust records --------------------------------------------------------------------------

    def trust_signatures(self, env: str, revision: str) -> list[verification.TrustSignature]:
        sha = self._repo.try_resolve(f"{TRUST_PREFIX}{env}/{revision}")
        if sha is None:
            return []
        try:
            doc = json.loads(self._repo.read_file(sha, TRUST_FILE) or b"{}")
        except (GitError, ValueError) as exc:
            log.warning("trust record of %s at %s does not read: %s", env, revision[:12], exc)
            return []
        out = []
        for entry in doc.get("signatures", ()):
            parsed = verification.parse_trust(
                str(entry.get("payload", "")), str(entry.get("signature", ""))
            )
            if parsed is not None:
                out.append(parsed)
        return out


def head_approved(
    evidence: Evidence, *, env: str, parent: str, snap: Snapshot, head: str
) -> tuple[str | None, str]:
    """(proof, refusal): whether ``head`` carries approvals meeting ``env``'s policy at
    ``parent`` (keys from ``parent`` too). The one place to switch to the approvals side's
    ``review.head_verdict`` once it judges scope and independence."""
    policy = snap.policies.get(env)
    if policy is None:
        return None, f"{env} is not defined at {parent[:12]}"
    found = evidence.records_for(head)
    if not found:
        return None, f"no PR approved its head {head[:12]}"
    reasons = []
    for rec in found:
        checked = evidence.check_approvals(parent, rec.approvals)
        verdict = verification.head_verdict(
            policy, env=env, pr=rec.number, author=rec.author, head_sha=head, checked=checked
        )
        if verdict.ok:
            return f"PR #{rec.number} approved by {', '.join(verdict.counted)}", ""
        reasons.append(f"PR #{rec.number}: {verdict.summary()}")
    return None, "; ".join(reasons)


def merge_is_plain(
    repo: git_repo.Repo, evidence: Evidence, step_tree: str, parents: Sequence[str], snap: Snapshot
) -> bool:
    """Whether a merge commit's tree is the plain merge of its parents, or exactly what
    ``promote merge`` writes for a conflict in the PR's overlay (its images re-applied on the
    first parent's overlay: ``review._reapply``)."""
    tree, conflicts = repo.merge_tree(parents[0], parents[1])
    if not conflicts:
        return tree == step_tree
    for rec in evidence.records_for(parents[1]):
        path = snap.overlay_files.get(rec.env)
        if path is None or list(conflicts) != [path]:
            continue
        text = (repo.read_file(parents[0], path) or b"").decode("utf-8")
        fixed = _reapplied(text, path, rec.images)
        if fixed is not None and repo.write_tree({path: fixed}, base=tree) == step_tree:
            return True
    return False


def _reapplied(text: str, path: str, images: Sequence[str]) -> bytes | None:
    try:
        current = {i.name: i for i in overlay.parse_images(text, path)}
        wanted = []
        for item in images:
            name, _, version = item.partition("=")
            tag: str | None = version
            digest: str | None = None
            if "@" in version:
                tag, digest = version.split("@", 1)
            elif ":" in version:  # a digest alone (sha256:...); tags cannot contain ':'
                tag, digest = None, version
            mine = current.get(name)
            wanted.append(overlay.Image(name, mine.new_name if mine else None, tag or None, digest))
        return overlay.set_images(text, wanted, path).encode("utf-8")
    except PromoteError as exc:  # an overlay that does not parse: not promote's merge
        log.debug("%s: cannot reproduce the merge's overlay: %s", path, exc)
        return None
