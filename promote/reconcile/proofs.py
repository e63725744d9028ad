"""What proves one step of main, read from Git: PR approvals, a clean merge, a trusted signer,
a ``promote trust`` record (the agent's evidence; DESIGN.md §4).

Everything is read from the agent's mirror of the remote: PR records (``refs/promote/prs/*``),
trust records (``refs/promote/trust/ENV/REV``) and, for each step, the policy and keys of its
FIRST PARENT (:class:`Snapshot`: that tree exported once, with its policy and registered
people), never of the commit being judged. Whether a PR's head is approved is judged exactly
as ``promote merge`` judges it (``promotion/judgement.py``, under the parent's tree); a
trusted signer's signature is checked against its one key file (a throw-away keyring per key
file, kept per file content). The chain's rules are ``promotion/verification.py``'s; this
module gathers their inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from promote import config
from promote.errors import GitError, GpgError, PromoteError
from promote.forge import base as forge_base
from promote.forge import records
from promote.git import history
from promote.git import repo as git_repo
from promote.kustomize import overlay
from promote.kustomize.overlay import KUSTOMIZATION_NAMES
from promote.promotion import change, judgement, scope, verification
from promote.secrets import gpg

log = logging.getLogger(__name__)

PR_PREFIX = records.PR_PREFIX
TRUST_PREFIX = "refs/promote/trust/"
TRUST_FILE = "trust.json"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A commit's configuration as far as verification needs it: its policy tree (exported,
    kept on disk while the snapshot is cached), its layout and policies."""

    tree: judgement.PolicyTree
    overlay_files: Mapping[str, str]  # env -> its kustomization file (repository path)

    @property
    def layout(self) -> scope.Layout:
        return self.tree.layout

    @property
    def policies(self) -> Mapping[str, config.ApprovalsConfig]:
        return {n: e.config.approvals for n, e in self.tree.project.environments.items()}


@dataclass(frozen=True, slots=True)
class PRRecord:
    pr: forge_base.PullRequest  # as recorded; its head is whichever head is being judged
    approvals: tuple[forge_base.Approval, ...]
    heads: frozenset[str] = field(default_factory=frozenset)  # every head an approval names


class Evidence:
    """The records and keys of one mirror, read once and kept between passes."""

    def __init__(self, repo: git_repo.Repo, *, prefix: str = records.PR_PREFIX) -> None:
        self._repo = repo
        self.prefix = prefix  # where this repository keeps the PR records
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

    def reload_records(self, refs: Mapping[str, str] | None = None) -> None:
        """Index the PR records by the heads their approvals name (new records only);
        ``refs``: the mirror's refs under ``refs/promote/``, when the caller listed them."""
        if refs is None:
            refs = self._repo.refs(self.prefix)
        prs = {ref: sha for ref, sha in refs.items() if ref.startswith(self.prefix)}
        for _, sha in sorted(prs.items()):
            if sha in self._records:
                continue
            self._records[sha] = found = self._read_record(sha)
            for head in found.heads if found else ():
                self._by_head.setdefault(head, []).append(found)  # type: ignore[arg-type]

    def _read_record(self, sha: str) -> PRRecord | None:
        try:
            doc = json.loads(self._repo.read_file(sha, records.RECORD) or b"{}")
            body = (self._repo.read_file(sha, records.BODY) or b"").decode("utf-8", "replace")
            pr = records.to_pull_request(doc, body, head_sha=str(doc["headSha"]), url=sha)
            found = tuple(forge_base.approval_from_record(a) for a in doc.get("approvals", ()))
            heads = frozenset(a.head_sha for a in found if a.head_sha)
            return PRRecord(pr, found, heads)
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
    repo: git_repo.Repo,
    evidence: Evidence,
    *,
    env: str,
    parent: str,
    snap: Snapshot,
    head: str,
    base: str | None = None,
) -> tuple[str | None, str]:
    """(proof, refusal): whether a PR approved ``head`` under the policy and keys at
    ``parent`` (``snap``), judged as ``promote merge`` judges it (``judgement``): the scope
    of ``merge-base(parent, head)..head``, every affected environment's policy, the signed
    opener and every commit signer excluded, unsigned foreign commits refused. The scope
    must include ``env``: an approval for other environments never proves a change to it."""
    found = evidence.records_for(head)
    if not found:
        return None, f"no PR approved its head {head[:12]}"
    # ``base``: the caller knows it (``head`` descends from ``parent`` by first parents).
    base = base or repo.merge_base(parent, head) or parent
    reasons = []
    for rec in found:
        pr = replace(rec.pr, head_sha=head)
        try:
            verdict = snap.tree.head_verdict(repo, pr, rec.approvals, head_sha=head, base_sha=base)
        except PromoteError as exc:  # the head's tree does not load: not approved
            reasons.append(f"PR #{pr.number}: {exc}")
            continue
        if verdict.ok and env in verdict.scope:
            return f"PR #{pr.number} approved by {', '.join(verdict.counted) or '-'}", ""
        if verdict.ok:
            why = f"its change affects {', '.join(verdict.scope) or 'no environment'}, not {env}"
            reasons.append(f"PR #{pr.number}: {why}")
        else:
            problems = "; ".join(verdict.problems()[:3])
            detail = f" ({problems})" if problems else ""
            reasons.append(f"PR #{pr.number}: {verdict.summary()}{detail}")
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
        path = snap.overlay_files.get(rec.pr.env)
        if path is None or list(conflicts) != [path]:
            continue
        text = (repo.read_file(parents[0], path) or b"").decode("utf-8")
        fixed = _reapplied(text, path, rec.pr.images)
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


def changes_configuration(
    repo: git_repo.Repo, step: history.StepInfo, texts: change.TextCache
) -> bool:
    """Whether a layout or a policy may differ after ``step`` (else its parent's is reused).

    A kustomization whose only change is in ``images:`` (every promotion, every set-image)
    names the same files as before: the layout stays, no snapshot is loaded."""
    if step.added_or_removed:
        return True
    for path in step.changed:
        if path == config.PROJECT_FILE or path.startswith((f"{config.ENV_DIR}/", "keys/")):
            return True
        if path.rsplit("/", 1)[-1] in KUSTOMIZATION_NAMES and not change.images_only(
            repo, path, step.parents[0], step.sha, texts=texts
        ):
            return True
    return False
