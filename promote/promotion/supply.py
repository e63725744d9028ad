"""Supply-chain gates of a promotion: pin digests, verify signatures (DESIGN.md §7).

Orchestration: ``crane`` and ``cosign`` are adapters in ``promote.supply``; this module
decides which images and keys. With ``gates.pinDigests`` each promoted image that carries a
tag but no digest gets the digest its tag names now; an image that already has one (the
source environment pinned it when it was promoted there) keeps it, so what the source ran is
what the target gets even if the tag moved since. With ``gates.signedImages`` each promoted
image (by digest when pinned) must verify against one of the public keys in
``keys/image-signers/`` on main; otherwise the plan is blocked naming the image and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from promote.kustomize import overlay
from promote.promotion import plan
from promote.supply import cosign, crane, images, tools

if TYPE_CHECKING:
    from promote.promotion import engine

SIGNERS_DIR = "keys/image-signers"
WORKERS = 4  # registry round trips in flight at once (8 was no faster on 2 cores)


def pin_digests(
    wanted: Sequence[overlay.Image],
    current: Sequence[overlay.Image],
    *,
    resolver: crane.Crane | None = None,
) -> list[overlay.Image]:
    """``wanted`` with a digest on every entry that changes and has a tag but no digest."""
    now = {i.name: i for i in current}
    todo = [i for i in wanted if i.new_tag and not i.digest and now.get(i.name) != i]
    if not todo:
        return list(wanted)
    client = resolver or crane.Crane()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        digests = dict(
            zip(
                [i.name for i in todo],
                pool.map(lambda i: client.digest(images.by_tag(i)), todo),
                strict=True,
            )
        )
    return [
        dataclasses.replace(i, digest=digests[i.name]) if i.name in digests else i for i in wanted
    ]


def verify_signatures(
    root: Path, changes: Sequence[plan.ImageChange], *, verifier: cosign.Cosign | None = None
) -> list[plan.GateResult]:
    """One gate per promoted image: passed when a key in keys/image-signers/ verifies it."""
    keys = sorted((root / SIGNERS_DIR).glob("*.pub"))
    if not changes:
        return []
    if not keys:
        return [
            plan.GateResult(
                "signed images",
                plan.GateStatus.BLOCKED,
                f"no public keys in {SIGNERS_DIR}/ on main, so no image can be verified; add "
                f"the signers' cosign public keys there (NAME.pub) through a pull request",
            )
        ]
    client = verifier or cosign.Cosign(cache_dir=tools.cache_root() / "cosign-verified")
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda c: _verify(client, keys, c), changes))


def _verify(
    client: cosign.Cosign, keys: Sequence[Path], change: plan.ImageChange
) -> plan.GateResult:
    ref = images.by_digest(change.new)
    reasons = []
    for key in keys:
        found = client.verify(ref, key)
        if found.ok:
            return plan.GateResult(
                f"signed {ref}",
                plan.GateStatus.PASSED,
                f"cosign signature verified with {SIGNERS_DIR}/{key.name}",
            )
        reasons.append(f"{key.name}: {found.reason}")
    return plan.GateResult(
        f"signed {ref}",
        plan.GateStatus.BLOCKED,
        f"image {ref} has no valid cosign signature by a key in {SIGNERS_DIR}/ "
        f"({'; '.join(reasons)})",
    )


def check_head(s: engine.Session, head_sha: str) -> list[str]:
    """What blocks merging ``head_sha``: for every environment whose gates (main's config) pin
    digests or require signatures, each image its overlay changes at the head must carry a
    digest and verify against ``keys/image-signers/`` now.

    The registry is asked again, past the verified-signature cache: a signature removed or
    replaced since ``promote to`` checked it blocks the merge. Images are compared by the
    overlays' ``images:`` entries, the only place promote pins or verifies them.
    """
    problems: list[str] = []
    fresh: cosign.Cosign | None = None  # no cache: merge is the last look before it lands
    for env in s.project.environments.values():
        gates = env.config.gates
        if not (gates.pin_digests or gates.signed_images):
            continue
        path = s.overlay_file(env)
        raw = s.repo.read_file(head_sha, path)
        if raw is None:
            continue  # the PR removes the environment's overlay: nothing will run there
        head = overlay.parse_images(raw.decode("utf-8"), f"{path}@{head_sha[:12]}")
        changes = plan.image_changes(s.read_overlay(env)[1], head)
        if gates.pin_digests:
            problems += [
                f"{env.name}: image {images.by_tag(c.new)} is not pinned to a digest at the "
                f"head (gates.pinDigests); promote it again so its digest is resolved and pinned"
                for c in changes
                if not c.new.digest
            ]
        if gates.signed_images and changes:
            fresh = fresh or cosign.Cosign()
            found = verify_signatures(s.root, changes, verifier=fresh)
            problems += [f"{env.name}: {g.reason}" for g in found if g.blocks]
    return problems


def pinned_gate(changes: Sequence[plan.ImageChange]) -> plan.GateResult:
    """``gates.pinDigests``: every promoted image names its digest (what was tested is what
    arrives, even if its tag moves)."""
    loose = [c.new.version for c in changes if not c.new.digest]
    if not loose:
        return plan.GateResult(
            "pinned digests", plan.GateStatus.PASSED, "every image has its digest"
        )
    return plan.GateResult(
        "pinned digests",
        plan.GateStatus.BLOCKED,
        f"{', '.join(loose)} carry no digest; promote again (the plan pins each tag's digest)",
    )
